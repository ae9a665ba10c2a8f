"""Chunk ownership, receipts and the references the garbage collector follows.

- ``chunk_owners`` (per user): what ``NeedChunks`` answers from, so no user learns what
  another stores (no deduplication side channel).
- ``chunk_refs`` (per chunk): which revisions reference a chunk; written with each revision,
  dropped when retention prunes it.
- ``gc_chunks`` (per chunk): chunks that may be garbage. ``NeedChunks`` marks the chunks a user
  is about to upload (so an upload that is never committed is collected after the grace
  period, and one in flight is not); a chunk the GC is deleting or has deleted needs a fresh
  upload (or proof that a block node holds it) before a commit may reference it.
"""

from __future__ import annotations

import uuid

from metanode.db import Conn
from metanode.model import ChunkRef, CommitSpec
from metanode.txcache import TxCache
from tessera.auth import Signer
from tessera.errors import FailedPrecondition, Unavailable
from tessera.pb import errors_pb2


class NeedProof(Exception):  # noqa: N818 - a control-flow signal, not an error for callers
    """Some receipted chunks were garbage-collected after an earlier upload: the service asks the
    block nodes whether they hold them now, then runs the transaction again."""

    def __init__(self, hashes: list[bytes]) -> None:
        super().__init__(f"{len(hashes)} chunks need proof of presence")
        self.hashes = hashes


def _short(h: bytes) -> str:
    return h.hex()[:16] + "…"


async def owned(conn: Conn, user_id: uuid.UUID, hashes: list[bytes]) -> set[bytes]:
    """The hashes among ``hashes`` this user owns."""
    if not hashes:
        return set()
    cur = await conn.execute(
        "SELECT hash FROM chunk_owners WHERE user_id = %s AND hash = ANY(%s)", (user_id, hashes)
    )
    return {bytes(r[0]) for r in await cur.fetchall()}


async def need_chunks(conn: Conn, user_id: uuid.UUID, hashes: list[bytes]) -> list[bytes]:
    """The hashes this user does not own yet (in order, without duplicates).

    Also marks them as upload candidates for the GC (an upload that is never committed is
    collected after the grace period), and refreshes owned chunks that are GC candidates so
    they survive until the commit that is about to reference them.
    """
    unique = list(dict.fromkeys(hashes))
    if not unique:
        return []
    have = await owned(conn, user_id, unique)
    missing = [h for h in unique if h not in have]
    if missing:
        await conn.execute(
            """INSERT INTO gc_chunks (hash, state, touched_at)
               SELECT h, 'candidate', now() FROM unnest(%s::BYTEA[]) AS t(h)
               ON CONFLICT (hash) DO UPDATE SET touched_at = now(), state = 'candidate'
               WHERE gc_chunks.state <> 'deleting'""",
            (missing,),
        )
    if have:
        await conn.execute(
            "UPDATE gc_chunks SET touched_at = now() WHERE hash = ANY(%s) AND state = 'candidate'",
            (list(have),),
        )
    return missing


async def facts(
    conn: Conn, user_id: uuid.UUID, hashes: list[bytes]
) -> tuple[set[bytes], dict[bytes, tuple[str, bool]]]:
    """In one query: which chunks the user owns, and the GC marks of the others."""
    if not hashes:
        return set(), {}
    cur = await conn.execute(
        """SELECT t.h, o.hash IS NOT NULL, g.state, g.deleted_at IS NOT NULL
           FROM unnest(%s::BYTEA[]) AS t(h)
           LEFT JOIN chunk_owners o ON o.user_id = %s AND o.hash = t.h
           LEFT JOIN gc_chunks g ON g.hash = t.h AND (g.state = 'deleting' OR g.deleted_at IS NOT NULL)""",
        (hashes, user_id),
    )
    have: set[bytes] = set()
    marks: dict[bytes, tuple[str, bool]] = {}
    for raw, is_owned, state, tombstoned in await cur.fetchall():
        h = bytes(raw)
        if is_owned:
            have.add(h)
        elif state is not None:
            marks[h] = (state, tombstoned)
    return have, marks


