"""Shared folders (Dropbox's model): a shared folder is a namespace of its own.

Sharing a folder of the owner's root namespace converts it in one transaction: a new
namespace gets the folder's subtree (its rows move, with their file ids; their revisions are
copied so history follows them; its journal starts with one record per live entry, parents
first, so a device syncing it from seq 0 rebuilds the tree), and the folder's row stays in the
owner's root as a *mount point* (``files.mount_ns``). Every member has a mount point in their
own root (a name clash there gets a `` (2)`` suffix) and a ``members`` row with its path
(``mount_path``), which ``ListNamespaces`` reports and which moves with the mount point.

Paths of a user's root namespace that fall inside a mount resolve into the shared namespace
(``resolve``), so ``tessera put x Shared/x`` just works; calls that name a namespace id act
on that namespace directly. A move between namespaces is refused (copy, then delete).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from metanode import blocklists, chunks, edits, files, fileshares, permissions, tree
from metanode.db import Conn
from metanode.model import ROOT_PARENT, ChunkRef, Kind, MemberRow, NamespaceRow, Op, Role
from metanode.txcache import TxCache
from tessera.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from tessera.paths import join_path, split_path

Notice = tuple[uuid.UUID, int]  # (namespace, seq) to tell the sync nodes about


@dataclass(frozen=True)
class Target:
    """Where a (namespace_id, path) of a request lands."""

    ns_id: uuid.UUID
    path: str
    root: uuid.UUID
    mounts: tuple[tree.Mount, ...]
    share_id: uuid.UUID | None = None  # reached through a file share (metanode.fileshares)

    @property
    def in_root(self) -> bool:
        """True when the target is the caller's own root namespace."""
        return self.ns_id == self.root


async def resolve(
    conn: Conn,
    user_id: uuid.UUID,
    ns_id: uuid.UUID | None,
    path: str,
    *,
    into_mount: bool,
    cache: TxCache | None = None,
) -> Target:
    """Map a request's namespace and path to the namespace that holds the path.

    With no namespace (or the caller's root), a path inside a mounted shared folder resolves
    into that folder's namespace (``tree.resolve``). A namespace id that is a file share of
    the caller's resolves to the shared file in its owner's namespace (``fileshares``).
    """
    fileshares.drop_grant()
    known = cache.resolved.get("mounts") if cache is not None else None
    if known is None:
        cur = await conn.execute(
            """SELECT u.root_ns, m.ns_id, m.mount_path FROM users u
               LEFT JOIN members m ON m.user_id = u.user_id AND m.mount_path <> ''
               WHERE u.user_id = %s""",
            (user_id,),
        )
        rows = await cur.fetchall()
        if not rows:
            raise Unauthenticated("unknown user: log in again")
        known = (rows[0][0], tuple(tree.Mount(r[1], r[2]) for r in rows if r[1] is not None))
        if cache is not None:
            cache.resolved["mounts"] = known
            cache.roles[(user_id, known[0])] = Role.OWNER  # everyone owns their root namespace
    root, mounts = known
    if ns_id is not None and ns_id != root:
        shared = await fileshares.resolve(conn, user_id, ns_id, path)
        if shared is not None:
            return Target(shared[0], shared[1], root, mounts, shared[2])
        return Target(ns_id, path, root, mounts)
    ns, rest = tree.resolve(mounts, root, path, into_mount=into_mount)
    return Target(ns, rest, root, mounts)  # type: ignore[arg-type]


async def list_namespaces(conn: Conn, user_id: uuid.UUID) -> list[NamespaceRow]:
    """Every namespace the user sees: the root (mount path "") and each shared folder."""
    cur = await conn.execute(
        """SELECT m.ns_id, m.mount_path, m.role, n.head_seq, n.oldest_seq
           FROM members m JOIN namespaces n ON n.ns_id = m.ns_id
           WHERE m.user_id = %s ORDER BY m.mount_path""",
        (user_id,),
    )
    return [NamespaceRow(r[0], r[1], Role[r[2].upper()], r[3], r[4]) for r in await cur.fetchall()]


