"""File-tree reads and writes, each run inside one serializable transaction (``conn``).

A namespace is a tree of rows in ``files`` linked by ``parent_id``; a file keeps its id across
renames and moves. Every change writes a revision (numbered per file, ``n``), moves the file's
head, and appends to the namespace's gap-free journal (``metanode.journal``) in the same
transaction; who may write is ``metanode.permissions``'s to say. Deletes, moves and restores (``metanode.edits``) and shares (``metanode.sharing``)
are built from ``write_change`` too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from metanode import blocklists, chunks, journal
from metanode.db import Conn
from metanode.model import (
    MAX_LIST_PAGE,
    ROOT_PARENT,
    ChunkRef,
    EntryRow,
    FileVersion,
    Kind,
    Op,
    us,
)
from metanode.permissions import not_found
from metanode.txcache import TxCache
from tessera.errors import FailedPrecondition, NotFound
from tessera.paths import MAX_DEPTH, join_path, name_key, split_path

EMPTY_HASH = blocklists.content_hash([])


@dataclass(frozen=True)
class FileRow:
    """One row of ``files``: a file or folder at its head revision."""

    file_id: uuid.UUID
    parent_id: uuid.UUID
    name: str
    kind: Kind
    head_rev: uuid.UUID
    size: int
    deleted: bool
    seq: int
    mount_ns: uuid.UUID | None = None
    revs: int = 0


FILE_COLS = "file_id, parent_id, name, kind, head_rev, size, deleted, seq, mount_ns, revs"


def file_row(row: tuple) -> FileRow:
    """A FileRow from a ``SELECT {FILE_COLS}`` row."""
    return FileRow(
        row[0], row[1], row[2], Kind(row[3]), row[4], row[5], row[6], row[7], row[8], row[9]
    )


# -- lookups -------------------------------------------------------------------------------
async def child(
    conn: Conn, ns_id: uuid.UUID, parent_id: uuid.UUID, key: str, cache: TxCache | None = None
) -> FileRow | None:
    """The live child with this name key, else the most recently changed deleted one."""
    if cache is not None and (ns_id, parent_id, key) in cache.children:
        return cache.children[(ns_id, parent_id, key)]  # type: ignore[no-any-return]
    cur = await conn.execute(
        f"""SELECT {FILE_COLS} FROM files WHERE ns_id = %s AND parent_id = %s AND name_key = %s
            ORDER BY deleted, seq DESC, modified_at DESC LIMIT 1""",
        (ns_id, parent_id, key),
    )
    row = await cur.fetchone()
    found = file_row(row) if row else None
    if cache is not None:
        cache.children[(ns_id, parent_id, key)] = found
    return found


async def lookup(conn: Conn, ns_id: uuid.UUID, path: str) -> tuple[FileRow, str] | None:
    """The live entry at ``path`` and its path as stored (original case), or None."""
    parent = ROOT_PARENT
    stored: list[str] = []
    row: FileRow | None = None
    for segment in split_path(path):
        if row is not None and row.mount_ns is not None:
            return None  # a mount point has no children in this namespace
        row = await child(conn, ns_id, parent, name_key(segment))
        if row is None or row.deleted:
            return None
        stored.append(row.name)
        parent = row.file_id
    if row is None:
        return None
    return row, "/".join(stored)


async def lookup_any(conn: Conn, ns_id: uuid.UUID, path: str) -> tuple[FileRow, str] | None:
    """Like lookup, but any segment may be a deleted entry (history and restore of what was in
    a deleted folder): at each level the live entry wins, else the most recently deleted."""
    parent = ROOT_PARENT
    stored: list[str] = []
    row: FileRow | None = None
    for segment in split_path(path):
        if row is not None and row.mount_ns is not None:
            return None
        row = await child(conn, ns_id, parent, name_key(segment))
        if row is None:
            return None
        stored.append(row.name)
        parent = row.file_id
    if row is None:
        return None
    return row, "/".join(stored)


async def folder_path(conn: Conn, ns_id: uuid.UUID, folder_id: uuid.UUID) -> str | None:
    """Where a folder is now (its stored path), or None if it or a folder above it is
    deleted, it is not a folder, or it is a mount point."""
    names: list[str] = []
    current, kind = folder_id, Kind.FOLDER
    for _ in range(MAX_DEPTH + 1):
        if current == ROOT_PARENT:
            return "/".join(reversed(names))
        cur = await conn.execute(
            "SELECT parent_id, name, kind, deleted, mount_ns FROM files WHERE ns_id = %s AND file_id = %s",
            (ns_id, current),
        )
        row = await cur.fetchone()
        if row is None or row[3] or Kind(row[2]) is not kind or row[4] is not None:
            return None
        names.append(row[1])
        current = row[0]
    return None


async def entry(
    conn: Conn, ns_id: uuid.UUID, file_id: uuid.UUID, rev_id: uuid.UUID, path: str
) -> EntryRow:
    """One revision of a file as an entry, shown at ``path``."""
    cur = await conn.execute(
        """SELECT kind, size, deleted, created_at, seq, device_id, client_mtime_ns, content_hash, executable
           FROM revisions WHERE ns_id = %s AND file_id = %s AND rev_id = %s""",
        (ns_id, file_id, rev_id),
    )
    r = await cur.fetchone()
    if r is None:
        raise NotFound(f"{path}: no such revision")
    return EntryRow(
        ns_id,
        file_id,
        path,
        Kind(r[0]),
        r[1],
        rev_id,
        us(r[3]),
        r[2],
        r[4],
        r[5],
        r[6],
        bytes(r[7]),
        r[8],
    )


async def stat(conn: Conn, ns_id: uuid.UUID, path: str) -> EntryRow:
    """The head of the live entry at ``path``."""
    found = await lookup(conn, ns_id, path)
    if found is None:
        raise not_found(path)
    row, stored = found
    return await entry(conn, ns_id, row.file_id, row.head_rev, stored)


async def list_folder(
    conn: Conn,
    ns_id: uuid.UUID,
    path: str,
    *,
    limit: int,
    after: str = "",
    include_deleted: bool = False,
) -> tuple[list[EntryRow], str]:
    """A page of a folder's children ordered by name key; returns (entries, next page token)."""
    parent_id, parent_path = ROOT_PARENT, ""
    if path:
        found = await lookup(conn, ns_id, path)
        if found is None:
            raise not_found(path)
        if found[0].kind is not Kind.FOLDER:
            raise FailedPrecondition(f"{path} is a file, not a folder")
        parent_id, parent_path = found[0].file_id, found[1]
    limit = max(1, min(limit or MAX_LIST_PAGE, MAX_LIST_PAGE))
    cur = await conn.execute(
        f"""SELECT f.name_key, f.name, f.file_id, f.head_rev, r.kind, r.size, r.deleted, r.created_at, r.seq,
                   r.device_id, r.client_mtime_ns, r.content_hash, r.executable
            FROM files f JOIN revisions r ON r.ns_id = f.ns_id AND r.file_id = f.file_id AND r.rev_id = f.head_rev
            WHERE f.ns_id = %s AND f.parent_id = %s AND f.name_key > %s {"" if include_deleted else "AND NOT f.deleted"}
            ORDER BY f.name_key, f.deleted, f.seq DESC LIMIT %s""",
        (ns_id, parent_id, after, limit + 1),
    )
    rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [
        EntryRow(
            ns_id,
            r[2],
            join_path(parent_path, r[1]),
            Kind(r[4]),
            r[5],
            r[3],
            us(r[7]),
            r[6],
            r[8],
            r[9],
            r[10],
            bytes(r[11]),
            r[12],
        )
        for r in rows
    ]
    return entries, (rows[-1][0] if more and rows else "")


