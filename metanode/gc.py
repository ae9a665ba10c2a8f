"""Garbage collection: retention of revisions and journal, then unreferenced chunks.

One pass (``Collector.run_once``):

1. **Revisions.** A revision older than ``revision_retention`` that is not the head of its file
   is deleted, with its ``chunk_refs``; each chunk it referenced becomes a GC candidate.
2. **Journal.** Records older than ``journal_retention`` go; ``namespaces.oldest_seq`` moves
   up, so an older cursor gets an explicit resync.
3. **Chunks.** A candidate untouched for ``gc_grace`` (not referenced since it became one, not
   asked about by ``NeedChunks`` before an upload, not just pruned) is checked against
   ``chunk_refs`` in a serializable transaction: referenced again means it is no candidate
   any more; otherwise it becomes ``deleting`` and every user's ownership of it is dropped
   (so ``NeedChunks`` asks for a fresh upload). Then ``Block.DeleteChunks`` goes to each of
   its ring owners; once all confirm it is ``deleted`` (a tombstone), else it is retried on
   the next pass. A commit never references a chunk while it is ``deleting``, and after the
   tombstone only with a receipt and a block node that holds it again (``chunks.claim``).

Runs periodically on whichever metanode holds the ``gc_lease`` row, and on demand through the
admin-only ``RunGC`` RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import uuid

from metanode import blocklists
from metanode.blocks import MAX_HASHES_PER_CALL, BlockClient
from metanode.db import Conn, Database
from metanode.model import GCStats

log = logging.getLogger(__name__)

BATCH = 500
TOMBSTONE_KEEP = dt.timedelta(days=2)  # longer than a block receipt lives (1 day)
IDEMPOTENCY_KEEP = dt.timedelta(days=7)
GC_INTERVAL = 3600.0
LEASE = dt.timedelta(minutes=30)


class Collector:
    """One GC pass on demand, or periodically under a database lease."""

    def __init__(
        self,
        db: Database,
        cleaner: BlockClient,
        *,
        revision_retention: int,
        journal_retention: int,
        grace: int,
        holder: str,
    ) -> None:
        self.db = db
        self.cleaner = cleaner
        self.revision_retention = revision_retention
        self.journal_retention = journal_retention
        self.grace = grace
        self.holder = holder
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def run_once(
        self,
        *,
        retention: int | None = None,
        journal_retention: int | None = None,
        grace: int | None = None,
        ns_id: uuid.UUID | None = None,
    ) -> GCStats:
        """One pass; ``retention``, ``journal_retention`` and ``grace`` (seconds) override the
        configuration, ``ns_id`` limits the pruning of revisions and journal to one namespace."""
        stats = GCStats()
        async with self._lock:
            keep = dt.timedelta(seconds=self.revision_retention if retention is None else retention)
            stats.revisions_pruned = await self._prune_revisions(keep, ns_id)
            jkeep = self.journal_retention if journal_retention is None else journal_retention
            stats.journal_pruned = await self._prune_journal(dt.timedelta(seconds=jkeep), ns_id)
            await self._sweep(dt.timedelta(seconds=self.grace if grace is None else grace), stats)
            await self.db.run(_housekeeping)
        log.info("gc pass: %s", stats)
        return stats

    # -- 1. revisions ----------------------------------------------------------------------
    async def _prune_revisions(self, keep: dt.timedelta, ns_id: uuid.UUID | None) -> int:
        total = 0
        while True:
            pruned = await self.db.run(lambda conn: _prune_revision_batch(conn, keep, ns_id))
            total += pruned
            if pruned < BATCH:
                return total

    # -- 2. journal ------------------------------------------------------------------------
    async def _prune_journal(self, keep: dt.timedelta, ns_id: uuid.UUID | None) -> int:
        async def body(conn: Conn) -> int:
            scope = "AND ns_id = %s" if ns_id else ""
            cur = await conn.execute(
                f"SELECT ns_id, max(seq) FROM journal WHERE created_at < now() - %s {scope} GROUP BY ns_id LIMIT %s",
                (keep, ns_id, BATCH) if ns_id else (keep, BATCH),
            )
            pruned = 0
            for ns, upto in await cur.fetchall():
                res = await conn.execute(
                    "DELETE FROM journal WHERE ns_id = %s AND seq <= %s", (ns, upto)
                )
                pruned += res.rowcount
                await conn.execute(
                    "UPDATE namespaces SET oldest_seq = greatest(oldest_seq, %s) WHERE ns_id = %s",
                    (upto + 1, ns),
                )
            return pruned

        total = 0
        while True:
            pruned = await self.db.run(body)
            total += pruned
            if pruned == 0:
                return total

    # -- 3. chunks -------------------------------------------------------------------------
    async def _sweep(self, grace: dt.timedelta, stats: GCStats) -> None:
        while True:
            referenced, doomed = await self.db.run(lambda conn: _mark_batch(conn, grace))
            stats.chunks_referenced += referenced
            if not doomed:
                break
        pending = await self.db.run(_deleting)
        for i in range(0, len(pending), MAX_HASHES_PER_CALL):
            part = pending[i : i + MAX_HASHES_PER_CALL]
            done = await self.cleaner.delete(part)
            stats.chunks_failed += len(part) - len(done)
            if done:
                stats.chunks_deleted += await self.db.run(
                    lambda conn, done=list(done): _tombstone(conn, done)
                )

        async def waiting(conn: Conn) -> int:
            cur = await conn.execute("SELECT count(*) FROM gc_chunks WHERE state = 'candidate'")
            return int((await cur.fetchone())[0])

        stats.chunks_waiting = await self.db.run(waiting)

    # -- periodic --------------------------------------------------------------------------
    def start(self, interval: float = GC_INTERVAL) -> None:
        """Run a pass every ``interval`` seconds (with jitter) while this node holds the lease."""
        self._task = asyncio.create_task(self._loop(interval), name="metanode-gc")

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval * (0.5 + random.random()))
            try:
                if await self.db.run(lambda conn: _take_lease(conn, self.holder)):
                    await self.run_once()
            except Exception:  # a failed pass is retried on the next tick
                log.exception("gc pass failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _prune_revision_batch(conn: Conn, keep: dt.timedelta, ns_id: uuid.UUID | None) -> int:
    scope = "AND r.ns_id = %s" if ns_id else ""
    params: tuple = (keep, ns_id, BATCH) if ns_id else (keep, BATCH)
    cur = await conn.execute(
        f"""SELECT r.ns_id, r.file_id, r.rev_id, r.deleted, r.blocklist FROM revisions r
            WHERE r.created_at < now() - %s {scope}
              AND NOT EXISTS (SELECT 1 FROM files f
                              WHERE f.ns_id = r.ns_id AND f.file_id = r.file_id AND f.head_rev = r.rev_id)
            LIMIT %s""",
        params,
    )
    rows = await cur.fetchall()
    if not rows:
        return 0
    refs = []
    hashes: set[bytes] = set()
    for ns, file_id, rev_id, deleted, raw in rows:
        if deleted:
            continue
        for h in {c.hash for c in blocklists.decode(bytes(raw))}:
            refs.append((h, ns, file_id, rev_id))
            hashes.add(h)
    async with conn.cursor() as c:
        await c.executemany(
            "DELETE FROM revisions WHERE ns_id = %s AND file_id = %s AND rev_id = %s",
            [(r[0], r[1], r[2]) for r in rows],
        )
        if refs:
            await c.executemany(
                "DELETE FROM chunk_refs WHERE hash = %s AND ns_id = %s AND file_id = %s AND rev_id = %s",
                refs,
            )
    if hashes:
        await conn.execute(
            """INSERT INTO gc_chunks (hash, state, touched_at)
               SELECT h, 'candidate', now() FROM unnest(%s::BYTEA[]) AS t(h)
               ON CONFLICT (hash) DO UPDATE SET touched_at = now() WHERE gc_chunks.state = 'candidate'""",
            (list(hashes),),
        )
    return len(rows)


async def _mark_batch(conn: Conn, grace: dt.timedelta) -> tuple[int, list[bytes]]:
    """Candidates past grace: drop the referenced ones, mark the rest ``deleting``."""
    cur = await conn.execute(
        "SELECT hash FROM gc_chunks WHERE state = 'candidate' AND touched_at < now() - %s LIMIT %s",
        (grace, BATCH),
    )
    candidates = [bytes(r[0]) for r in await cur.fetchall()]
    if not candidates:
        return 0, []
    cur = await conn.execute(
        "SELECT DISTINCT hash FROM chunk_refs WHERE hash = ANY(%s)", (candidates,)
    )
    referenced = [bytes(r[0]) for r in await cur.fetchall()]
    garbage = [h for h in candidates if h not in set(referenced)]
    if referenced:
        await conn.execute("DELETE FROM gc_chunks WHERE hash = ANY(%s)", (referenced,))
    if garbage:
        await conn.execute(
            "UPDATE gc_chunks SET state = 'deleting' WHERE hash = ANY(%s)", (garbage,)
        )
        await conn.execute("DELETE FROM chunk_owners WHERE hash = ANY(%s)", (garbage,))
    return len(referenced), garbage or referenced


async def _deleting(conn: Conn) -> list[bytes]:
    cur = await conn.execute("SELECT hash FROM gc_chunks WHERE state = 'deleting'")
    return [bytes(r[0]) for r in await cur.fetchall()]


async def _tombstone(conn: Conn, hashes: list[bytes]) -> int:
    res = await conn.execute(
        "UPDATE gc_chunks SET state = 'deleted', deleted_at = now() WHERE hash = ANY(%s) AND state = 'deleting'",
        (hashes,),
    )
    return res.rowcount


async def _housekeeping(conn: Conn) -> None:
    """Old tombstones, idempotency keys and revoked tokens past their expiry."""
    await conn.execute(
        "DELETE FROM gc_chunks WHERE state = 'deleted' AND deleted_at < now() - %s",
        (TOMBSTONE_KEEP,),
    )
    await conn.execute("DELETE FROM idempotency WHERE created_at < now() - %s", (IDEMPOTENCY_KEEP,))
    await conn.execute("DELETE FROM revoked_tokens WHERE expires_at < now()")


async def _take_lease(conn: Conn, holder: str) -> bool:
    """True when this node holds (or just took) the GC lease."""
    cur = await conn.execute(
        """INSERT INTO gc_lease (name, holder, until_at) VALUES ('gc', %s, now() + %s)
           ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_at = excluded.until_at
           WHERE gc_lease.until_at < now() OR gc_lease.holder = excluded.holder
           RETURNING holder""",
        (holder, LEASE),
    )
    return await cur.fetchone() is not None