async def list_members(
    conn: Conn, user_id: uuid.UUID, ns_id: uuid.UUID, path: str
) -> list[MemberRow]:
    """The members of the namespace holding ``path`` (owner first)."""
    await permissions.require_role(conn, user_id, ns_id, write=False, path=path)
    cur = await conn.execute(
        """SELECT m.user_id, u.name, m.role FROM members m JOIN users u ON u.user_id = m.user_id
           WHERE m.ns_id = %s""",
        (ns_id,),
    )
    rows = [MemberRow(r[0], r[1], Role[r[2].upper()], ns_id) for r in await cur.fetchall()]
    return sorted(rows, key=lambda m: (int(m.role), m.name.casefold()))


async def rebase_mounts(
    conn: Conn, user_id: uuid.UUID, mounts: tuple[tree.Mount, ...], old: str, new: str
) -> None:
    """After a move in the user's root, keep the mount paths of what moved in step."""
    for m in mounts:
        if tree.within(m.path, old):
            await conn.execute(
                "UPDATE members SET mount_path = %s WHERE user_id = %s AND ns_id = %s",
                (tree.rebase(m.path, old, new), user_id, m.ns_id),
            )


async def _user_by_name(conn: Conn, name: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    cur = await conn.execute(
        "SELECT user_id, root_ns, name FROM users WHERE name_key = %s", (name.casefold(),)
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no user named {name!r}")
    return row[0], row[1], row[2]


async def share(
    conn: Conn, user_id: uuid.UUID, target: Target, user_name: str, role: Role, device_id: str
) -> tuple[uuid.UUID, list[Notice]]:
    """Share the folder at ``target`` with ``user_name`` (again: change their role).

    Returns:
        (the shared namespace id, journal heads to notify).
    """
    if role not in (Role.EDITOR, Role.VIEWER):
        raise InvalidArgument("share as editor or viewer")
    notices: list[Notice] = []
    if target.in_root:
        found = await files.lookup(conn, target.ns_id, target.path) if target.path else None
        if found is None:
            raise files.not_found(target.path)
        row, stored = found
        if row.kind is Kind.FILE:
            member_id, _, _ = await _user_by_name(conn, user_name)
            share_id = await fileshares.share_file(
                conn, user_id, target.ns_id, row, member_id, role
            )
            return share_id, []
        ns_id, notices = await _convert(conn, user_id, target.root, row, stored, device_id)
        folder_name = row.name
    else:
        caller = await permissions.require_role(
            conn, user_id, target.ns_id, write=False, path=target.path
        )
        if target.path:
            raise FailedPrecondition("a folder inside a shared folder cannot be shared on its own")
        if caller is not Role.OWNER:
            raise PermissionDenied("only the owner of a shared folder can add members")
        ns_id = target.ns_id
        folder_name = await _folder_name(conn, ns_id)
    member_id, member_root, _ = await _user_by_name(conn, user_name)
    if member_id == user_id:
        raise InvalidArgument("you cannot share a folder with yourself")
    current = await permissions.role_of(conn, member_id, ns_id)
    if current is Role.OWNER:
        raise FailedPrecondition(f"{user_name} owns this shared folder")
    if current is not None:
        await conn.execute(
            "UPDATE members SET role = %s WHERE user_id = %s AND ns_id = %s",
            (role.name.lower(), member_id, ns_id),
        )
    else:
        notices.append(
            await _mount(conn, member_id, member_root, ns_id, folder_name, role, device_id)
        )
    return ns_id, notices


async def _folder_name(conn: Conn, ns_id: uuid.UUID) -> str:
    """The shared folder's name in its owner's tree."""
    cur = await conn.execute(
        "SELECT mount_path FROM members WHERE ns_id = %s AND role = 'owner'", (ns_id,)
    )
    row = await cur.fetchone()
    return split_path(row[0])[-1] if row and row[0] else "Shared"


async def _mount(
    conn: Conn,
    user_id: uuid.UUID,
    root: uuid.UUID,
    ns_id: uuid.UUID,
    name: str,
    role: Role,
    device_id: str,
) -> Notice:
    """A member's mount point at the top of their root, under a name free there."""
    cur = await conn.execute(
        "SELECT name FROM files WHERE ns_id = %s AND parent_id = %s AND NOT deleted",
        (root, ROOT_PARENT),
    )
    free = tree.unique_name(name, [r[0] for r in await cur.fetchall()])
    e = await files.write_change(
        conn,
        root,
        None,
        parent_id=ROOT_PARENT,
        name=free,
        path=free,
        kind=Kind.FOLDER,
        chunk_list=[],
        op=Op.UPSERT,
        device_id=device_id,
        mount_ns=ns_id,
    )
    await conn.execute(
        "INSERT INTO members (user_id, ns_id, role, mount_path) VALUES (%s, %s, %s, %s)",
        (user_id, ns_id, role.name.lower(), free),
    )
    return root, e.seq


async def _convert(
    conn: Conn,
    user_id: uuid.UUID,
    root: uuid.UUID,
    folder: files.FileRow,
    folder_path: str,
    device_id: str,
) -> tuple[uuid.UUID, list[Notice]]:
    """Turn a folder of the owner's root into a shared namespace mounted where it was."""
    inside = await edits.subtree(conn, root, folder.file_id, live_only=False)
    for s in inside:
        if s.row.mount_ns is not None:
            raise FailedPrecondition(
                f"{folder_path} contains the shared folder {join_path(folder_path, s.rel_path)}"
            )
    ns_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO namespaces (ns_id, owner_id, kind) VALUES (%s, %s, 'shared')", (ns_id, user_id)
    )
    ids = [s.row.file_id for s in inside]
    if ids:
        await conn.execute(
            "UPDATE files SET ns_id = %s WHERE ns_id = %s AND file_id = ANY(%s)", (ns_id, root, ids)
        )
        await conn.execute(
            "UPDATE files SET parent_id = %s WHERE ns_id = %s AND parent_id = %s",
            (ROOT_PARENT, ns_id, folder.file_id),
        )
        await _copy_revisions(conn, root, ns_id, ids, folder_path)
        # Deleted rows predate everything in the new journal: seq 0 (then newest change first).
        await conn.execute("UPDATE files SET seq = 0 WHERE ns_id = %s AND deleted", (ns_id,))
    # The new namespace's journal: one record per live entry, parents first.
    live = [s for s in inside if not s.row.deleted]
    if live:
        records = [
            (ns_id, seq, int(Op.UPSERT), int(s.row.kind), s.row.file_id, s.row.head_rev, s.rel_path)
            for seq, s in enumerate(live, start=1)
        ]
        async with conn.cursor() as c:
            await c.executemany(
                "INSERT INTO journal (ns_id, seq, op, kind, file_id, rev_id, path) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                records,
            )
            await c.executemany(
                "UPDATE revisions SET seq = %s WHERE ns_id = %s AND file_id = %s AND rev_id = %s",
                [(r[1], ns_id, r[4], r[5]) for r in records],
            )
            await c.executemany(
                "UPDATE files SET seq = %s WHERE ns_id = %s AND file_id = %s",
                [(r[1], ns_id, r[4]) for r in records],
            )
        await conn.execute(
            "UPDATE namespaces SET head_seq = %s WHERE ns_id = %s", (len(live), ns_id)
        )
    await conn.execute(
        "UPDATE files SET mount_ns = %s WHERE ns_id = %s AND file_id = %s",
        (ns_id, root, folder.file_id),
    )
    parent_path = "/".join(split_path(folder_path)[:-1])
    mounted = await files.write_change(
        conn,
        root,
        folder,
        parent_id=folder.parent_id,
        name=folder.name,
        path=join_path(parent_path, folder.name),
        kind=Kind.FOLDER,
        chunk_list=[],
        op=Op.UPSERT,
        device_id=device_id,
    )
    await conn.execute(
        "INSERT INTO members (user_id, ns_id, role, mount_path) VALUES (%s, %s, 'owner', %s)",
        (user_id, ns_id, folder_path),
    )
    return ns_id, [(root, mounted.seq), (ns_id, len(live))]


async def _copy_revisions(
    conn: Conn, src: uuid.UUID, dst: uuid.UUID, ids: list[uuid.UUID], top: str
) -> None:
    """Copy the revisions of moved files into the shared namespace (paths made relative to it).

    The originals stay for the owner's root journal and go with retention like any revision
    no file points at any more.
    """
    cur = await conn.execute(
        """SELECT file_id, rev_id, parent_rev, seq, n, kind, size, deleted, path, blocklist, content_hash,
                  device_id, client_mtime_ns, created_at, executable
           FROM revisions WHERE ns_id = %s AND file_id = ANY(%s)""",
        (src, ids),
    )
    rows = await cur.fetchall()
    copies = []
    refs: list[tuple[uuid.UUID, uuid.UUID, list[ChunkRef]]] = []
    for r in rows:
        path = tree.relative_to(r[8], top) if r[8] and tree.within(r[8], top) else r[8]
        copies.append(
            (
                dst,
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                path,
                r[9],
                r[10],
                r[11],
                r[12],
                r[13],
                r[14],
            )
        )
        if not r[7] and r[9]:
            refs.append((r[0], r[1], blocklists.decode(bytes(r[9]))))
    async with conn.cursor() as c:
        await c.executemany(
            """INSERT INTO revisions (ns_id, file_id, rev_id, parent_rev, seq, n, kind, size, deleted, path, blocklist,
                                      content_hash, device_id, client_mtime_ns, created_at, executable)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            copies,
        )
    for file_id, rev_id, chunk_list in refs:
        await chunks.add_refs(conn, dst, file_id, rev_id, chunk_list)


async def unshare(
    conn: Conn, user_id: uuid.UUID, target: Target, user_name: str, device_id: str
) -> list[Notice]:
    """Remove a member (the owner removes anyone; a member may remove themselves: leave).

    The member's mount point is deleted from their root (a journal record there), and from
    this transaction on every call of theirs on the namespace is NOT_FOUND.
    """
    if target.share_id is not None or target.in_root:
        found = await files.lookup(conn, target.ns_id, target.path) if target.path else None
        if found is None or found[0].kind is not Kind.FILE:
            raise FailedPrecondition(f"{target.path or 'your root folder'} is not a shared folder")
        member_id, _, name = await _user_by_name(conn, user_name)
        await fileshares.unshare_file(
            conn, user_id, target.ns_id, found[0].file_id, member_id, name,
            owner=target.share_id is None,
        )  # fmt: skip
        return []
    caller = await permissions.require_role(
        conn, user_id, target.ns_id, write=False, path=target.path
    )
    if target.path:
        raise FailedPrecondition(f"{target.path} is inside a shared folder, not one itself")
    member_id, member_root, name = await _user_by_name(conn, user_name)
    if member_id != user_id and caller is not Role.OWNER:
        raise PermissionDenied("only the owner of a shared folder can remove other members")
    role = await permissions.role_of(conn, member_id, target.ns_id)
    if role is None:
        raise NotFound(f"{name} is not a member of this shared folder")
    if role is Role.OWNER:
        raise FailedPrecondition("the owner cannot leave their own shared folder")
    await conn.execute(
        "DELETE FROM members WHERE user_id = %s AND ns_id = %s", (member_id, target.ns_id)
    )
    cur = await conn.execute(
        f"SELECT {files.FILE_COLS} FROM files WHERE ns_id = %s AND mount_ns = %s AND NOT deleted",
        (member_root, target.ns_id),
    )
    notices: list[Notice] = []
    for raw in await cur.fetchall():
        row = files.file_row(raw)
        path = await files.path_of(conn, member_root, row)
        e = await edits.write_delete(conn, member_root, row, path, device_id)
        notices.append((member_root, e.seq))
    return notices
