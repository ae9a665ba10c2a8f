"""``tessera rm|mv|history|share|unshare|members``: the metadata commands of the CLI.

Each is a ``(client, args) -> int`` coroutine run by ``cli.common._with_client``; mistakes
raise ``CliError`` or an SDK error, which ``cli.main.main`` prints as one line.
"""

from __future__ import annotations

import argparse
import time

import grpc

from cli.common import _human, _remote, _with_client
from client import Client, SyncError
from tessera.paths import path_key


def _when(us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(us / 1e6))


async def _rm(client: Client, args: argparse.Namespace) -> int:
    path = _remote(args.path)
    entry = await client.delete(path, parent_revision=args.revision or "")
    kind = "folder" if entry.is_folder else "file"
    print(f"deleted {kind} {path} (restorable: tessera history {path})")
    return 0


async def _mv(client: Client, args: argparse.Namespace) -> int:
    src = _remote(args.src)
    into = args.dst.endswith("/") or args.dst in ("", "/")
    dst = _remote(args.dst, allow_root=True)
    if not into and dst:
        try:
            into = (await client.stat(dst)).is_folder and path_key(dst) != path_key(src)
        except SyncError as e:
            if e.status is not grpc.StatusCode.NOT_FOUND:
                raise
    if into:  # like mv: into an existing folder, keeping the name
        dst = "/".join(p for p in (dst, src.rpartition("/")[2]) if p)
    entry = await client.move(src, dst)
    print(f"{src} -> {entry.path if entry.namespace_id == client.root_namespace_id else dst}")
    return 0


async def _history(client: Client, args: argparse.Namespace) -> int:
    path = _remote(args.path)
    revisions = await client.history(path, limit=args.limit)
    for e in revisions:
        what = "deleted" if e.deleted else ("folder" if e.is_folder else _human(e.size))
        print(
            f"{e.revision}  {_when(e.modified_at_us)}  {what:>10}  {e.device_id or '-':<16}  {e.path}"
        )
    return 0


async def _share(client: Client, args: argparse.Namespace) -> int:
    path = _remote(args.path)
    ns = await client.share(path, args.user, role=args.role)
    what = "folder" if (await client.stat(path)).is_folder else "file"
    print(f"shared {path} with {args.user} as {args.role} (shared {what} {ns})")
    return 0


async def _unshare(client: Client, args: argparse.Namespace) -> int:
    path = _remote(args.path)
    await client.unshare(path, args.user)
    print(f"{args.user} no longer has {path}")
    return 0


async def _members(client: Client, args: argparse.Namespace) -> int:
    path = _remote(args.path, allow_root=True)
    for m in await client.members(path):
        print(f"{m.role:<7}  {m.name}")
    return 0


def add_meta_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the commands on the ``tessera`` parser."""
    with_client = _with_client

    rm = sub.add_parser(
        "rm",
        help="delete a file or folder (restorable: see history)",
        description="Delete a file, or a folder with everything in it as of this moment: the "
        "server deletes what the folder holds when the request reaches it, in one transaction "
        "(a sync daemon instead deletes only what its device had seen). Restorable: see history.",
    )
    rm.add_argument("path")
    rm.add_argument("--revision", help="only if this is still the newest revision")
    rm.set_defaults(func=with_client(_rm))

    mv = sub.add_parser("mv", help="move or rename a file or folder")
    mv.add_argument("src")
    mv.add_argument("dst", help="new path, or an existing folder (or one ending in /) to move into")
    mv.set_defaults(func=with_client(_mv))

    history = sub.add_parser(
        "history", help="the revisions of a file (a folder: of everything in it), newest first"
    )
    history.add_argument("path")
    history.add_argument(
        "--limit", type=int, default=0, help="at most this many (default: all kept)"
    )
    history.set_defaults(func=with_client(_history))

    share = sub.add_parser("share", help="share a folder or a file with another user")
    share.add_argument("path")
    share.add_argument("user")
    share.add_argument("--role", choices=("editor", "viewer"), default="editor")
    share.set_defaults(func=with_client(_share))

    unshare = sub.add_parser(
        "unshare", help="remove a user from a shared folder (yourself: leave it)"
    )
    unshare.add_argument("path")
    unshare.add_argument("user")
    unshare.set_defaults(func=with_client(_unshare))

    members = sub.add_parser("members", help="who a shared folder is shared with")
    members.add_argument("path", nargs="?", default="")
    members.set_defaults(func=with_client(_members))
