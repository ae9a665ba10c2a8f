"""File-tree operations, each run inside one serializable transaction (``conn``).

A namespace is a tree of rows in ``files`` linked by ``parent_id``; a file keeps its id across
renames. Every change writes a revision, moves the file's head, and appends to the namespace's
gap-free journal (``namespaces.head_seq`` is bumped in the same transaction, so concurrent
commits serialize on it and the journal never has a hole or a duplicate).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from metanode import blocklists
from metanode.db import Conn
from metanode.model import (
    ROOT_PARENT,
    ChangeRow,
    ChunkRef,
    CommitSpec,
    EntryRow,
    FileVersion,
    Kind,
    NamespaceRow,
    Op,
    Role,
)
from tessera.auth import Signer
from tessera.errors import Conflict, FailedPrecondition, NotFound, PermissionDenied
from tessera.paths import name_key, split_path

MAX_LIST_PAGE = 1000
_EMPTY_HASH = blocklists.content_hash([])


def _us(ts: dt.datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


@dataclass(frozen=True)
class FileRow:
    file_id: uuid.UUID
    parent_id: uuid.UUID
    name: str
    kind: Kind
    head_rev: uuid.UUID
    size: int
    deleted: bool
    seq: int


_FILE_COLS = "file_id, parent_id, name, kind, head_rev, size, deleted, seq"


def _file_row(row: tuple) -> FileRow:
    return FileRow(row[0], row[1], row[2], Kind(row[3]), row[4], row[5], row[6], row[7])


# -- namespaces and permissions -------------------------------------------------------------
async def role_of(conn: Conn, user_id: uuid.UUID, ns_id: uuid.UUID) -> Role | None:
    row = await (
        await conn.execute(
            "SELECT role FROM members WHERE user_id = %s AND ns_id = %s", (user_id, ns_id)
        )
    ).fetchone()
    return Role[row[0].upper()] if row else None


async def require_role(conn: Conn, user_id: uuid.UUID, ns_id: uuid.UUID, *, write: bool) -> Role:
    """The caller's role; a non-member learns nothing (the same NOT_FOUND as a missing path)."""
    role = await role_of(conn, user_id, ns_id)
    if role is None:
        raise NotFound("no such file or folder")
    if write and role is Role.VIEWER:
        raise PermissionDenied("you have view-only access to this folder")
    return role


async def list_namespaces(conn: Conn, user_id: uuid.UUID) -> list[NamespaceRow]:
    cur = await conn.execute(
        """SELECT m.ns_id, m.mount_path, m.role, n.head_seq, n.oldest_seq
           FROM members m JOIN namespaces n ON n.ns_id = m.ns_id
           WHERE m.user_id = %s ORDER BY m.mount_path""",
        (user_id,),
    )
    return [NamespaceRow(r[0], r[1], Role[r[2].upper()], r[3], r[4]) for r in await cur.fetchall()]


