"""Versioned schema migrations, applied at start (or by ``metanode --migrate-only``).

SQL stays in the subset PostgreSQL and CockroachDB both speak: UUID keys (never sequences),
no LISTEN/NOTIFY, no PL/pgSQL. Every key begins with the namespace or user id so one user's
tree is contiguous and CockroachDB spreads users across ranges.
"""

from __future__ import annotations

import logging

from metanode.db import Conn, Database

log = logging.getLogger(__name__)

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "users, namespaces, files, revisions, journal, chunk ownership, idempotency",
        [
            """CREATE TABLE IF NOT EXISTS users (
                user_id UUID PRIMARY KEY,
                name TEXT NOT NULL,
                name_key TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                is_admin BOOL NOT NULL DEFAULT false,
                root_ns UUID NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )""",
            "CREATE UNIQUE INDEX IF NOT EXISTS users_by_name ON users (name_key)",
            """CREATE TABLE IF NOT EXISTS revoked_tokens (
                user_id UUID NOT NULL,
                token_id TEXT NOT NULL,
                expires_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (user_id, token_id)
            )""",
            """CREATE TABLE IF NOT EXISTS namespaces (
                ns_id UUID PRIMARY KEY,
                owner_id UUID NOT NULL,
                kind TEXT NOT NULL,
                head_seq INT8 NOT NULL DEFAULT 0,
                oldest_seq INT8 NOT NULL DEFAULT 1,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )""",
            """CREATE TABLE IF NOT EXISTS members (
                user_id UUID NOT NULL,
                ns_id UUID NOT NULL,
                role TEXT NOT NULL,
                mount_path TEXT NOT NULL DEFAULT '',
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (user_id, ns_id)
            )""",
            "CREATE INDEX IF NOT EXISTS members_by_ns ON members (ns_id)",
            """CREATE TABLE IF NOT EXISTS files (
                ns_id UUID NOT NULL,
                file_id UUID NOT NULL,
                parent_id UUID NOT NULL,
                name TEXT NOT NULL,
                name_key TEXT NOT NULL,
                kind INT2 NOT NULL,
                head_rev UUID NOT NULL,
                size INT8 NOT NULL DEFAULT 0,
                deleted BOOL NOT NULL DEFAULT false,
                seq INT8 NOT NULL,
                modified_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (ns_id, file_id)
            )""",
            "CREATE INDEX IF NOT EXISTS files_by_parent ON files (ns_id, parent_id, name_key)",
            "CREATE UNIQUE INDEX IF NOT EXISTS files_live_name ON files (ns_id, parent_id, name_key) WHERE NOT deleted",
            """CREATE TABLE IF NOT EXISTS revisions (
                ns_id UUID NOT NULL,
                file_id UUID NOT NULL,
                rev_id UUID NOT NULL,
                parent_rev UUID NULL,
                seq INT8 NOT NULL,
                kind INT2 NOT NULL,
                size INT8 NOT NULL,
                deleted BOOL NOT NULL,
                path TEXT NOT NULL,
                blocklist BYTEA NOT NULL,
                content_hash BYTEA NOT NULL,
                device_id TEXT NOT NULL DEFAULT '',
                client_mtime_ns INT8 NOT NULL DEFAULT 0,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (ns_id, file_id, rev_id)
            )""",
            """CREATE TABLE IF NOT EXISTS journal (
                ns_id UUID NOT NULL,
                seq INT8 NOT NULL,
                op INT2 NOT NULL,
                file_id UUID NOT NULL,
                rev_id UUID NOT NULL,
                path TEXT NOT NULL,
                old_path TEXT NOT NULL DEFAULT '',
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (ns_id, seq)
            )""",
            """CREATE TABLE IF NOT EXISTS chunk_owners (
                user_id UUID NOT NULL,
                hash BYTEA NOT NULL,
                size INT8 NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (user_id, hash)
            )""",
            """CREATE TABLE IF NOT EXISTS idempotency (
                user_id UUID NOT NULL,
                device_id TEXT NOT NULL,
                op_id TEXT NOT NULL,
                outcome BYTEA NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (user_id, device_id, op_id)
            )""",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]


async def migrate(db: Database) -> int:
    """Apply every migration not yet applied; safe to run from several nodes at once."""

    async def ensure_table(conn: Conn) -> None:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                version INT8 PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )"""
        )

    await db.run(ensure_table)
    for version, description, statements in MIGRATIONS:

        async def apply(
            conn: Conn,
            version: int = version,
            description: str = description,
            statements: list[str] = statements,
        ) -> bool:
            row = await (
                await conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,))
            ).fetchone()
            if row:
                return False
            for stmt in statements:
                await conn.execute(stmt)
            await conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                (version, description),
            )
            return True

        if await db.run(apply):
            log.info("applied schema migration %d: %s", version, description)
    return LATEST
