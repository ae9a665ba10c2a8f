"""Share links: capabilities to read a file or a folder's subtree without an account.

A link names a file or folder by (namespace, file id), so it follows renames and dies with a
delete. Its token is 256 random bits shown once; only its SHA-256 is stored, so the table
leaks no usable link. A password is hashed with the accounts' KDF (argon2). Wrong passwords
are counted per link: after ``MAX_FAILURES`` in ``FAILURE_WINDOW`` the link refuses even the
right one until the window passes (RESOURCE_EXHAUSTED). A wrong, revoked or expired token, and
a link whose creator lost access, are the same NOT_FOUND. Reads go out with a read ticket
signed for the link's creator, so block nodes serve exactly that file's chunks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass

from metanode import files, permissions, timetravel
from metanode.db import Conn
from metanode.files import FileRow
from metanode.model import EntryRow, Kind
from tessera.errors import FailedPrecondition, NotFound, ResourceExhausted
from tessera.paths import join_path, name_key, split_path

MAX_FAILURES = 10
FAILURE_WINDOW = dt.timedelta(minutes=10)
MAX_LINKS = 1000
MAX_CHILDREN = 1000

_COLS = """owner_id, link_id, ns_id, file_id, password_hash, created_at, expires_at, downloads,
           last_used_at, failures, window_start"""


@dataclass(frozen=True)
class LinkRow:
    owner_id: uuid.UUID
    link_id: uuid.UUID
    ns_id: uuid.UUID
    file_id: uuid.UUID
    password_hash: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    downloads: int
    last_used_at: dt.datetime | None
    failures: int
    window_start: dt.datetime


@dataclass(frozen=True)
class Opened:
    """What a link shows: the entry opened, a folder's children, the link's own name."""

    link: LinkRow
    row: FileRow
    entry: EntryRow
    children: list[EntryRow]
    name: str


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    """256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


async def create(
    conn: Conn,
    owner: uuid.UUID,
    ns_id: uuid.UUID,
    path: str,
    *,
    token: str,
    expires_in: int,
    password_hash: str,
) -> tuple[LinkRow, str]:
    """A link to the live entry at ``path`` (an editor or the owner may give it out)."""
    await permissions.require_role(conn, owner, ns_id, write=True, path=path)
    found = await files.lookup(conn, ns_id, path) if path else None
    if found is None:
        raise files.not_found(path)
    row, stored = found
    if row.mount_ns is not None:
        raise FailedPrecondition(f"{stored} is a shared folder: link it from inside, or share it")
    expires = "now() + %s" if expires_in else "NULL"
    args: tuple = (owner, uuid.uuid4(), ns_id, row.file_id, token_hash(token), password_hash)
    if expires_in:
        args += (dt.timedelta(seconds=expires_in),)
    cur = await conn.execute(
        f"""INSERT INTO links (owner_id, link_id, ns_id, file_id, token_hash, password_hash, expires_at)
            VALUES (%s, %s, %s, %s, %s, %s, {expires}) RETURNING {_COLS}""",
        args,
    )
    return LinkRow(*(await cur.fetchone())), stored  # type: ignore[misc]


async def _current(conn: Conn, link: LinkRow) -> tuple[FileRow, str] | None:
    """The linked entry and its path now, None when deleted or out of the creator's reach."""
    if await permissions.role_of(conn, link.owner_id, link.ns_id) is None:
        shared = await conn.execute(
            "SELECT 1 FROM file_shares WHERE ns_id = %s AND file_id = %s AND user_id = %s",
            (link.ns_id, link.file_id, link.owner_id),
        )
        if await shared.fetchone() is None:  # neither a member nor given this very file
            return None
    try:
        row, path = await timetravel.path_by_id(conn, link.ns_id, link.file_id)
    except NotFound:
        return None
    if row.deleted:
        return None
    return row, path


async def list_links(conn: Conn, owner: uuid.UUID) -> list[tuple[LinkRow, FileRow | None, str]]:
    """The owner's links, newest first, each with its entry and path now (None: gone)."""
    cur = await conn.execute(
        f"SELECT {_COLS} FROM links WHERE owner_id = %s ORDER BY created_at DESC LIMIT %s",
        (owner, MAX_LINKS),
    )
    out = []
    for raw in await cur.fetchall():
        link = LinkRow(*raw)
        now = await _current(conn, link)
        out.append((link, now[0] if now else None, now[1] if now else ""))
    return out


async def revoke(conn: Conn, owner: uuid.UUID, link_id: uuid.UUID) -> None:
    res = await conn.execute(
        "DELETE FROM links WHERE owner_id = %s AND link_id = %s", (owner, link_id)
    )
    if res.rowcount == 0:
        raise NotFound(f"you have no link {link_id}")


async def find(conn: Conn, token: str) -> LinkRow:
    """The live link of a token; NOT_FOUND for a wrong, revoked or expired one; rate-limited."""
    cur = await conn.execute(
        f"""SELECT {_COLS} FROM links WHERE token_hash = %s
            AND (expires_at IS NULL OR expires_at > now())""",
        (token_hash(token),),
    )
    raw = await cur.fetchone()
    if raw is None:
        raise NotFound("no such link (it may have expired or been revoked)")
    link = LinkRow(*raw)
    if link.failures >= MAX_FAILURES:
        now = (await (await conn.execute("SELECT now()")).fetchone())[0]
        if now - link.window_start < FAILURE_WINDOW:
            raise ResourceExhausted("too many wrong passwords for this link: try again later")
    return link


async def failed(conn: Conn, link: LinkRow) -> None:
    """Count one wrong password (a new window once the last one is over)."""
    await conn.execute(
        """UPDATE links SET
               failures = CASE WHEN now() - window_start >= %s THEN 1 ELSE failures + 1 END,
               window_start = CASE WHEN now() - window_start >= %s THEN now() ELSE window_start END
           WHERE owner_id = %s AND link_id = %s""",
        (FAILURE_WINDOW, FAILURE_WINDOW, link.owner_id, link.link_id),
    )


async def open_link(conn: Conn, link: LinkRow, sub: str, *, download: bool) -> Opened:
    """What the link shows at ``sub`` (a path inside a folder link; "" the link itself)."""
    now = await _current(conn, link)
    if now is None:
        raise NotFound("no such link (what it pointed at is gone)")
    top, top_path = now
    row, rel = top, ""
    for segment in split_path(sub) if sub else []:
        if row.kind is not Kind.FOLDER:
            raise NotFound(f"{sub}: no such file or folder in this link")
        nxt = await files.child(conn, link.ns_id, row.file_id, name_key(segment))
        if nxt is None or nxt.deleted or nxt.mount_ns is not None:
            raise NotFound(f"{sub}: no such file or folder in this link")
        row, rel = nxt, join_path(rel, nxt.name)
    shown = join_path(top.name, rel) if rel else top.name
    entry = await files.entry(conn, link.ns_id, row.file_id, row.head_rev, shown)
    children: list[EntryRow] = []
    if row.kind is Kind.FOLDER:
        folder = join_path(top_path, rel) if rel else top_path
        listed, _ = await files.list_folder(conn, link.ns_id, folder, limit=MAX_CHILDREN)
        base = join_path(top.name, rel) if rel else top.name
        children = [dataclasses.replace(e, path=join_path(base, e.name)) for e in listed]
    await conn.execute(
        f"""UPDATE links SET last_used_at = now(), failures = 0{", downloads = downloads + 1" if download else ""}
            WHERE owner_id = %s AND link_id = %s""",
        (link.owner_id, link.link_id),
    )
    return Opened(link, row, entry, children, top.name)