async def blocklist_of(
    conn: Conn, ns_id: uuid.UUID, file_id: uuid.UUID, rev_id: uuid.UUID
) -> list[ChunkRef]:
    """The chunks of one revision."""
    cur = await conn.execute(
        "SELECT blocklist FROM revisions WHERE ns_id = %s AND file_id = %s AND rev_id = %s",
        (ns_id, file_id, rev_id),
    )
    raw = await cur.fetchone()
    if raw is None:
        raise NotFound("no such revision")
    return blocklists.decode(bytes(raw[0]))


async def get_file(
    conn: Conn, ns_id: uuid.UUID, path: str, rev_id: uuid.UUID | None
) -> FileVersion:
    """A revision (default: the head) with its blocklist."""
    found = await (lookup_any(conn, ns_id, path) if rev_id else lookup(conn, ns_id, path))
    if found is None:
        raise not_found(path)
    row, stored = found
    if row.kind is Kind.FOLDER:
        raise FailedPrecondition(f"{path} is a folder")
    rev = rev_id or row.head_rev
    e = await entry(conn, ns_id, row.file_id, rev, stored)
    if e.deleted:
        raise NotFound(f"{path}: revision {rev} is a deletion")
    return FileVersion(e, await blocklist_of(conn, ns_id, row.file_id, rev))


