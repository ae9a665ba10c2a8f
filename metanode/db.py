"""One SQL engine for PostgreSQL and CockroachDB: a pool and the serializable retry helper.

Every transaction runs SERIALIZABLE and is retried on SQLSTATE 40001 with exponential backoff
and jitter, up to a bound, then fails with a clear UNAVAILABLE (like JuiceFS's dbMeta.txn).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from tessera.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = AsyncConnection


def is_retryable(exc: BaseException) -> bool:
    """SQLSTATE 40001 (serialization failure / CockroachDB restart) and deadlock 40P01."""
    return isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected)


class Database:
    """A connection pool whose transactions are all SERIALIZABLE."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 16,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.dsn = dsn
        self.pool = AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            open=False,
            configure=self._configure,
            kwargs={"autocommit": False},
            name="tessera-meta",
        )
        self.restarts = Counter(
            "tessera_meta_txn_restarts",
            "Serializable transactions retried after 40001",
            registry=registry,
        )
        self.file_commits = Counter(
            "tessera_meta_file_commits",
            "File revisions committed (Commit and each entry of CommitBatch)",
            registry=registry,
        )
        for stat, text in (
            ("pool_size", "Connections the pool holds (in use or idle)"),
            ("pool_available", "Idle connections in the pool"),
            ("requests_waiting", "Transactions waiting for a connection"),
        ):
            gauge = Gauge(f"tessera_meta_db_{stat}", text, registry=registry)
            gauge.set_function(lambda stat=stat: self.pool.get_stats().get(stat, 0))
        Gauge(
            "tessera_meta_db_pool_max", "Most connections the pool may open", registry=registry
        ).set(max_size)
        self.cockroach = False

    @staticmethod
    async def _configure(conn: AsyncConnection) -> None:
        await conn.set_isolation_level(psycopg.IsolationLevel.SERIALIZABLE)
        if conn.info.parameter_status("crdb_version") is None:
            # PostgreSQL's serializable isolation (SSI) locks what a transaction *read*: a
            # sequential scan locks the whole table, a bitmap scan whole heap pages. Every query
            # here is a point or range lookup on an index, so keep the planner on plain index
            # scans: concurrent commits of different users then do not conflict just because
            # the tables are still small. (CockroachDB locks keys and needs nothing of this.)
            await conn.execute("SET enable_seqscan = off")
            await conn.execute("SET enable_bitmapscan = off")
            await conn.commit()

    async def open(self, timeout: float = 30.0) -> None:
        await self.pool.open(wait=True, timeout=timeout)
        async with self.pool.connection() as conn:
            version = (await (await conn.execute("SELECT version()")).fetchone())[0]
            await conn.rollback()
        self.cockroach = "CockroachDB" in version
        log.info("database: %s", version.split(",")[0])

    async def close(self) -> None:
        await self.pool.close()

    async def run(self, fn: Callable[[Conn], Awaitable[T]], *, attempts: int = 40) -> T:
        """Run ``fn(conn)`` in a serializable transaction, retrying on 40001.

        Backoff is exponential with full jitter, capped at 250 ms: at most about 9 s of waiting
        over all attempts before a clear UNAVAILABLE.
        """
        for attempt in range(attempts):
            try:
                async with self.pool.connection() as conn, conn.transaction():
                    return await fn(conn)
            except psycopg.Error as e:
                if not is_retryable(e):
                    if isinstance(e, psycopg.OperationalError):
                        raise Unavailable(f"metadata database unavailable: {e}") from e
                    raise
                self.restarts.inc()
                await asyncio.sleep(min(0.002 * 2**attempt, 0.25) * random.random())
            except psycopg_pool_timeout() as e:
                raise Unavailable("metadata database unavailable: no connection in time") from e
        raise Unavailable("metadata transaction kept conflicting; try again")


def psycopg_pool_timeout() -> type[Exception]:
    """The pool's timeout error type (imported lazily to keep the import list short)."""
    from psycopg_pool import PoolTimeout

    return PoolTimeout
