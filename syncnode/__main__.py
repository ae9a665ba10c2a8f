"""``syncnode``: run one sync node (flags and TESSERA_* variables: see --help)."""

from __future__ import annotations

import socket
import sys
import uuid

from syncnode.app import SyncApp
from tessera.config import ConfigError, SyncConfig, load
from tessera.server import main_for


def main(argv: list[str] | None = None) -> None:
    try:
        cfg = load(
            SyncConfig,
            argv,
            prog="syncnode",
            description="Tessera sync node: change streams to devices.",
        )
    except ConfigError as e:
        print(f"syncnode: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    port = cfg.listen.rpartition(":")[2]
    node_id = (
        cfg.node_id
        or f"sync-{socket.gethostname()}-{port if port != '0' else uuid.uuid4().hex[:8]}"
    )
    main_for(cfg, SyncApp, node_id=node_id)


if __name__ == "__main__":
    main()
