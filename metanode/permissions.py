"""Who may do what in a namespace: a member's role, checked inside the caller's transaction.

A non-member learns nothing: the NOT_FOUND it gets is the one a missing path gets.
"""

from __future__ import annotations

import uuid

from metanode.db import Conn
from metanode.model import Role
from metanode.txcache import TxCache
from tessera.errors import NotFound, PermissionDenied


def not_found(path: str) -> NotFound:
    """The one NOT_FOUND for a missing path and for a namespace the caller is not in."""
    return NotFound(f"{path or 'that folder'}: no such file or folder")


async def role_of(
    conn: Conn, user_id: uuid.UUID, ns_id: uuid.UUID, cache: TxCache | None = None
) -> Role | None:
    """The caller's role in a namespace, None for a non-member."""
    if cache is not None and (user_id, ns_id) in cache.roles:
        return cache.roles[(user_id, ns_id)]
    cur = await conn.execute(
        "SELECT role FROM members WHERE user_id = %s AND ns_id = %s", (user_id, ns_id)
    )
    row = await cur.fetchone()
    if row is None:  # a shared file's member, for this one call (never cached)
        from metanode.fileshares import granted_role

        return granted_role(user_id, ns_id)
    role = Role[row[0].upper()]
    if cache is not None:
        cache.roles[(user_id, ns_id)] = role
    return role


async def require_role(
    conn: Conn,
    user_id: uuid.UUID,
    ns_id: uuid.UUID,
    *,
    write: bool,
    path: str = "",
    cache: TxCache | None = None,
) -> Role:
    """The caller's role; a non-member learns nothing (the same NOT_FOUND as a missing path)."""
    role = await role_of(conn, user_id, ns_id, cache)
    if role is None:
        raise not_found(path)
    if write and role is Role.VIEWER:
        raise PermissionDenied("you have view-only access to this shared folder")
    return role
