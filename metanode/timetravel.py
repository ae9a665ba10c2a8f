"""Point-in-time restore of a file or a whole folder, folder history, and the trash.

``restore_at`` runs inside the caller's one serializable transaction: it reads, for the file or
for every row of the folder's subtree (deleted rows included), the revision that was the head
at the time asked for, then writes new revisions so the tree looks as it did then:

- a row that did not exist then, or was deleted then, and is live now gets a delete revision
  (children first);
- a row live then gets, when it differs now, a revision pointing at the old revision's
  blocklist (no data copied), at the path it had then relative to the folder (parents first;
  a deleted row comes back, a moved one moves back).

Every later revision stays in history, so a restore can itself be undone. All or nothing: a
name that cannot be taken back (something outside the folder moved into its place) aborts the
transaction with FAILED_PRECONDITION and nothing is written.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from metanode import commits, edits, files, permissions, tree
from metanode.db import Conn
from metanode.edits import SubtreeRow
from metanode.files import FileRow
from metanode.model import ROOT_PARENT, EntryRow, Kind, Op
from tessera.errors import FailedPrecondition, NotFound
from tessera.paths import join_path, name_key, split_path

MAX_TRASH = 1000
JUST_BEFORE = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Then:
    """A file's head revision at the time asked for."""

    rev_id: uuid.UUID
    kind: Kind
    deleted: bool
    path: str
    client_mtime_ns: int
    content_hash: bytes
    executable: bool = False


@dataclass(frozen=True)
class TrashRow:
    """A deleted file or folder: its deletion revision, who made it, what went with it."""

    entry: EntryRow
    deleted_by: str
    files_inside: int


def from_us(at_us: int) -> dt.datetime:
    """A timestamp from microseconds since the epoch."""
    return dt.datetime.fromtimestamp(at_us / 1_000_000, tz=dt.UTC)


async def _heads_then(
    conn: Conn, ns_id: uuid.UUID, ids: list[uuid.UUID], at: dt.datetime
) -> dict[uuid.UUID, Then]:
    """For each file id, the newest revision made at or before ``at`` (absent: none yet)."""
    cur = await conn.execute(
        """SELECT DISTINCT ON (file_id) file_id, rev_id, kind, deleted, path, client_mtime_ns, content_hash,
                  executable
           FROM revisions WHERE ns_id = %s AND file_id = ANY(%s) AND created_at <= %s
           ORDER BY file_id, n DESC""",
        (ns_id, ids, at),
    )
    return {
        r[0]: Then(r[1], Kind(r[2]), r[3], r[4], r[5], bytes(r[6]), r[7])
        for r in await cur.fetchall()
    }


async def path_by_id(conn: Conn, ns_id: uuid.UUID, file_id: uuid.UUID) -> tuple[FileRow, str]:
    cur = await conn.execute(
        f"SELECT {files.FILE_COLS} FROM files WHERE ns_id = %s AND file_id = %s", (ns_id, file_id)
    )
    raw = await cur.fetchone()
    if raw is None:
        raise NotFound(f"no file or folder with id {file_id} here")
    row = files.file_row(raw)
    return row, await files.path_of(conn, ns_id, row)


async def find(
    conn: Conn, ns_id: uuid.UUID, path: str, file_id: uuid.UUID | None
) -> tuple[FileRow, str]:
    """The entry a restore or history names: by id (a trash entry) or by path, live or deleted."""
    if file_id is not None:
        return await path_by_id(conn, ns_id, file_id)
    found = await files.lookup_any(conn, ns_id, path)
    if found is None:
        raise files.not_found(path)
    return found


async def deleted_at(conn: Conn, ns_id: uuid.UUID, row: FileRow) -> dt.datetime:
    """When a deleted row was deleted (the time of its head, the deletion)."""
    cur = await conn.execute(
        "SELECT created_at FROM revisions WHERE ns_id = %s AND file_id = %s AND rev_id = %s",
        (ns_id, row.file_id, row.head_rev),
    )
    got = await cur.fetchone()
    if got is None:
        raise NotFound("its deletion was pruned by retention")
    return got[0]  # type: ignore[no-any-return]


