"""Deletes, moves, restores and history, each inside one serializable transaction.

- A delete is a revision (restorable); deleting a folder writes one delete revision per live
  entry inside it, deepest first, then the folder's own, each with its journal record. It
  removes only what the deleting device had seen (``seen_seq``): entries changed after that
  stay, with their parent folders, and the journal names exactly what was deleted.
- A move keeps the file id and is one change: only the moved row changes (a folder's contents
  follow it through ``parent_id``); it gets a revision (op MOVE, same blocklist) so history
  follows the file, and its journal record carries ``old_path``.
- A restore is a new revision pointing at an old revision's blocklist: no data is copied.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from metanode import commits, files, permissions, tree
from metanode.db import Conn
from metanode.files import FileRow
from metanode.model import EntryRow, Kind, Op
from tessera.errors import AlreadyExists, Conflict, FailedPrecondition, NotFound
from tessera.paths import join_path, name_key, split_path

MAX_HISTORY = 1000


@dataclass(frozen=True)
class Deletion:
    """What a delete did: the entry (the folder's live head when something inside was kept),
    how many entries inside were kept, and the newest journal seq it wrote (0: none)."""

    entry: EntryRow
    kept: int = 0
    last_seq: int = 0


@dataclass(frozen=True)
class SubtreeRow:
    """A row below some folder, with its path relative to that folder."""

    row: FileRow
    rel_path: str


async def subtree(
    conn: Conn, ns_id: uuid.UUID, top_id: uuid.UUID, *, live_only: bool
) -> list[SubtreeRow]:
    """Every row below folder ``top_id`` (not the folder itself), parents before children."""
    live = "AND NOT deleted" if live_only else ""
    cur = await conn.execute(
        f"""WITH RECURSIVE sub ({files.FILE_COLS}) AS (
                SELECT {files.FILE_COLS} FROM files WHERE ns_id = %s AND parent_id = %s {live}
                UNION ALL
                SELECT f.file_id, f.parent_id, f.name, f.kind, f.head_rev, f.size, f.deleted, f.seq, f.mount_ns, f.revs
                FROM files f JOIN sub s ON f.parent_id = s.file_id
                WHERE f.ns_id = %s {live.replace("deleted", "f.deleted")}
            ) SELECT {files.FILE_COLS} FROM sub""",
        (ns_id, top_id, ns_id),
    )
    rows = [files.file_row(r) for r in await cur.fetchall()]
    by_id = {r.file_id: r for r in rows}
    paths: dict[uuid.UUID, str] = {}

    def path_of(r: FileRow) -> str:
        if r.file_id not in paths:
            parent = by_id.get(r.parent_id)
            paths[r.file_id] = join_path(path_of(parent), r.name) if parent else r.name
        return paths[r.file_id]

    out = [SubtreeRow(r, path_of(r)) for r in rows]
    order = tree.parents_first([s.rel_path for s in out])
    return [out[i] for i in order]


async def _live(conn: Conn, ns_id: uuid.UUID, path: str) -> tuple[FileRow, str]:
    found = await files.lookup(conn, ns_id, path)
    if found is None:
        raise files.not_found(path)
    return found


def _check_parent(path: str, row: FileRow, parent_rev: uuid.UUID | None) -> None:
    if parent_rev is not None and parent_rev != row.head_rev:
        raise Conflict(
            f"{path} changed since revision {parent_rev}: head is {row.head_rev}", str(row.head_rev)
        )


def _refuse_mount(path: str, row: FileRow) -> None:
    if row.mount_ns is not None:
        raise FailedPrecondition(
            f"{path} is a shared folder: to leave it, unshare it with yourself"
        )


async def delete(
    conn: Conn,
    user_id: uuid.UUID,
    ns_id: uuid.UUID,
    path: str,
    parent_rev: uuid.UUID | None,
    device_id: str,
    seen_seq: int | None = None,
) -> Deletion:
    """Delete a file, or a folder and what in it the device had seen.

    ``seen_seq`` is the device's journal cursor for the namespace (None: everything as of now).
    An entry inside the folder whose head is newer than it (added, edited or moved in after the
    device looked) is kept, with the folders on its way, so the folder stays, unless that head
    was written by the deleting device itself (it knows its own writes before its cursor does).
    A file whose head is newer than ``seen_seq`` is a conflict, like a stale ``parent_rev``.

    Returns:
        What was deleted and kept.
    """
    await permissions.require_role(conn, user_id, ns_id, write=True, path=path)
    row, stored = await _live(conn, ns_id, path)
    _check_parent(path, row, parent_rev)
    _refuse_mount(stored, row)
    if row.kind is not Kind.FOLDER:
        if (
            seen_seq is not None
            and parent_rev is None
            and row.seq > seen_seq
            and not await _written_by(conn, ns_id, [row], device_id)
        ):
            raise Conflict(f"{path} changed after journal seq {seen_seq}", str(row.head_rev))
        gone = await write_delete(conn, ns_id, row, stored, device_id, user_id)
        return Deletion(gone, 0, gone.seq)
    inside = await subtree(conn, ns_id, row.file_id, live_only=True)
    for s in inside:
        _refuse_mount(join_path(stored, s.rel_path), s.row)
    newer = [
        r for r in [row, *(s.row for s in inside)] if seen_seq is not None and r.seq > seen_seq
    ]
    own = await _written_by(conn, ns_id, newer, device_id)
    keep = tree.kept_after(
        [
            (s.row.file_id, s.row.parent_id, 0 if s.row.file_id in own else s.row.seq)
            for s in inside
        ],
        seen_seq,
    )
    last = 0
    for i in tree.children_first([s.rel_path for s in inside]):
        s = inside[i]
        if s.row.file_id not in keep:
            last = (
                await write_delete(
                    conn, ns_id, s.row, join_path(stored, s.rel_path), device_id, user_id
                )
            ).seq
    if keep or any(r.file_id == row.file_id and r.file_id not in own for r in newer):
        head = await files.entry(conn, ns_id, row.file_id, row.head_rev, stored)
        return Deletion(head, len(keep), last)
    gone = await write_delete(conn, ns_id, row, stored, device_id, user_id)
    return Deletion(gone, 0, gone.seq)


async def _written_by(
    conn: Conn, ns_id: uuid.UUID, rows: list[FileRow], device_id: str
) -> set[uuid.UUID]:
    """The ids among ``rows`` whose head revision this device wrote."""
    if not rows or not device_id:
        return set()
    cur = await conn.execute(
        """SELECT file_id FROM revisions
           WHERE ns_id = %s AND rev_id = ANY(%s) AND file_id = ANY(%s) AND device_id = %s""",
        (ns_id, [r.head_rev for r in rows], [r.file_id for r in rows], device_id),
    )
    return {r[0] for r in await cur.fetchall()}


async def write_delete(
    conn: Conn,
    ns_id: uuid.UUID,
    row: FileRow,
    path: str,
    device_id: str,
    user_id: uuid.UUID | None = None,
) -> EntryRow:
    return await files.write_change(
        conn,
        ns_id,
        row,
        parent_id=row.parent_id,
        name=row.name,
        path=path,
        kind=row.kind,
        chunk_list=[],
        op=Op.DELETE,
        device_id=device_id,
        deleted=True,
        user_id=user_id,
    )


async def move(
    conn: Conn,
    user_id: uuid.UUID,
    ns_id: uuid.UUID,
    src: str,
    dst: str,
    parent_rev: uuid.UUID | None,
    device_id: str,
) -> tuple[EntryRow, str]:
    """Move or rename a file or folder (folders of ``dst`` are created as needed).

    Returns:
        (the moved entry, its old stored path).
    """
    await permissions.require_role(conn, user_id, ns_id, write=True, path=src)
    tree.check_move(src, dst)
    row, old_path = await _live(conn, ns_id, src)
    _check_parent(src, row, parent_rev)
    parts = split_path(dst)
    parent_id, parent_path = await commits.ensure_folders(conn, ns_id, parts[:-1], device_id)
    name = parts[-1]
    if parent_id == row.parent_id and name == row.name:
        return await files.entry(conn, ns_id, row.file_id, row.head_rev, old_path), old_path
    clash = await files.child(conn, ns_id, parent_id, name_key(name))
    if clash is not None and not clash.deleted and clash.file_id != row.file_id:
        raise AlreadyExists(f"{join_path(parent_path, clash.name)} already exists")
    chunk_list = (
        []
        if row.kind is Kind.FOLDER
        else await files.blocklist_of(conn, ns_id, row.file_id, row.head_rev)
    )
    head = await files.entry(conn, ns_id, row.file_id, row.head_rev, old_path)
    moved = await files.write_change(
        conn,
        ns_id,
        row,
        parent_id=parent_id,
        name=name,
        path=join_path(parent_path, name),
        kind=row.kind,
        chunk_list=chunk_list,
        op=Op.MOVE,
        device_id=device_id,
        client_mtime_ns=head.client_mtime_ns,
        old_path=old_path,
        executable=head.executable,
    )
    return moved, old_path


async def restore(
    conn: Conn, user_id: uuid.UUID, ns_id: uuid.UUID, path: str, rev_id: uuid.UUID, device_id: str
) -> EntryRow:
    """Make an earlier revision of the file at ``path`` its head again, as a new revision.

    Works for a deleted file too (its deleted folders come back with it).
    """
    await permissions.require_role(conn, user_id, ns_id, write=True, path=path)
    found = await files.lookup_any(conn, ns_id, path)
    if found is None:
        raise files.not_found(path)
    row, stored = found
    _refuse_mount(stored, row)
    cur = await conn.execute(
        "SELECT kind, deleted, client_mtime_ns, executable FROM revisions WHERE ns_id = %s AND file_id = %s AND rev_id = %s",
        (ns_id, row.file_id, rev_id),
    )
    rev = await cur.fetchone()
    if rev is None:
        raise NotFound(f"{stored}: no revision {rev_id} (see its history)")
    if rev[1]:
        raise FailedPrecondition(f"revision {rev_id} of {stored} is a deletion: pick one before it")
    chunk_list = await files.blocklist_of(conn, ns_id, row.file_id, rev_id)
    parts = split_path(stored)
    parent_id, parent_path = await commits.ensure_folders(conn, ns_id, parts[:-1], device_id)
    if (
        parent_id != row.parent_id
    ):  # the folders were replaced since: restore beside what is there now
        raise FailedPrecondition(
            f"{stored}: the folder it was in was replaced; restore into a new path instead"
        )
    return await files.write_change(
        conn,
        ns_id,
        row,
        parent_id=parent_id,
        name=row.name,
        path=join_path(parent_path, row.name),
        kind=Kind(rev[0]),
        chunk_list=chunk_list,
        op=Op.UPSERT,
        device_id=device_id,
        client_mtime_ns=rev[2],
        executable=rev[3],
    )


async def history(
    conn: Conn, user_id: uuid.UUID, ns_id: uuid.UUID, path: str, limit: int
) -> list[EntryRow]:
    """The revisions of the file at ``path`` (live or deleted), newest first, each at its path then;
    for a folder, the revisions of everything ever in it too."""
    await permissions.require_role(conn, user_id, ns_id, write=False, path=path)
    found = await files.lookup_any(conn, ns_id, path)
    if found is None:
        raise files.not_found(path)
    row = found[0]
    limit = max(1, min(limit or MAX_HISTORY, MAX_HISTORY))
    if row.kind is Kind.FOLDER:
        return await folder_history(conn, ns_id, row, limit)
    cur = await conn.execute(
        """SELECT rev_id, path, kind, size, deleted, created_at, seq, device_id, client_mtime_ns, content_hash,
                  executable
           FROM revisions WHERE ns_id = %s AND file_id = %s ORDER BY n DESC, created_at DESC LIMIT %s""",
        (ns_id, row.file_id, limit),
    )
    return [_rev_entry(ns_id, row.file_id, r) for r in await cur.fetchall()]


async def folder_history(
    conn: Conn, ns_id: uuid.UUID, folder: FileRow, limit: int
) -> list[EntryRow]:
    """Every revision of a folder and of everything ever in it, newest first."""
    inside = await subtree(conn, ns_id, folder.file_id, live_only=False)
    ids = [folder.file_id] + [s.row.file_id for s in inside]
    cur = await conn.execute(
        """SELECT rev_id, path, kind, size, deleted, created_at, seq, device_id, client_mtime_ns, content_hash,
                  executable, file_id
           FROM revisions WHERE ns_id = %s AND file_id = ANY(%s)
           ORDER BY created_at DESC, seq DESC LIMIT %s""",
        (ns_id, ids, limit),
    )
    return [_rev_entry(ns_id, r[11], r) for r in await cur.fetchall()]


def _rev_entry(ns_id: uuid.UUID, file_id: uuid.UUID, r: tuple) -> EntryRow:
    """An entry from a history row (rev_id, path, kind, size, deleted, created_at, seq,
    device_id, client_mtime_ns, content_hash, executable)."""
    return EntryRow(
        ns_id, file_id, r[1], Kind(r[2]), r[3], r[0], files.us(r[5]), r[4], r[6], r[7], r[8],
        bytes(r[9]), r[10],
    )  # fmt: skip