async def path_of(conn: Conn, ns_id: uuid.UUID, row: FileRow) -> str:
    """The stored path of a row, walking up its parents."""
    names = [row.name]
    parent = row.parent_id
    while parent != ROOT_PARENT:
        cur = await conn.execute(
            "SELECT parent_id, name FROM files WHERE ns_id = %s AND file_id = %s", (ns_id, parent)
        )
        up = await cur.fetchone()
        if up is None:
            break
        names.append(up[1])
        parent = up[0]
    return "/".join(reversed(names))


# -- writes --------------------------------------------------------------------------------
async def write_change(
    conn: Conn,
    ns_id: uuid.UUID,
    row: FileRow | None,
    *,
    parent_id: uuid.UUID,
    name: str,
    path: str,
    kind: Kind,
    chunk_list: list[ChunkRef],
    op: Op,
    device_id: str,
    deleted: bool = False,
    client_mtime_ns: int = 0,
    old_path: str = "",
    mount_ns: uuid.UUID | None = None,
    executable: bool = False,
    cache: TxCache | None = None,
    user_id: uuid.UUID | None = None,
) -> EntryRow:
    """One change to one file: a new revision, the file's head moved to it, a journal record.

    ``row`` is the file's current row (None for a new file, which gets a fresh id); ``mount_ns``
    is only used when the row is created (a mount point in a member's root namespace);
    ``user_id`` records who made the change (shown in the trash). With a
    cache, no statement waits for its result (pipeline mode) and the cache learns the new row.
    """
    seq = await journal.next_seq(conn, ns_id, cache)
    file_id = row.file_id if row else uuid.uuid4()
    n = (row.revs if row else 0) + 1
    rev_id = uuid.uuid4()
    size = sum(c.size for c in chunk_list)
    digest = blocklists.content_hash(chunk_list) if chunk_list else EMPTY_HASH
    values = (
        ns_id, file_id, rev_id, row.head_rev if row else None, seq, n, int(kind), size, deleted, path,
        blocklists.encode(chunk_list), digest, device_id, client_mtime_ns, executable, user_id,
    )  # fmt: skip
    insert = """INSERT INTO revisions (ns_id, file_id, rev_id, parent_rev, seq, n, kind, size, deleted, path,
                                       blocklist, content_hash, device_id, client_mtime_ns, executable, user_id)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"""
    if cache is not None and cache.now is not None:
        await conn.execute(insert, values)  # created_at defaults to now(): the transaction's time
        created = cache.now
    else:
        created = (await (await conn.execute(insert + " RETURNING created_at", values)).fetchone())[
            0
        ]
    await journal.append(conn, ns_id, seq, op, kind, file_id, rev_id, path, old_path)
    if chunk_list and not deleted:
        await chunks.add_refs(conn, ns_id, file_id, rev_id, chunk_list)
    if row is None:
        await conn.execute(
            """INSERT INTO files (ns_id, file_id, parent_id, name, name_key, kind, head_rev, size, deleted,
                                  seq, mount_ns, revs)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                ns_id,
                file_id,
                parent_id,
                name,
                name_key(name),
                int(kind),
                rev_id,
                size,
                deleted,
                seq,
                mount_ns,
                n,
            ),
        )
    else:
        await conn.execute(
            """UPDATE files SET parent_id = %s, name = %s, name_key = %s, kind = %s, head_rev = %s, size = %s,
                                deleted = %s, seq = %s, revs = %s, modified_at = now()
               WHERE ns_id = %s AND file_id = %s""",
            (
                parent_id,
                name,
                name_key(name),
                int(kind),
                rev_id,
                size,
                deleted,
                seq,
                n,
                ns_id,
                file_id,
            ),
        )
    if cache is not None:
        cache.writes += 1
        if row is not None:
            cache.children.pop((ns_id, row.parent_id, name_key(row.name)), None)
        cache.children[(ns_id, parent_id, name_key(name))] = FileRow(
            file_id,
            parent_id,
            name,
            kind,
            rev_id,
            size,
            deleted,
            seq,
            row.mount_ns if row else mount_ns,
            n,
        )
    return EntryRow(
        ns_id,
        file_id,
        path,
        kind,
        size,
        rev_id,
        us(created),
        deleted,
        seq,
        device_id,
        client_mtime_ns,
        digest,
        executable,
    )
