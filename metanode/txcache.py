"""Per-transaction state of a commit or batch of commits: fewer round trips to the database.

Inside one serializable transaction nothing but the transaction itself changes what it sees,
so lookups can be cached; the namespace's ``head_seq`` is bumped once and then counted here
(written back by ``flush``); the statements whose results are not needed are pipelined
(``psycopg`` pipeline mode). A batch of 2,000 small files then costs a few round trips per
file instead of a dozen.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from metanode.db import Conn


@dataclass
class TxCache:
    """Caches valid for one transaction attempt."""

    children: dict[tuple[uuid.UUID, uuid.UUID, str], Any] = field(
        default_factory=dict
    )  # -> FileRow | None
    roles: dict[tuple[uuid.UUID, uuid.UUID], Any] = field(default_factory=dict)  # -> Role | None
    seqs: dict[uuid.UUID, int] = field(default_factory=dict)  # namespace -> last seq handed out
    bumped: set[uuid.UUID] = field(default_factory=set)  # namespaces whose head_seq must be written
    now: dt.datetime | None = None
    owned: set[bytes] | None = None  # chunks the user owns (prefetched for a batch)
    gc: dict[bytes, tuple[str, bool]] | None = None  # chunk -> (GC state, tombstoned)
    keys: dict[tuple[str, str], tuple[str, Any]] | None = (
        None  # idempotency (device, op) -> (kind, outcome)
    )
    resolved: dict[str, Any] = field(default_factory=dict)
    writes: int = 0  # statements that changed something (a safety check for batches)

    async def flush(self, conn: Conn) -> None:
        """Write back the namespace heads counted here."""
        for ns in sorted(self.bumped):
            await conn.execute(
                "UPDATE namespaces SET head_seq = %s WHERE ns_id = %s", (self.seqs[ns], ns)
            )
        self.bumped.clear()


@asynccontextmanager
async def cached(conn: Conn) -> AsyncIterator[TxCache]:
    """A TxCache with the connection in pipeline mode; namespace heads are written on success."""
    cache = TxCache()
    async with conn.pipeline():
        yield cache
        await cache.flush(conn)
