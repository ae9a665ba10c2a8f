"""``tessera restore`` (a revision, a time, or from the trash), ``tessera trash``,
``tessera shared`` and ``tessera link create|list|rm``."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import time

from cli.common import CliError, _remote, _with_client
from client import Client

_AGO = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, *, now: float | None = None) -> int:
    """A time as microseconds since the epoch: ``2h`` / ``30m`` / ``3d`` ago, an ISO 8601 time
    (local time without a zone), or ``@SECONDS`` since the epoch."""
    text = text.strip()
    now = time.time() if now is None else now
    if m := _AGO.match(text):
        return int((now - int(m.group(1)) * _UNIT[m.group(2)]) * 1_000_000)
    if text.startswith("@"):
        try:
            return int(float(text[1:]) * 1_000_000)
        except ValueError:
            pass
    else:
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.astimezone()  # local time
            return int(when.timestamp() * 1_000_000)
    raise CliError(
        f"cannot read the time {text!r}: say e.g. 2h (ago), 2026-11-30T14:05 or @1764511500"
    )


def parse_duration(text: str) -> int:
    """A duration like ``7d`` or ``12h`` in seconds."""
    m = _AGO.match(text.strip())
    if not m or int(m.group(1)) <= 0:
        raise CliError(f"cannot read the duration {text!r}: say e.g. 30m, 12h, 7d or 2w")
    return int(m.group(1)) * _UNIT[m.group(2)]


def when(us: int) -> str:
    """A local time for people."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(us / 1e6))


async def restore(client: Client, args: argparse.Namespace) -> int:
    """A revision (files, as before), ``--at`` a time, or (neither) a deleted entry from the trash."""
    path = _remote(args.path)
    if args.revision and args.at:
        raise CliError("give a revision or --at TIME, not both")
    if args.revision:
        entry = await client.restore(path, args.revision)
        print(f"restored {path} to revision {args.revision} (now revision {entry.revision})")
        return 0
    at_us = parse_when(args.at) if args.at else 0
    done = await client.restore_at(path, at_us, file_id=args.id or "")
    what = "folder" if done.entry.is_folder else "file"
    since = f"as of {when(at_us)}" if at_us else "as it was before it was deleted"
    print(f"restored {what} {done.entry.path} {since} ({done.changed} changes)")
    return 0


async def trash(client: Client, args: argparse.Namespace) -> int:
    """What was deleted under PATH, newest first, with who and when, and how long it is kept."""
    path = _remote(args.path, allow_root=True)
    items, retention = await client.trash(path, limit=args.limit)
    kept = f"{retention // 86400} days" if retention >= 86400 else f"{retention} seconds"
    print(
        f"deleted files are kept {kept} after deletion (the cluster's revision retention)"
        if retention
        else "deleted files are kept as long as the cluster keeps revisions"
    )
    if not items:
        print("the trash is empty" + (f" under {path}" if path else ""))
    for t in items:
        e = t.entry
        name = e.path + ("/" if e.is_folder else "")
        inside = f" ({t.files_inside} files)" if e.is_folder else ""
        until = f"  until {when(t.restorable_until_us)}" if t.restorable_until_us else ""
        print(
            f"{e.file_id}  {when(e.modified_at_us)}  {t.deleted_by or '?':<12} "
            f"{name}{inside}{until}"
        )
    if items:
        print("restore one with: tessera restore PATH  (or --id ID when a name repeats)")
    return 0


async def link_create(client: Client, args: argparse.Namespace) -> int:
    path = _remote(args.path)
    expires = parse_duration(args.expires) if args.expires else 0
    password = ""
    if args.password:
        password = os.environ.get("TESSERA_LINK_PASSWORD", "")
        if not password:
            import getpass

            password = getpass.getpass("link password: ")
        if not password:
            raise CliError("an empty password: leave out --password for a link without one")
    link, token = await client.create_link(path, expires_in=expires, password=password)
    print(f"{link_base()}/s/{token}")
    extra = f", expires {when(link.expires_at_us)}" if link.expires_at_us else ""
    print(f"link {link.link_id} to {link.path}{extra}{', password protected' if password else ''}")
    return 0


def link_base() -> str:
    """Where the web gateway answers (``TESSERA_WEB_URL``, set by ``tessera up``)."""
    from cli import userconfig

    return (os.environ.get("TESSERA_WEB_URL") or userconfig.load().web_url or "").rstrip(
        "/"
    ) or "http://127.0.0.1:7480"


async def link_list(client: Client, args: argparse.Namespace) -> int:
    links = await client.links()
    if not links:
        print("no links")
    for x in links:
        expires = when(x.expires_at_us) if x.expires_at_us else "never"
        used = when(x.last_used_us) if x.last_used_us else "never"
        lock = "password" if x.has_password else "-"
        print(
            f"{x.link_id}  {x.path}{'/' if x.is_folder else ''}  expires {expires}  {lock}  "
            f"{x.downloads} downloads, last used {used}"
        )
    return 0


async def link_rm(client: Client, args: argparse.Namespace) -> int:
    await client.revoke_link(args.link_id)
    print(f"revoked link {args.link_id}")
    return 0


async def shared(client: Client, args: argparse.Namespace) -> int:
    """Files shared with you (reach one with its share id) and files you shared."""
    files = await client.shared_files()
    if not files:
        print("no shared files (shared folders are in your tree: tessera members PATH)")
    for f in files:
        if f.role == "owner":
            who = ", ".join(f"{n} ({r})" for n, r in f.members)
            print(f"{f.share_id}  {f.path}  shared by you with {who}")
        else:
            print(f"{f.share_id}  {f.name}  from {f.owner} as {f.role}  {f.size} bytes")
    return 0


def add_recover_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register restore, trash and link on the ``tessera`` parser."""
    r = sub.add_parser(
        "restore",
        help="bring back a revision, a file or folder as it was at a time, or a deleted one",
    )
    r.add_argument("path")
    r.add_argument("revision", nargs="?", help="a revision id from `tessera history PATH`")
    r.add_argument(
        "--at",
        metavar="TIME",
        help="as it was then (files and whole folders): 2h (ago), 2026-11-30T14:05, @EPOCH",
    )
    r.add_argument("--id", help="the trash entry's id, when a deleted name repeats")
    r.set_defaults(func=_with_client(restore))

    t = sub.add_parser("trash", help="deleted files and folders: who deleted them, and when")
    t.add_argument("path", nargs="?", default="", help="a folder (a deleted one: what was in it)")
    t.add_argument("--limit", type=int, default=0, help="at most this many")
    t.set_defaults(func=_with_client(trash))

    sh = sub.add_parser("shared", help="files shared with you, and files you shared")
    sh.set_defaults(func=_with_client(shared))

    link = sub.add_parser("link", help="share links: anyone with the URL can download")
    ls = link.add_subparsers(dest="link_command", metavar="ACTION", required=True)
    c = ls.add_parser("create", help="a link to a file or folder; prints its URL")
    c.add_argument("path")
    c.add_argument("--expires", metavar="DURATION", help="e.g. 12h, 7d (default: never)")
    c.add_argument(
        "--password",
        action="store_true",
        help="ask for a password (or take $TESSERA_LINK_PASSWORD)",
    )
    c.set_defaults(func=_with_client(link_create))
    ls.add_parser("list", help="your links, with downloads").set_defaults(
        func=_with_client(link_list)
    )
    rm = ls.add_parser("rm", help="revoke a link at once")
    rm.add_argument("link_id")
    rm.set_defaults(func=_with_client(link_rm))