async def _next_seq(conn: Conn, ns_id: uuid.UUID) -> int:
    row = await (
        await conn.execute(
            "UPDATE namespaces SET head_seq = head_seq + 1 WHERE ns_id = %s RETURNING head_seq",
            (ns_id,),
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such file or folder")
    return int(row[0])


# -- lookups -------------------------------------------------------------------------------
async def _child(conn: Conn, ns_id: uuid.UUID, parent_id: uuid.UUID, key: str) -> FileRow | None:
    """The live child with this name key, else the most recently changed deleted one."""
    cur = await conn.execute(
        f"""SELECT {_FILE_COLS} FROM files WHERE ns_id = %s AND parent_id = %s AND name_key = %s
            ORDER BY deleted, seq DESC LIMIT 1""",
        (ns_id, parent_id, key),
    )
    row = await cur.fetchone()
    return _file_row(row) if row else None


async def lookup(conn: Conn, ns_id: uuid.UUID, path: str) -> tuple[FileRow, str] | None:
    """The live entry at ``path`` and its path as stored (original case), or None."""
    parent = ROOT_PARENT
    stored: list[str] = []
    row: FileRow | None = None
    for segment in split_path(path):
        row = await _child(conn, ns_id, parent, name_key(segment))
        if row is None or row.deleted:
            return None
        stored.append(row.name)
        parent = row.file_id
    if row is None:
        return None
    return row, "/".join(stored)


async def lookup_any(conn: Conn, ns_id: uuid.UUID, path: str) -> tuple[FileRow, str] | None:
    """Like lookup, but the last segment may be a deleted entry (for history and restore)."""
    parts = split_path(path)
    parent_id, parent_path = ROOT_PARENT, ""
    if len(parts) > 1:
        found = await lookup(conn, ns_id, "/".join(parts[:-1]))
        if found is None or found[0].kind is not Kind.FOLDER:
            return None
        parent_id, parent_path = found[0].file_id, found[1]
    row = await _child(conn, ns_id, parent_id, name_key(parts[-1]))
    if row is None:
        return None
    return row, f"{parent_path}/{row.name}" if parent_path else row.name


async def _entry(
    conn: Conn, ns_id: uuid.UUID, file_id: uuid.UUID, rev_id: uuid.UUID, path: str
) -> EntryRow:
    cur = await conn.execute(
        """SELECT kind, size, deleted, created_at, seq, device_id, client_mtime_ns, content_hash
           FROM revisions WHERE ns_id = %s AND file_id = %s AND rev_id = %s""",
        (ns_id, file_id, rev_id),
    )
    r = await cur.fetchone()
    if r is None:
        raise NotFound("no such revision")
    return EntryRow(
        ns_id,
        file_id,
        path,
        Kind(r[0]),
        r[1],
        rev_id,
        _us(r[3]),
        r[2],
        r[4],
        r[5],
        r[6],
        bytes(r[7]),
    )


async def stat(conn: Conn, ns_id: uuid.UUID, path: str) -> EntryRow:
    found = await lookup(conn, ns_id, path)
    if found is None:
        raise NotFound(f"{path}: no such file or folder")
    row, stored = found
    return await _entry(conn, ns_id, row.file_id, row.head_rev, stored)


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
            raise NotFound(f"{path}: no such file or folder")
        if found[0].kind is not Kind.FOLDER:
            raise FailedPrecondition(f"{path} is a file, not a folder")
        parent_id, parent_path = found[0].file_id, found[1]
    limit = max(1, min(limit or MAX_LIST_PAGE, MAX_LIST_PAGE))
    cur = await conn.execute(
        f"""SELECT f.name_key, f.name, f.file_id, f.head_rev, r.kind, r.size, r.deleted, r.created_at, r.seq,
                   r.device_id, r.client_mtime_ns, r.content_hash
            FROM files f JOIN revisions r ON r.ns_id = f.ns_id AND r.file_id = f.file_id AND r.rev_id = f.head_rev
            WHERE f.ns_id = %s AND f.parent_id = %s AND f.name_key > %s {"" if include_deleted else "AND NOT f.deleted"}
            ORDER BY f.name_key, f.seq DESC LIMIT %s""",
        (ns_id, parent_id, after, limit + 1),
    )
    rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [
        EntryRow(
            ns_id,
            r[2],
            f"{parent_path}/{r[1]}" if parent_path else r[1],
            Kind(r[4]),
            r[5],
            r[3],
            _us(r[7]),
            r[6],
            r[8],
            r[9],
            r[10],
            bytes(r[11]),
        )
        for r in rows
    ]
    return entries, (rows[-1][0] if more and rows else "")


async def get_file(
    conn: Conn, ns_id: uuid.UUID, path: str, rev_id: uuid.UUID | None
) -> FileVersion:
    """A revision (default: the head) with its blocklist."""
    found = await (lookup_any(conn, ns_id, path) if rev_id else lookup(conn, ns_id, path))
    if found is None:
        raise NotFound(f"{path}: no such file")
    row, stored = found
    if row.kind is Kind.FOLDER:
        raise FailedPrecondition(f"{path} is a folder")
    rev = rev_id or row.head_rev
    entry = await _entry(conn, ns_id, row.file_id, rev, stored)
    if entry.deleted:
        raise NotFound(f"{path}: revision {rev} is a deletion")
    raw = await (
        await conn.execute(
            "SELECT blocklist FROM revisions WHERE ns_id = %s AND file_id = %s AND rev_id = %s",
            (ns_id, row.file_id, rev),
        )
    ).fetchone()
    return FileVersion(entry, blocklists.decode(bytes(raw[0])))


# -- writes --------------------------------------------------------------------------------
async def _write_revision(
    conn: Conn,
    ns_id: uuid.UUID,
    file_id: uuid.UUID,
    *,
    parent_rev: uuid.UUID | None,
    kind: Kind,
    path: str,
    chunks: list[ChunkRef],
    deleted: bool,
    op: Op,
    device_id: str,
    client_mtime_ns: int,
    old_path: str = "",
) -> tuple[uuid.UUID, int]:
    seq = await _next_seq(conn, ns_id)
    rev_id = uuid.uuid4()
    size = sum(c.size for c in chunks)
    await conn.execute(
        """INSERT INTO revisions (ns_id, file_id, rev_id, parent_rev, seq, kind, size, deleted, path, blocklist,
                                  content_hash, device_id, client_mtime_ns)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            ns_id,
            file_id,
            rev_id,
            parent_rev,
            seq,
            int(kind),
            size,
            deleted,
            path,
            blocklists.encode(chunks),
            blocklists.content_hash(chunks) if chunks else _EMPTY_HASH,
            device_id,
            client_mtime_ns,
        ),
    )
    await conn.execute(
        "INSERT INTO journal (ns_id, seq, op, file_id, rev_id, path, old_path) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (ns_id, seq, int(op), file_id, rev_id, path, old_path),
    )
    return rev_id, seq


async def _upsert_file(
    conn: Conn,
    ns_id: uuid.UUID,
    existing: FileRow | None,
    parent_id: uuid.UUID,
    name: str,
    kind: Kind,
    rev_id: uuid.UUID,
    size: int,
    seq: int,
    *,
    deleted: bool = False,
    file_id: uuid.UUID | None = None,
) -> None:
    if existing is None:
        await conn.execute(
            """INSERT INTO files (ns_id, file_id, parent_id, name, name_key, kind, head_rev, size, deleted, seq)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
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
            ),
        )
    else:
        await conn.execute(
            """UPDATE files SET parent_id = %s, name = %s, name_key = %s, kind = %s, head_rev = %s, size = %s,
                                deleted = %s, seq = %s, modified_at = now()
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
                ns_id,
                existing.file_id,
            ),
        )


async def ensure_folders(
    conn: Conn, ns_id: uuid.UUID, parts: list[str], device_id: str
) -> tuple[uuid.UUID, str]:
    """Walk (and create, like mkdir -p) the folders of ``parts``; returns (folder id, stored path)."""
    parent, stored = ROOT_PARENT, ""
    for segment in parts:
        row = await _child(conn, ns_id, parent, name_key(segment))
        path = (
            f"{stored}/{row.name if row and not row.deleted else segment}"
            if stored
            else (row.name if row and not row.deleted else segment)
        )
        if row is not None and not row.deleted:
            if row.kind is not Kind.FOLDER:
                raise FailedPrecondition(f"{path} is a file, not a folder")
            parent, stored = row.file_id, path
            continue
        file_id = row.file_id if row else uuid.uuid4()
        rev_id, seq = await _write_revision(
            conn,
            ns_id,
            file_id,
            parent_rev=row.head_rev if row else None,
            kind=Kind.FOLDER,
            path=path,
            chunks=[],
            deleted=False,
            op=Op.UPSERT,
            device_id=device_id,
            client_mtime_ns=0,
        )
        await _upsert_file(
            conn, ns_id, row, parent, segment, Kind.FOLDER, rev_id, 0, seq, file_id=file_id
        )
        parent, stored = file_id, path
    return parent, stored


async def need_chunks(conn: Conn, user_id: uuid.UUID, hashes: list[bytes]) -> list[bytes]:
    """The hashes this user does not own yet (in order, without duplicates)."""
    unique = list(dict.fromkeys(hashes))
    if not unique:
        return []
    cur = await conn.execute(
        "SELECT hash FROM chunk_owners WHERE user_id = %s AND hash = ANY(%s)", (user_id, unique)
    )
    owned = {bytes(r[0]) for r in await cur.fetchall()}
    return [h for h in unique if h not in owned]


async def _claim_chunks(conn: Conn, user_id: uuid.UUID, spec: CommitSpec, signer: Signer) -> None:
    """Every chunk must be owned by the user already or come with a valid receipt for them."""
    missing = await need_chunks(conn, user_id, [c.hash for c in spec.chunks])
    if not missing:
        return
    receipts = {r.hash: r for r in spec.receipts}
    sizes = {c.hash: c.size for c in spec.chunks}
    new_rows = []
    for h in missing:
        r = receipts.get(h)
        if (
            r is None
            or r.size != sizes[h]
            or r.user_id != str(user_id)
            or not signer.check_receipt(h, r.size, r.user_id, r.expires_at, r.signature)
        ):
            raise FailedPrecondition(
                f"chunk {h.hex()[:16]}… has no valid upload receipt: upload it first"
            )
        new_rows.append((user_id, h, sizes[h]))
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO chunk_owners (user_id, hash, size) VALUES (%s, %s, %s) ON CONFLICT (user_id, hash) DO NOTHING",
            new_rows,
        )


async def commit(conn: Conn, user_id: uuid.UUID, spec: CommitSpec, signer: Signer) -> EntryRow:
    """Commit one file version: permission, receipts, conflict check, revision, head, journal."""
    await require_role(conn, user_id, spec.ns_id, write=True)
    parts = split_path(spec.path)
    parent_id, parent_path = await ensure_folders(conn, spec.ns_id, parts[:-1], spec.device_id)
    name = parts[-1]
    existing = await _child(conn, spec.ns_id, parent_id, name_key(name))
    if existing is not None and not existing.deleted:
        if existing.kind is Kind.FOLDER:
            raise FailedPrecondition(f"{spec.path} is a folder")
        if spec.parent_rev != existing.head_rev:
            raise Conflict(
                f"{spec.path} changed since revision {spec.parent_rev or 'none'}: head is {existing.head_rev}",
                str(existing.head_rev),
            )
    # An edit against a deleted file wins: it resurrects the file (same id, history continues).
    await _claim_chunks(conn, user_id, spec, signer)
    file_id = existing.file_id if existing else uuid.uuid4()
    stored_name = name
    path = f"{parent_path}/{stored_name}" if parent_path else stored_name
    rev_id, seq = await _write_revision(
        conn,
        spec.ns_id,
        file_id,
        parent_rev=existing.head_rev if existing else None,
        kind=Kind.FILE,
        path=path,
        chunks=spec.chunks,
        deleted=False,
        op=Op.UPSERT,
        device_id=spec.device_id,
        client_mtime_ns=spec.client_mtime_ns,
    )
    size = sum(c.size for c in spec.chunks)
    await _upsert_file(
        conn,
        spec.ns_id,
        existing,
        parent_id,
        stored_name,
        Kind.FILE,
        rev_id,
        size,
        seq,
        file_id=file_id,
    )
    return await _entry(conn, spec.ns_id, file_id, rev_id, path)


async def make_folder(
    conn: Conn, user_id: uuid.UUID, ns_id: uuid.UUID, path: str, device_id: str
) -> EntryRow:
    await require_role(conn, user_id, ns_id, write=True)
    folder_id, stored = await ensure_folders(conn, ns_id, split_path(path), device_id)
    row = await lookup(conn, ns_id, stored)
    assert row is not None
    return await _entry(conn, ns_id, folder_id, row[0].head_rev, stored)


# -- journal ---------------------------------------------------------------------------------
async def list_changes(
    conn: Conn, ns_id: uuid.UUID, after: int, limit: int
) -> tuple[list[ChangeRow], bool, bool, int]:
    """(changes with seq > after, has_more, resync_required, head_seq)."""
    row = await (
        await conn.execute("SELECT head_seq, oldest_seq FROM namespaces WHERE ns_id = %s", (ns_id,))
    ).fetchone()
    if row is None:
        raise NotFound("no such namespace")
    head, oldest = int(row[0]), int(row[1])
    if after + 1 < oldest:
        return [], False, True, head
    limit = max(1, min(limit or MAX_LIST_PAGE, MAX_LIST_PAGE))
    cur = await conn.execute(
        """SELECT j.seq, j.op, j.path, j.old_path, r.file_id, r.rev_id, r.kind, r.size, r.deleted, r.created_at,
                  r.device_id, r.client_mtime_ns, r.content_hash
           FROM journal j JOIN revisions r ON r.ns_id = j.ns_id AND r.file_id = j.file_id AND r.rev_id = j.rev_id
           WHERE j.ns_id = %s AND j.seq > %s ORDER BY j.seq LIMIT %s""",
        (ns_id, after, limit + 1),
    )
    rows = await cur.fetchall()
    more = len(rows) > limit
    changes = [
        ChangeRow(
            ns_id,
            r[0],
            Op(r[1]),
            EntryRow(
                ns_id,
                r[4],
                r[2],
                Kind(r[6]),
                r[7],
                r[5],
                _us(r[9]),
                r[8],
                r[0],
                r[10],
                r[11],
                bytes(r[12]),
            ),
            r[3],
        )
        for r in rows[:limit]
    ]
    return changes, more, False, head
