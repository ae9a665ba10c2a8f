"""Shared files: one file of its owner's tree shared with users as viewer or editor.

A shared folder becomes a namespace mounted into each member's tree (``metanode.sharing``).
A single file cannot be mounted that way: the owner's devices sync it as a file in place, and a
mount point is a folder. So a shared file stays where it is, and each member gets a *grant*
(``file_shares``: the file, the member, the role) under a share id, as Dropbox shares a file: it
shows in the member's "shared with me" list (``ListSharedFiles``, the web's Shared page), not in
their synced tree.

A member reaches the file through every ordinary call by passing the share id as the namespace
id (path "" or the file's name): ``resolve`` maps it to the owner's namespace and the file's
path now (it follows renames; a deleted file is NOT_FOUND), and grants the member's role for
that one call (``granted_role``), so ``require_role`` applies the same rules as in a shared
folder: a viewer reads (stat, download, history), an editor also commits new versions,
restores and deletes. The grant covers the path the share resolved to and nothing else: the
next ``resolve`` of the call (any other path or namespace) drops it, and it is never cached.
Only the owner adds members or changes roles; the owner removes anyone, a member may leave.
"""

from __future__ import annotations

import contextvars
import uuid
from dataclasses import dataclass

from metanode import files, timetravel
from metanode.db import Conn
from metanode.files import FileRow
from metanode.model import Kind, Role
from tessera.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from tessera.paths import name_key

# (user, namespace) the current call was granted through a file share, and the role.
_grant: contextvars.ContextVar[tuple[uuid.UUID, uuid.UUID, Role] | None] = contextvars.ContextVar(
    "tessera_file_grant", default=None
)


@dataclass(frozen=True)
class SharedFile:
    """A file share as one user sees it."""

    share_id: uuid.UUID
    name: str
    path: str  # the owner's path (only shown to the owner)
    owner: str
    role: Role
    size: int
    modified_us: int
    members: tuple[tuple[str, Role], ...]


def granted_role(user_id: uuid.UUID, ns_id: uuid.UUID) -> Role | None:
    """The role the current call holds in ``ns_id`` through a file share, if any."""
    g = _grant.get()
    return g[2] if g is not None and g[0] == user_id and g[1] == ns_id else None


def drop_grant() -> None:
    _grant.set(None)


async def resolve(
    conn: Conn, user_id: uuid.UUID, share_id: uuid.UUID, path: str
) -> tuple[uuid.UUID, str, uuid.UUID] | None:
    """(owner namespace, the file's path now, share id) when ``share_id`` is a file share of
    this user's, and grant its role for this call; None when it is not one."""
    cur = await conn.execute(
        "SELECT ns_id, file_id, role FROM file_shares WHERE share_id = %s AND user_id = %s",
        (share_id, user_id),
    )
    got = await cur.fetchone()
    if got is None:
        return None
    ns_id, file_id, role = got[0], got[1], Role[got[2].upper()]
    try:
        row, stored = await timetravel.path_by_id(conn, ns_id, file_id)
    except NotFound:
        row = None
    if row is None or row.deleted:
        raise files.not_found(path or "the shared file")
    if path and name_key(path) != name_key(row.name):
        raise files.not_found(path)
    _grant.set((user_id, ns_id, role))
    return ns_id, stored, share_id


async def _share_id(conn: Conn, ns_id: uuid.UUID, file_id: uuid.UUID) -> uuid.UUID:
    cur = await conn.execute(
        "SELECT share_id FROM file_shares WHERE ns_id = %s AND file_id = %s LIMIT 1",
        (ns_id, file_id),
    )
    got = await cur.fetchone()
    return got[0] if got else uuid.uuid4()  # type: ignore[no-any-return]


async def share_file(
    conn: Conn, owner: uuid.UUID, ns_id: uuid.UUID, row: FileRow, member: uuid.UUID, role: Role
) -> uuid.UUID:
    """Grant ``member`` the file (again: change the role); returns the share id."""
    if row.kind is not Kind.FILE:
        raise FailedPrecondition(f"{row.name} is a folder")
    if member == owner:
        raise InvalidArgument("you cannot share a file with yourself")
    share_id = await _share_id(conn, ns_id, row.file_id)
    await conn.execute(
        """INSERT INTO file_shares (ns_id, file_id, user_id, share_id, role) VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (ns_id, file_id, user_id) DO UPDATE SET role = excluded.role""",
        (ns_id, row.file_id, member, share_id, role.name.lower()),
    )
    return share_id


async def unshare_file(
    conn: Conn,
    caller: uuid.UUID,
    ns_id: uuid.UUID,
    file_id: uuid.UUID,
    member: uuid.UUID,
    name: str,
    *,
    owner: bool,
) -> None:
    """Remove a member's grant: the owner removes anyone, a member only themselves."""
    if not owner and member != caller:
        raise PermissionDenied("only the owner of a shared file can remove other members")
    res = await conn.execute(
        "DELETE FROM file_shares WHERE ns_id = %s AND file_id = %s AND user_id = %s",
        (ns_id, file_id, member),
    )
    if res.rowcount == 0:
        raise NotFound(f"{name} is not a member of this shared file")


async def share_of(
    conn: Conn, user_id: uuid.UUID, share_id: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(namespace, file id) of a file share the user is a member of."""
    cur = await conn.execute(
        "SELECT ns_id, file_id FROM file_shares WHERE share_id = %s AND user_id = %s",
        (share_id, user_id),
    )
    got = await cur.fetchone()
    return (got[0], got[1]) if got else None


async def members_of(conn: Conn, ns_id: uuid.UUID, file_id: uuid.UUID) -> list[tuple[str, Role]]:
    cur = await conn.execute(
        """SELECT u.name, s.role FROM file_shares s JOIN users u ON u.user_id = s.user_id
           WHERE s.ns_id = %s AND s.file_id = %s ORDER BY u.name_key""",
        (ns_id, file_id),
    )
    return [(r[0], Role[r[1].upper()]) for r in await cur.fetchall()]


async def list_shared(conn: Conn, user_id: uuid.UUID) -> list[SharedFile]:
    """Files shared with the user, and files the user shared (role OWNER), live ones only."""
    cur = await conn.execute(
        """SELECT s.share_id, s.ns_id, s.file_id, s.role, o.name, o.user_id
           FROM file_shares s JOIN namespaces n ON n.ns_id = s.ns_id JOIN users o ON o.user_id = n.owner_id
           WHERE s.user_id = %s
           UNION ALL
           SELECT DISTINCT s.share_id, s.ns_id, s.file_id, 'owner', o.name, o.user_id
           FROM file_shares s JOIN namespaces n ON n.ns_id = s.ns_id JOIN users o ON o.user_id = n.owner_id
           WHERE n.owner_id = %s""",
        (user_id, user_id),
    )
    out = []
    for share_id, ns_id, file_id, role, owner, owner_id in await cur.fetchall():
        try:
            row, path = await timetravel.path_by_id(conn, ns_id, file_id)
        except NotFound:
            continue
        if row.deleted:
            continue
        head = await files.entry(conn, ns_id, file_id, row.head_rev, path)
        mine = owner_id == user_id
        members = tuple(await members_of(conn, ns_id, file_id)) if mine else ()
        out.append(
            SharedFile(
                share_id,
                row.name,
                path if mine else row.name,
                owner,
                Role[role.upper()],
                head.size,
                head.modified_at_us,
                members,
            )  # fmt: skip
        )
    return sorted(out, key=lambda s: (s.role is not Role.OWNER, s.name.casefold()))
