"""``blocknode``: run one block node, configured by flags and ``TESSERA_*`` variables."""

from __future__ import annotations

import sys

from blocknode.app import BlockApp, StartupError, resolve_node_id
from blocknode.store import StoreError
from tessera.config import BlockConfig, ConfigError, load
from tessera.server import main_for

DESCRIPTION = (
    "Run a Tessera block node: stores chunks in RocksDB and replicates them on the block ring."
)


def main(argv: list[str] | None = None) -> None:
    """Console entry point; exits 2 on a configuration error, 1 when the node cannot start."""
    try:
        cfg = load(BlockConfig, argv, prog="blocknode", description=DESCRIPTION)
        node_id = resolve_node_id(cfg)
    except ConfigError as e:
        print(f"blocknode: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        print(f"blocknode: cannot use --data-dir {e.filename or ''}: {e.strerror}", file=sys.stderr)
        sys.exit(2)
    try:
        main_for(cfg, BlockApp, node_id=node_id)
    except (StoreError, StartupError) as e:
        print(f"blocknode: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