async def restore_at(
    conn: Conn,
    user_id: uuid.UUID,
    ns_id: uuid.UUID,
    top: FileRow,
    stored: str,
    at: dt.datetime,
    device_id: str,
) -> tuple[EntryRow, list[EntryRow]]:
    """Bring the file or folder ``top`` (at ``stored``) back to how it was at ``at``.

    Returns:
        (its entry now, every revision written).
    """
    await permissions.require_role(conn, user_id, ns_id, write=True, path=stored)
    edits._refuse_mount(stored, top)
    inside: list[SubtreeRow] = []
    if top.kind is Kind.FOLDER:
        inside = await edits.subtree(conn, ns_id, top.file_id, live_only=False)
        for s in inside:
            if s.row.mount_ns is not None and not s.row.deleted:
                raise FailedPrecondition(
                    f"{join_path(stored, s.rel_path)} is a shared folder: restore inside it instead"
                )
    then = await _heads_then(conn, ns_id, [top.file_id] + [s.row.file_id for s in inside], at)
    top_then = then.get(top.file_id)
    if top_then is None or top_then.deleted:
        when = at.isoformat(timespec="seconds")
        raise FailedPrecondition(f"{stored} did not exist at {when}: nothing to restore")
    written: list[EntryRow] = []
    # 1. What was not there then goes, children first.
    doomed = [
        s
        for s in inside
        if not s.row.deleted and not _wanted(then.get(s.row.file_id), top_then.path)
    ]
    for i in tree.children_first([s.rel_path for s in doomed]):
        s = doomed[i]
        path = join_path(stored, s.rel_path)
        written.append(await edits.write_delete(conn, ns_id, s.row, path, device_id, user_id))
    # 2. The top comes back (its folders too, when it was deleted with them).
    top_now, top_path = await _put_back(conn, user_id, ns_id, top, stored, top_then, device_id)
    if top_now is not None:
        written.append(top_now)
    # 3. What was there then comes back, parents first, where it was relative to the top.
    wanted: list[tuple[str, FileRow, Then]] = []
    for s in inside:
        t = then.get(s.row.file_id)
        if t is not None and _wanted(t, top_then.path):
            rel = tree.relative_to(t.path, top_then.path) if top_then.path else t.path
            wanted.append((rel, s.row, t))
    ids = {rel: row.file_id for rel, row, _ in wanted}
    for i in tree.parents_first([w[0] for w in wanted]):
        rel, row, t = wanted[i]
        parent_rel = "/".join(split_path(rel)[:-1])
        parent_id = ids.get(parent_rel) if parent_rel else top.file_id
        if parent_id is None:
            raise FailedPrecondition(f"{join_path(top_path, rel)}: its folder is gone")
        e = await _write_then(
            conn, ns_id, row, parent_id, join_path(top_path, rel), t, device_id, user_id
        )
        if e is not None:
            written.append(e)
    head = await files.stat(conn, ns_id, top_path)
    return head, written


def _wanted(t: Then | None, top_path: str) -> bool:
    """Was this row live inside the top folder at the time?"""
    if t is None or t.deleted:
        return False
    if not top_path:
        return True
    return tree.within(t.path, top_path) and not tree.same_path(t.path, top_path)


async def _put_back(
    conn: Conn,
    user_id: uuid.UUID,
    ns_id: uuid.UUID,
    top: FileRow,
    stored: str,
    t: Then,
    device_id: str,
) -> tuple[EntryRow | None, str]:
    """The top file or folder as it was: undeleted (its folders made again) and its content."""
    parts = split_path(stored)
    parent_id, parent_path = await commits.ensure_folders(conn, ns_id, parts[:-1], device_id)
    if parent_id != top.parent_id:
        raise FailedPrecondition(
            f"{stored}: the folder it was in was replaced; nothing was restored"
        )
    return await _write_then(
        conn, ns_id, top, parent_id, join_path(parent_path, top.name), t, device_id, user_id
    ), join_path(parent_path, top.name)


