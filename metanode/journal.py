"""Each namespace's gap-free journal: sequence numbers are reserved by bumping
``namespaces.head_seq`` in the writer's transaction (so concurrent changes serialize on it and
the journal never has a hole or a duplicate), and devices read it from their cursor on.
"""

from __future__ import annotations

import uuid

from metanode.db import Conn
from metanode.model import MAX_LIST_PAGE, ChangeRow, EntryRow, Kind, Op, us
from metanode.permissions import not_found
from metanode.txcache import TxCache


async def next_seq(conn: Conn, ns_id: uuid.UUID, cache: TxCache | None = None) -> int:
    """Reserve the namespace's next journal sequence number.

    With a cache, the head is bumped in the database once and counted in the cache after
    that (``TxCache.flush`` writes the last one back before the transaction commits).
    """
    if cache is not None and ns_id in cache.seqs:
        cache.seqs[ns_id] += 1
        cache.bumped.add(ns_id)
        return cache.seqs[ns_id]
    cur = await conn.execute(
        "UPDATE namespaces SET head_seq = head_seq + 1 WHERE ns_id = %s RETURNING head_seq, now()",
        (ns_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise not_found("")
    if cache is not None:
        cache.seqs[ns_id], cache.now = int(row[0]), row[1]
    return int(row[0])


async def append(
    conn: Conn,
    ns_id: uuid.UUID,
    seq: int,
    op: Op,
    kind: Kind,
    file_id: uuid.UUID,
    rev_id: uuid.UUID,
    path: str,
    old_path: str = "",
) -> None:
    """Record one change at ``seq`` (reserved with ``next_seq`` in the same transaction)."""
    await conn.execute(
        """INSERT INTO journal (ns_id, seq, op, kind, file_id, rev_id, path, old_path)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        (ns_id, seq, int(op), int(kind), file_id, rev_id, path, old_path),
    )


async def list_changes(
    conn: Conn, ns_id: uuid.UUID, after: int, limit: int
) -> tuple[list[ChangeRow], bool, bool, int]:
    """(changes with seq > after, has_more, resync_required, head_seq).

    A record whose revision was pruned by retention still appears (gap-free), with what the
    journal itself keeps: op, kind, file id, revision id and path.
    """
    cur = await conn.execute(
        "SELECT head_seq, oldest_seq FROM namespaces WHERE ns_id = %s", (ns_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise not_found("")
    head, oldest = int(row[0]), int(row[1])
    if after + 1 < oldest:
        return [], False, True, head
    limit = max(1, min(limit or MAX_LIST_PAGE, MAX_LIST_PAGE))
    cur = await conn.execute(
        """SELECT j.seq, j.op, j.path, j.old_path, j.file_id, j.rev_id, j.kind, r.size, r.deleted, j.created_at,
                  r.device_id, r.client_mtime_ns, r.content_hash, r.executable
           FROM journal j LEFT JOIN revisions r ON r.ns_id = j.ns_id AND r.file_id = j.file_id AND r.rev_id = j.rev_id
           WHERE j.ns_id = %s AND j.seq > %s ORDER BY j.seq LIMIT %s""",
        (ns_id, after, limit + 1),
    )
    rows = await cur.fetchall()
    more = len(rows) > limit
    changes = []
    for r in rows[:limit]:
        op = Op(r[1])
        deleted = r[8] if r[8] is not None else op is Op.DELETE
        e = EntryRow(
            ns_id,
            r[4],
            r[2],
            Kind(r[6]),
            r[7] or 0,
            r[5],
            us(r[9]),
            deleted,
            r[0],
            r[10] or "",
            r[11] or 0,
            bytes(r[12]) if r[12] is not None else b"",
            bool(r[13]),
        )
        changes.append(ChangeRow(ns_id, r[0], op, e, r[3]))
    return changes, more, False, head
