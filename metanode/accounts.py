"""Devices, token checks, password changes and user deletion: the SQL behind account RPCs.

A device is one login: its token's id is the device id (``devices.device_id``). A token is
valid while its user exists, its id is not in ``revoked_tokens`` and its generation is not
older than ``users.token_gen`` (a password change bumps it). ``check_token`` runs inside the
transaction of every metanode call, so the database agrees with the revocation feed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from metanode import edits, sharing, tree, users
from metanode.db import Conn
from metanode.model import ROOT_PARENT
from metanode.sharing import Notice, Target
from tessera.auth import Principal
from tessera.errors import FailedPrecondition, InvalidArgument, NotFound

MAX_DEVICE_NAME = 64
DEFAULT_DEVICE_NAME = "device"
TOUCH_EVERY = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    name: str
    created_at: dt.datetime
    last_seen: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class UserRow:
    user_id: uuid.UUID
    name: str
    is_admin: bool
    created_at: dt.datetime
    devices: int


def check_device_name(name: str) -> str:
    """A device name: printable, at most 64 characters; "" means ``DEFAULT_DEVICE_NAME``."""
    name = name.strip()
    if not name:
        return DEFAULT_DEVICE_NAME
    if len(name) > MAX_DEVICE_NAME or not name.isprintable():
        raise InvalidArgument(f"device name must be 1-{MAX_DEVICE_NAME} printable characters")
    return name


async def generation(conn: Conn, user_id: uuid.UUID) -> int:
    """The generation new tokens of the user carry."""
    row = await (
        await conn.execute("SELECT token_gen FROM users WHERE user_id = %s", (user_id,))
    ).fetchone()
    return int(row[0]) if row else 0


async def add_device(
    conn: Conn, user_id: uuid.UUID, device_id: str, name: str, expires_at: int
) -> str:
    """Record a login; returns its name, suffixed ``-2``, ``-3`` ... if a live device has it."""
    cur = await conn.execute(
        "SELECT name_key FROM devices WHERE user_id = %s AND revoked_at IS NULL AND expires_at > now()",
        (user_id,),
    )
    taken = {r[0] for r in await cur.fetchall()}
    stored, n = name, 1
    while stored.casefold() in taken:
        n += 1
        stored = f"{name}-{n}"
    await conn.execute(
        """INSERT INTO devices (user_id, device_id, name, name_key, expires_at)
           VALUES (%s, %s, %s, %s, %s)""",
        (
            user_id,
            device_id,
            stored,
            stored.casefold(),
            dt.datetime.fromtimestamp(expires_at, dt.UTC),
        ),
    )
    return stored


async def check_token(conn: Conn, principal: Principal) -> str:
    """Why the user's token is no longer valid ("" if it is); touches the device's last seen."""
    row = await (
        await conn.execute(
            """SELECT u.token_gen,
                      EXISTS (SELECT 1 FROM revoked_tokens r
                              WHERE r.user_id = u.user_id AND r.token_id = %s),
                      (SELECT d.last_seen FROM devices d
                       WHERE d.user_id = u.user_id AND d.device_id = %s)
               FROM users u WHERE u.user_id = %s""",
            (principal.token_id, principal.token_id, uuid.UUID(principal.user_id)),
        )
    ).fetchone()
    if row is None:
        return "this user was deleted"
    if row[1]:
        return "this device was logged out or revoked"
    if principal.generation < row[0]:
        return "the password was changed"
    if row[2] is not None and row[2] < dt.datetime.now(dt.UTC) - TOUCH_EVERY:
        await conn.execute(
            "UPDATE devices SET last_seen = now() WHERE user_id = %s AND device_id = %s",
            (uuid.UUID(principal.user_id), principal.token_id),
        )
    return ""


async def list_devices(conn: Conn, user_id: uuid.UUID) -> list[DeviceRow]:
    """The user's live devices (not revoked, not expired), oldest first."""
    cur = await conn.execute(
        """SELECT device_id, name, created_at, last_seen, expires_at FROM devices
           WHERE user_id = %s AND revoked_at IS NULL AND expires_at > now()
           ORDER BY created_at, name""",
        (user_id,),
    )
    return [DeviceRow(*r) for r in await cur.fetchall()]


async def find_device(
    conn: Conn, user_id: uuid.UUID, *, name: str = "", device_id: str = ""
) -> DeviceRow:
    """A live device of the user by name (case-insensitive) or id; NOT_FOUND otherwise."""
    for d in await list_devices(conn, user_id):
        if (device_id and d.device_id == device_id) or (
            name and d.name.casefold() == name.casefold()
        ):
            return d
    raise NotFound(f"you have no device named {name or device_id!r} (see: tessera devices)")


