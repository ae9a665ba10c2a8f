"""Users, passwords (Argon2id, a slow KDF) and token revocation."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from metanode.db import Conn
from metanode.model import Role
from tessera.errors import AlreadyExists, InvalidArgument, Unauthenticated

_hasher = PasswordHasher()
MAX_NAME = 64
MIN_PASSWORD = 8


@dataclass(frozen=True)
class User:
    user_id: uuid.UUID
    name: str
    is_admin: bool
    root_ns: uuid.UUID


def check_user_name(name: str) -> str:
    """User names: 1-64 chars of letters, digits, '.', '_', '-' (they show up in shares and paths)."""
    if not name or len(name) > MAX_NAME or not all(ch.isalnum() or ch in "._-" for ch in name):
        raise InvalidArgument("user name must be 1-64 letters, digits, '.', '_' or '-'")
    return name


async def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidArgument(f"password must be at least {MIN_PASSWORD} characters")
    return await asyncio.to_thread(_hasher.hash, password)


async def create_user(conn: Conn, name: str, password_hash: str, *, is_admin: bool) -> User:
    """A user with a root namespace they own."""
    user = User(uuid.uuid4(), name, is_admin, uuid.uuid4())
    exists = await (
        await conn.execute("SELECT 1 FROM users WHERE name_key = %s", (name.casefold(),))
    ).fetchone()
    if exists:
        raise AlreadyExists(f"user {name!r} already exists")
    try:
        await conn.execute(
            "INSERT INTO users (user_id, name, name_key, password_hash, is_admin, root_ns) VALUES (%s, %s, %s, %s, %s, %s)",
            (user.user_id, name, name.casefold(), password_hash, is_admin, user.root_ns),
        )
    except psycopg.errors.UniqueViolation:
        raise AlreadyExists(f"user {name!r} already exists") from None
    await conn.execute(
        "INSERT INTO namespaces (ns_id, owner_id, kind) VALUES (%s, %s, 'root')",
        (user.root_ns, user.user_id),
    )
    await conn.execute(
        "INSERT INTO members (user_id, ns_id, role, mount_path) VALUES (%s, %s, %s, '')",
        (user.user_id, user.root_ns, Role.OWNER.name.lower()),
    )
    return user


async def fetch_user(
    conn: Conn, *, user_id: uuid.UUID | None = None, name: str | None = None
) -> tuple[User, str] | None:
    """(user, password hash) by id or name."""
    if user_id is not None:
        cur = await conn.execute(
            "SELECT user_id, name, is_admin, root_ns, password_hash FROM users WHERE user_id = %s",
            (user_id,),
        )
    else:
        cur = await conn.execute(
            "SELECT user_id, name, is_admin, root_ns, password_hash FROM users WHERE name_key = %s",
            ((name or "").casefold(),),
        )
    row = await cur.fetchone()
    return (User(row[0], row[1], row[2], row[3]), row[4]) if row else None


async def verify_password(password_hash: str, password: str) -> None:
    try:
        await asyncio.to_thread(_hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        raise Unauthenticated("wrong user name or password") from None


async def is_revoked(conn: Conn, user_id: uuid.UUID, token_id: str) -> bool:
    row = await (
        await conn.execute(
            "SELECT 1 FROM revoked_tokens WHERE user_id = %s AND token_id = %s", (user_id, token_id)
        )
    ).fetchone()
    return row is not None


async def revoke(conn: Conn, user_id: uuid.UUID, token_id: str, expires_at: int) -> None:
    await conn.execute(
        "INSERT INTO revoked_tokens (user_id, token_id, expires_at) VALUES (%s, %s, %s) ON CONFLICT (user_id, token_id) DO NOTHING",
        (user_id, token_id, dt.datetime.fromtimestamp(expires_at, dt.UTC)),
    )
