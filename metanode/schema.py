"""Versioned schema migrations, applied at start (or by ``metanode --migrate-only``).

SQL stays in the subset PostgreSQL and CockroachDB both speak: UUID keys (never sequences),
no LISTEN/NOTIFY, no PL/pgSQL. Every key begins with the namespace or user id so one user's
tree is contiguous and CockroachDB spreads users across ranges.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import psycopg

from metanode import blocklists
from metanode.db import Conn, Database

log = logging.getLogger(__name__)

# A migration step is one SQL statement or, for a backfill SQL cannot express (decoding a
# blocklist), an async function of the connection.
Step = str | Callable[[Conn], Awaitable[None]]


async def _backfill_chunk_refs(conn: Conn) -> None:
    """One chunk_refs row per (chunk, revision) for every revision written before version 2."""
    cur = await conn.execute(
        "SELECT ns_id, file_id, rev_id, blocklist FROM revisions WHERE NOT deleted"
    )
    rows = [
        (h, ns_id, file_id, rev_id)
        for ns_id, file_id, rev_id, raw in await cur.fetchall()
        for h in {c.hash for c in blocklists.decode(bytes(raw))}
    ]
    if rows:
        async with conn.cursor() as c:
            await c.executemany(
                "INSERT INTO chunk_refs (hash, ns_id, file_id, rev_id) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )


MIGRATIONS: list[tuple[int, str, list[Step]]] = [
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
    (
        2,
        "mounts, per-file revision numbers, chunk references, GC state",
        [
            "ALTER TABLE files ADD COLUMN IF NOT EXISTS mount_ns UUID NULL",
            "ALTER TABLE files ADD COLUMN IF NOT EXISTS revs INT8 NOT NULL DEFAULT 0",
            "ALTER TABLE revisions ADD COLUMN IF NOT EXISTS n INT8 NOT NULL DEFAULT 0",
            "ALTER TABLE journal ADD COLUMN IF NOT EXISTS kind INT2 NOT NULL DEFAULT 1",
            "ALTER TABLE idempotency ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'commit'",
            "CREATE INDEX IF NOT EXISTS revisions_by_rev ON revisions (ns_id, rev_id)",
            "CREATE INDEX IF NOT EXISTS chunk_owners_by_hash ON chunk_owners (hash)",
            # Which revisions reference a chunk: the GC's reference index, keyed by hash.
            """CREATE TABLE IF NOT EXISTS chunk_refs (
                hash BYTEA NOT NULL,
                ns_id UUID NOT NULL,
                file_id UUID NOT NULL,
                rev_id UUID NOT NULL,
                PRIMARY KEY (hash, ns_id, file_id, rev_id)
            )""",
            # Chunks that may be garbage: 'candidate' (unreferenced, or asked about before an
            # upload), 'deleting' (owners dropped, block deletion under way), 'deleted'.
            """CREATE TABLE IF NOT EXISTS gc_chunks (
                hash BYTEA PRIMARY KEY,
                state TEXT NOT NULL,
                touched_at TIMESTAMPTZ NOT NULL,
                deleted_at TIMESTAMPTZ NULL
            )""",
            "CREATE INDEX IF NOT EXISTS gc_chunks_by_state ON gc_chunks (state, touched_at)",
            """CREATE TABLE IF NOT EXISTS gc_lease (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                until_at TIMESTAMPTZ NOT NULL
            )""",
        ],
    ),
    (
        3,
        "backfill revision numbers, journal kinds and chunk references",
        [
            """UPDATE revisions SET n = x.n FROM (
                   SELECT ns_id, file_id, rev_id,
                          row_number() OVER (PARTITION BY ns_id, file_id ORDER BY seq) AS n
                   FROM revisions) AS x
               WHERE revisions.ns_id = x.ns_id AND revisions.file_id = x.file_id
                 AND revisions.rev_id = x.rev_id""",
            """UPDATE files SET revs = (SELECT count(*) FROM revisions r
                                       WHERE r.ns_id = files.ns_id AND r.file_id = files.file_id)""",
            """UPDATE journal SET kind = r.kind FROM revisions r
               WHERE r.ns_id = journal.ns_id AND r.file_id = journal.file_id AND r.rev_id = journal.rev_id""",
            _backfill_chunk_refs,
        ],
    ),
    (
        4,
        "devices (one per login) and token generations",
        [
            """CREATE TABLE IF NOT EXISTS devices (
                user_id UUID NOT NULL,
                device_id TEXT NOT NULL,
                name TEXT NOT NULL,
                name_key TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                last_seen TIMESTAMPTZ NOT NULL DEFAULT now(),
                expires_at TIMESTAMPTZ NOT NULL,
                revoked_at TIMESTAMPTZ NULL,
                PRIMARY KEY (user_id, device_id)
            )""",
            "ALTER TABLE users ADD COLUMN IF NOT EXISTS token_gen INT8 NOT NULL DEFAULT 0",
        ],
    ),
    (
        5,
        "the executable bit of each revision",
        ["ALTER TABLE revisions ADD COLUMN IF NOT EXISTS executable BOOL NOT NULL DEFAULT false"],
    ),
    (
        6,
        "who made a revision (trash), share links, shared files",
        [
            "ALTER TABLE revisions ADD COLUMN IF NOT EXISTS user_id UUID NULL",
            # A link is a capability: only the SHA-256 of its token is stored.
            """CREATE TABLE IF NOT EXISTS links (
                owner_id UUID NOT NULL,
                link_id UUID NOT NULL,
                ns_id UUID NOT NULL,
                file_id UUID NOT NULL,
                token_hash BYTEA NOT NULL,
                password_hash TEXT NOT NULL DEFAULT '',
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                expires_at TIMESTAMPTZ NULL,
                downloads INT8 NOT NULL DEFAULT 0,
                last_used_at TIMESTAMPTZ NULL,
                failures INT8 NOT NULL DEFAULT 0,
                window_start TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (owner_id, link_id)
            )""",
            "CREATE UNIQUE INDEX IF NOT EXISTS links_by_token ON links (token_hash)",
            # A shared file: a grant per member (metanode.fileshares), one share id per file.
            """CREATE TABLE IF NOT EXISTS file_shares (
                ns_id UUID NOT NULL,
                file_id UUID NOT NULL,
                user_id UUID NOT NULL,
                share_id UUID NOT NULL,
                role TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (ns_id, file_id, user_id)
            )""",
            "CREATE INDEX IF NOT EXISTS file_shares_by_share ON file_shares (share_id, user_id)",
            "CREATE INDEX IF NOT EXISTS file_shares_by_user ON file_shares (user_id)",
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
            statements: list[Step] = statements,
        ) -> bool:
            row = await (
                await conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,))
            ).fetchone()
            if row:
                return False
            for stmt in statements:
                if isinstance(stmt, str):
                    await conn.execute(stmt)
                else:
                    await stmt(conn)
            await conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                (version, description),
            )
            return True

        try:
            applied = await db.run(apply)
        except psycopg.errors.UniqueViolation:
            applied = False  # another metanode applied it at the same moment
        if applied:
            log.info("applied schema migration %d: %s", version, description)
    return LATEST