async def _write_then(
    conn: Conn,
    ns_id: uuid.UUID,
    row: FileRow,
    parent_id: uuid.UUID,
    path: str,
    t: Then,
    device_id: str,
    user_id: uuid.UUID,
) -> EntryRow | None:
    """One row back to revision ``t`` at ``path`` (None: it already is)."""
    name = split_path(path)[-1]
    same_place = row.parent_id == parent_id and row.name == name
    if not row.deleted and same_place and row.kind is t.kind:
        if row.head_rev == t.rev_id or t.kind is Kind.FOLDER:
            return None
        head = await files.entry(conn, ns_id, row.file_id, row.head_rev, path)
        if head.content_hash == t.content_hash and head.executable == t.executable:
            return None
    clash = await files.child(conn, ns_id, parent_id, name_key(name))
    if clash is not None and not clash.deleted and clash.file_id != row.file_id:
        raise FailedPrecondition(
            f"{path} is taken by another file now: move it away, then restore again"
        )
    chunk_list = (
        []
        if t.kind is Kind.FOLDER
        else await files.blocklist_of(conn, ns_id, row.file_id, t.rev_id)
    )
    moved = not row.deleted and not same_place
    old_path = await _path_now(conn, ns_id, row) if moved else ""
    return await files.write_change(
        conn,
        ns_id,
        row,
        parent_id=parent_id,
        name=name,
        path=path,
        kind=t.kind,
        chunk_list=chunk_list,
        op=Op.MOVE if moved else Op.UPSERT,
        device_id=device_id,
        client_mtime_ns=t.client_mtime_ns,
        old_path=old_path,
        executable=t.executable and t.kind is Kind.FILE,
        user_id=user_id,
    )


async def _path_now(conn: Conn, ns_id: uuid.UUID, row: FileRow) -> str:
    return (await path_by_id(conn, ns_id, row.file_id))[1]


async def trash(
    conn: Conn, user_id: uuid.UUID, ns_id: uuid.UUID, path: str, limit: int
) -> list[TrashRow]:
    """Deleted files and folders under ``path`` ("" the top), newest deletion first.

    Each deletion shows once at its top: a deleted folder is listed, not the files deleted
    with it (``files_inside`` counts them; list the folder's path to see them).
    """
    await permissions.require_role(conn, user_id, ns_id, write=False, path=path)
    top_id = ROOT_PARENT
    if path:
        found = await files.lookup_any(conn, ns_id, path)
        if found is None:
            raise files.not_found(path)
        if found[0].kind is not Kind.FOLDER:
            raise FailedPrecondition(f"{path} is a file, not a folder")
        top_id = found[0].file_id
    if top_id == ROOT_PARENT:
        cur = await conn.execute(f"SELECT {files.FILE_COLS} FROM files WHERE ns_id = %s", (ns_id,))
        rows = [files.file_row(r) for r in await cur.fetchall()]
    else:
        rows = [s.row for s in await edits.subtree(conn, ns_id, top_id, live_only=False)]
    by_id = {r.file_id: r for r in rows}
    shown = [
        r
        for r in rows
        if r.deleted
        and r.mount_ns is None
        and (r.parent_id == top_id or not by_id.get(r.parent_id, r).deleted)
    ]
    under: dict[uuid.UUID, int] = {}
    for r in rows:  # files deleted with each folder: walk up while the parents are deleted
        p = by_id.get(r.parent_id)
        while r.deleted and r.kind is Kind.FILE and p is not None and p.deleted:
            under[p.file_id] = under.get(p.file_id, 0) + 1
            p = by_id.get(p.parent_id)
    if not shown:
        return []
    cur = await conn.execute(
        """SELECT r.file_id, r.rev_id, r.path, r.kind, r.created_at, r.seq, r.device_id, coalesce(u.name, '')
           FROM revisions r JOIN files f ON f.ns_id = r.ns_id AND f.file_id = r.file_id AND f.head_rev = r.rev_id
           LEFT JOIN users u ON u.user_id = r.user_id
           WHERE r.ns_id = %s AND r.file_id = ANY(%s)
           ORDER BY r.created_at DESC, r.seq DESC LIMIT %s""",
        (ns_id, [r.file_id for r in shown], max(1, min(limit or MAX_TRASH, MAX_TRASH))),
    )
    out = []
    for r in await cur.fetchall():
        rel = r[2]
        e = EntryRow(ns_id, r[0], rel, Kind(r[3]), 0, r[1], files.us(r[4]), True, r[5], r[6])
        out.append(TrashRow(e, r[7], under.get(r[0], 0)))
    return out
