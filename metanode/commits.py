"""Commits and folders: everything that creates or changes a file's content.

``commit`` checks everything first (permission, the folders on the way, the conflict, the
receipts) and writes only after that, so a refused entry of a batch leaves nothing behind and
the batch needs no savepoint per entry. Folders on the way are created like ``mkdir -p``; a
deleted folder (or file) of the same name comes back with its id, so its history continues.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from metanode import chunks, files, permissions
from metanode.db import Conn
from metanode.files import FileRow
from metanode.model import ROOT_PARENT, CommitSpec, EntryRow, Kind, Op
from metanode.txcache import TxCache
from tessera.auth import Signer
from tessera.errors import Conflict, FailedPrecondition
from tessera.paths import join_path, name_key, path_key, split_path


def reusable(row: FileRow | None, kind: Kind) -> FileRow | None:
    """A deleted row a new entry of ``kind`` takes over (same id: its history continues), if any.

    A different kind, or a former mount point, starts a new file id instead.
    """
    if row is None or row.kind is not kind or row.mount_ns is not None:
        return None
    return row


@dataclass
class Walk:
    """How far the live folders of a path go: ``done`` segments exist, ending at ``parent_id``."""

    done: int
    parent_id: uuid.UUID
    stored: str  # the existing part, as stored (original case)


async def walk(
    conn: Conn, ns_id: uuid.UUID, parts: list[str], cache: TxCache | None = None
) -> Walk:
    """Follow the live folders of ``parts`` (read only).

    Raises:
        FailedPrecondition: If a file or a mount point is in the way.
    """
    parent, stored = ROOT_PARENT, ""
    for i, segment in enumerate(parts):
        row = await files.child(conn, ns_id, parent, name_key(segment), cache)
        if row is None or row.deleted:
            return Walk(i, parent, stored)
        stored = join_path(stored, row.name)
        if row.kind is not Kind.FOLDER:
            raise FailedPrecondition(f"{stored} is a file, not a folder")
        if row.mount_ns is not None:
            raise FailedPrecondition(f"{stored} is a shared folder: address it by its namespace")
        parent = row.file_id
    return Walk(len(parts), parent, stored)


async def create_folders(
    conn: Conn,
    ns_id: uuid.UUID,
    parts: list[str],
    w: Walk,
    device_id: str,
    cache: TxCache | None = None,
) -> tuple[uuid.UUID, str, bool]:
    """Create the folders of ``parts`` after the walked part.

    Returns:
        (the last folder's id, its stored path, whether it may hold deleted entries: it existed
        or came back from deletion, rather than being new).
    """
    parent, stored, old = w.parent_id, w.stored, True
    for segment in parts[w.done :]:
        row = await files.child(conn, ns_id, parent, name_key(segment), cache) if old else None
        row = reusable(row, Kind.FOLDER)
        stored = join_path(stored, segment)
        e = await files.write_change(
            conn, ns_id, row, parent_id=parent, name=segment, path=stored, kind=Kind.FOLDER,
            chunk_list=[], op=Op.UPSERT, device_id=device_id, cache=cache,
        )  # fmt: skip
        parent, old = e.file_id, row is not None
    return parent, stored, old


async def ensure_folders(
    conn: Conn, ns_id: uuid.UUID, parts: list[str], device_id: str, cache: TxCache | None = None
) -> tuple[uuid.UUID, str]:
    """Walk (and create, like mkdir -p) the folders of ``parts``; returns (folder id, stored path)."""
    w = await walk(conn, ns_id, parts, cache)
    parent, stored, _ = await create_folders(conn, ns_id, parts, w, device_id, cache)
    return parent, stored


async def follow_parent(
    conn: Conn, ns_id: uuid.UUID, path: str, parent_folder: uuid.UUID | None
) -> str:
    """``path``, or the same name in the folder ``parent_folder`` if that folder is live
    somewhere else now (it was moved or renamed after the device put the entry in it).

    A move and a concurrent add converge this way: the added entry lands in the moved folder.
    A deleted folder is not followed (the path recreates it: an add wins over a delete).
    """
    if parent_folder is None:
        return path
    now = await files.folder_path(conn, ns_id, parent_folder)
    parts = split_path(path)
    if now is None or path_key(now) == path_key(join_path(*parts[:-1])):
        return path
    return join_path(now, parts[-1])


async def commit(
    conn: Conn, user_id: uuid.UUID, spec: CommitSpec, signer: Signer, cache: TxCache | None = None
) -> EntryRow:
    """Commit one file version: permission, folders, conflict, receipts; then revision, head, journal."""
    await permissions.require_role(
        conn, user_id, spec.ns_id, write=True, path=spec.path, cache=cache
    )
    if spec.parent_folder is not None:
        spec = replace(
            spec, path=await follow_parent(conn, spec.ns_id, spec.path, spec.parent_folder)
        )
    parts = split_path(spec.path)
    w = await walk(conn, spec.ns_id, parts[:-1], cache)
    name = parts[-1]
    existing = None
    if w.done == len(parts) - 1:  # the folder exists: the file may too
        existing = await files.child(conn, spec.ns_id, w.parent_id, name_key(name), cache)
        if existing is not None and not existing.deleted:
            if existing.kind is Kind.FOLDER:
                raise FailedPrecondition(f"{spec.path} is a folder")
            if spec.parent_rev != existing.head_rev:
                raise Conflict(
                    f"{spec.path} changed since revision {spec.parent_rev or 'none'}: head is {existing.head_rev}",
                    str(existing.head_rev),
                )
    await chunks.claim(conn, user_id, spec, signer, cache)
    # Nothing was written before this point.
    parent_id, parent_path, old = await create_folders(
        conn, spec.ns_id, parts[:-1], w, spec.device_id, cache
    )
    if (
        existing is None and old and w.done < len(parts) - 1
    ):  # a folder that came back: its deleted file may too
        existing = await files.child(conn, spec.ns_id, parent_id, name_key(name), cache)
    if existing is not None and not existing.deleted:
        name = existing.name  # case-preserving: the name keeps the case it was created with
    else:
        # An edit against a deleted file wins: it resurrects the file (same id, history continues).
        existing = reusable(existing, Kind.FILE)
    return await files.write_change(
        conn, spec.ns_id, existing, parent_id=parent_id, name=name, path=join_path(parent_path, name),
        kind=Kind.FILE, chunk_list=spec.chunks, op=Op.UPSERT, device_id=spec.device_id,
        client_mtime_ns=spec.client_mtime_ns, executable=spec.executable, cache=cache,
    )  # fmt: skip


async def make_folder(
    conn: Conn,
    user_id: uuid.UUID,
    ns_id: uuid.UUID,
    path: str,
    device_id: str,
    parent_folder: uuid.UUID | None = None,
) -> EntryRow:
    """mkdir -p; an existing folder is returned as it is (``parent_folder``: see follow_parent)."""
    await permissions.require_role(conn, user_id, ns_id, write=True, path=path)
    path = await follow_parent(conn, ns_id, path, parent_folder)
    parts = split_path(path)
    w = await walk(conn, ns_id, parts)
    if w.done == len(parts):
        found = await files.lookup(conn, ns_id, w.stored)
        if found is None:
            raise files.not_found(path)
        return await files.entry(conn, ns_id, found[0].file_id, found[0].head_rev, w.stored)
    folder_id, stored, _ = await create_folders(conn, ns_id, parts, w, device_id)
    found = await files.lookup(conn, ns_id, stored)
    assert found is not None
    return await files.entry(conn, ns_id, folder_id, found[0].head_rev, stored)
