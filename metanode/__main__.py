"""``metanode``: run one metadata node (flags and TESSERA_* variables: see --help)."""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid

from metanode.app import MetaApp
from metanode.db import Database
from metanode.schema import migrate
from tessera.config import ConfigError, MetaConfig, load
from tessera.logs import setup_logging
from tessera.server import main_for


async def _migrate_only(cfg: MetaConfig) -> int:
    db = Database(cfg.db, min_size=1, max_size=2)
    await db.open()
    try:
        version = await migrate(db)
    finally:
        await db.close()
    print(f"schema at version {version}")
    return 0


def main(argv: list[str] | None = None) -> None:
    try:
        cfg = load(
            MetaConfig,
            argv,
            prog="metanode",
            description="Tessera metadata node: users, files, versions, journals.",
        )
    except ConfigError as e:
        print(f"metanode: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if cfg.migrate_only:
        setup_logging(cfg.log_level, json_lines=cfg.log_json)
        raise SystemExit(asyncio.run(_migrate_only(cfg)))
    port = cfg.listen.rpartition(":")[2]
    node_id = (
        cfg.node_id
        or f"meta-{socket.gethostname()}-{port if port != '0' else uuid.uuid4().hex[:8]}"
    )
    main_for(cfg, MetaApp, node_id=node_id)


if __name__ == "__main__":
    main()