async def prefetch(conn: Conn, user_id: uuid.UUID, hashes: list[bytes], cache: TxCache) -> None:
    """Load ownership and GC marks of every chunk of a batch in one query."""
    cache.owned, cache.gc = await facts(conn, user_id, list(dict.fromkeys(hashes)))


async def claim(
    conn: Conn, user_id: uuid.UUID, spec: CommitSpec, signer: Signer, cache: TxCache | None = None
) -> None:
    """Every chunk must be owned by the user already or come with a valid receipt for them.

    All checks come before the only write (the new ownership rows).

    Raises:
        FailedPrecondition: A chunk without a valid receipt, or one the GC removed since.
        Unavailable: A chunk the GC is deleting right now (upload it again in a moment).
        NeedProof: Receipted chunks with a GC tombstone not yet checked on the block nodes.
    """
    unique = list(dict.fromkeys(c.hash for c in spec.chunks))
    if not unique:
        return
    if cache is None or cache.owned is None or cache.gc is None:
        if cache is None:
            cache = TxCache()
        cache.owned, cache.gc = await facts(conn, user_id, unique)
    missing = [h for h in unique if h not in cache.owned]
    if not missing:
        return
    receipts = {r.hash: r for r in spec.receipts}
    sizes = {c.hash: c.size for c in spec.chunks}
    for h in missing:
        r = receipts.get(h)
        if (
            r is None
            or r.size != sizes[h]
            or r.user_id != str(user_id)
            or not signer.check_receipt(h, r.size, r.user_id, r.expires_at, r.signature)
        ):
            raise FailedPrecondition(
                f"chunk {_short(h)} has no valid upload receipt: upload it first"
            )
    marks = {h: cache.gc[h] for h in missing if h in cache.gc}
    unproven: list[bytes] = []
    proven: list[bytes] = []
    for h, (state, tombstoned) in marks.items():
        if state == "deleting":
            raise Unavailable(
                f"chunk {_short(h)} is being garbage-collected: upload it again in a moment"
            )
        if tombstoned:
            (proven if h in spec.present else unproven).append(h)
    if unproven:
        raise NeedProof(unproven)
    if proven:
        await conn.execute("UPDATE gc_chunks SET deleted_at = NULL WHERE hash = ANY(%s)", (proven,))
    async with conn.cursor() as c:
        await c.executemany(
            "INSERT INTO chunk_owners (user_id, hash, size) VALUES (%s, %s, %s) ON CONFLICT (user_id, hash) DO NOTHING",
            [(user_id, h, sizes[h]) for h in missing],
        )
    cache.writes += 1
    cache.owned.update(missing)
    for h in proven:
        cache.gc.pop(h, None)


# Still sent for clients from before typed details; no client in this tree reads it.
REUPLOAD_KEY = "tessera-reupload"


def tombstone_error(hashes: list[bytes]) -> FailedPrecondition:
    """The error for receipted chunks that no block node holds any more.

    Its ``ReuploadChunks`` detail lists them: a client that keeps receipts of earlier uploads
    must drop those and upload the chunks again.
    """
    return FailedPrecondition(
        f"chunk {_short(hashes[0])} was garbage-collected after it was uploaded: upload it again",
        trailers=((REUPLOAD_KEY, ",".join(h.hex() for h in hashes)),),
        details=(errors_pb2.ReuploadChunks(hashes=hashes),),
    )


async def add_refs(
    conn: Conn, ns_id: uuid.UUID, file_id: uuid.UUID, rev_id: uuid.UUID, chunk_list: list[ChunkRef]
) -> None:
    """Record that a revision references its chunks (the GC keeps them while it is kept)."""
    unique = list(dict.fromkeys(c.hash for c in chunk_list))
    await conn.execute(
        """INSERT INTO chunk_refs (hash, ns_id, file_id, rev_id)
           SELECT h, %s, %s, %s FROM unnest(%s::BYTEA[]) AS t(h) ON CONFLICT DO NOTHING""",
        (ns_id, file_id, rev_id, unique),
    )