async def revoke_device(conn: Conn, user_id: uuid.UUID, device_id: str, expires_at: int) -> None:
    """The device's token is revoked for good; the device leaves the list."""
    await users.revoke(conn, user_id, device_id, expires_at)
    await conn.execute(
        "UPDATE devices SET revoked_at = now() WHERE user_id = %s AND device_id = %s AND revoked_at IS NULL",
        (user_id, device_id),
    )


async def set_password(
    conn: Conn,
    user_id: uuid.UUID,
    password_hash: str,
    new_generation: int,
    device_id: str,
    expires_at: int,
) -> None:
    """New password and generation; the calling device's token is re-issued with ``expires_at``."""
    await conn.execute(
        "UPDATE users SET password_hash = %s, token_gen = greatest(token_gen, %s) WHERE user_id = %s",
        (password_hash, new_generation, user_id),
    )
    await conn.execute(
        "UPDATE devices SET expires_at = %s WHERE user_id = %s AND device_id = %s",
        (dt.datetime.fromtimestamp(expires_at, dt.UTC), user_id, device_id),
    )
    # Other devices' tokens are dead (older generation): they leave the list.
    await conn.execute(
        "UPDATE devices SET revoked_at = now() WHERE user_id = %s AND device_id <> %s AND revoked_at IS NULL",
        (user_id, device_id),
    )


async def list_users(conn: Conn) -> list[UserRow]:
    """Every user, by name, with the number of live devices."""
    cur = await conn.execute(
        """SELECT u.user_id, u.name, u.is_admin, u.created_at,
                  (SELECT count(*) FROM devices d WHERE d.user_id = u.user_id
                   AND d.revoked_at IS NULL AND d.expires_at > now())
           FROM users u ORDER BY u.name_key"""
    )
    return [UserRow(r[0], r[1], r[2], r[3], int(r[4])) for r in await cur.fetchall()]


@dataclass(frozen=True)
class Deleted:
    """What deleting a user did."""

    user_id: uuid.UUID
    files_deleted: int
    shares_ended: int
    notices: list[Notice]


async def user_to_delete(conn: Conn, caller: uuid.UUID, name: str) -> uuid.UUID:
    """The id of the user named ``name``, unless it is the caller."""
    found = await users.fetch_user(conn, name=name)
    if found is None:
        raise NotFound(f"no user named {name!r}")
    if found[0].user_id == caller:
        raise FailedPrecondition("you cannot delete your own account (ask another admin)")
    return found[0].user_id


async def delete_user(conn: Conn, user_id: uuid.UUID, device_id: str) -> Deleted:
    """Delete a user: their shares end (both ways), every live entry of the namespaces they own
    gets a delete revision (so revisions and chunks go by the retention rules), their devices
    are revoked and the user row goes (the name is free again)."""
    found = await users.fetch_user(conn, user_id=user_id)
    if found is None:
        raise NotFound("no such user")
    user = found[0]
    notices: list[Notice] = []
    ended = 0
    owned = [
        r[0]
        for r in await (
            await conn.execute("SELECT ns_id FROM namespaces WHERE owner_id = %s", (user_id,))
        ).fetchall()
    ]
    for ns in owned:
        if ns == user.root_ns:
            continue
        cur = await conn.execute(
            """SELECT u.name FROM members m JOIN users u ON u.user_id = m.user_id
               WHERE m.ns_id = %s AND m.user_id <> %s""",
            (ns, user_id),
        )
        for (member,) in await cur.fetchall():
            notices += await sharing.unshare(
                conn, user_id, Target(ns, "", user.root_ns, ()), member, device_id
            )
            ended += 1
    cur = await conn.execute(
        "DELETE FROM members WHERE user_id = %s AND NOT (ns_id = ANY(%s)) RETURNING ns_id",
        (user_id, owned),
    )
    for (ns,) in await cur.fetchall():
        notices.append((ns, 0))
        ended += 1
    deleted = 0
    for ns in owned:
        inside = await edits.subtree(conn, ns, ROOT_PARENT, live_only=True)
        for i in tree.children_first([s.rel_path for s in inside]):
            e = await edits.write_delete(conn, ns, inside[i].row, inside[i].rel_path, device_id)
            notices.append((ns, e.seq))
            deleted += 1
    await conn.execute("DELETE FROM members WHERE user_id = %s", (user_id,))
    await conn.execute(
        "UPDATE devices SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
        (user_id,),
    )
    await conn.execute("DELETE FROM users WHERE user_id = %s", (user_id,))
    return Deleted(user_id, deleted, ended, notices)
