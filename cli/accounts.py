"""``tessera whoami|logout|passwd|devices`` and admin ``tessera user list|rm``.

Each is a ``(client, args) -> int`` coroutine run by ``cli.common._with_client`` (``logout``
runs on its own: it must forget the local token even when the server already refused it).
Mistakes raise ``CliError`` or an SDK error, which ``cli.main.main`` prints as one line.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import time
from typing import Any

from cli import userconfig
from cli.common import CliError, _with_client
from client import AuthenticationError, Client, ClientConfig, UnavailableError


def _when(us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(us / 1e6)) if us else "-"


def _secret(given: str | None, prompt: str) -> str:
    """A password from its flag, else a prompt on a terminal, else one line of stdin."""
    if given is not None:
        return given
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline().rstrip("\n")
    if not line:
        raise CliError(f"no input for {prompt.strip(': ')!r} (use the flags)")
    return line


async def _whoami(client: Client, args: argparse.Namespace) -> int:
    me = await client.whoami()
    role = " (admin)" if me.is_admin else ""
    device = f" on device {me.device_name}" if me.device_name else ""
    expires = time.strftime("%Y-%m-%d", time.localtime(me.expires_at)) if me.expires_at else "-"
    print(f"{me.name}{role}{device} at {client.target}; token valid until {expires}")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    """Revoke this terminal's token on the cluster (every node) and forget it locally."""
    cfg = userconfig.load()
    token = os.environ.get("TESSERA_TOKEN") or cfg.token
    if not token:
        raise CliError("not logged in")
    endpoint = userconfig.resolve_endpoint(args.endpoint)

    async def revoke() -> str:
        client = Client(endpoint, token, ClientConfig.from_env())
        try:
            await client.logout()
            return "revoked on the cluster"
        except AuthenticationError:
            return "already not valid on the cluster"
        finally:
            await client.close()

    try:
        outcome = asyncio.run(revoke())
    except UnavailableError as e:
        if not args.local:
            raise CliError(
                f"cannot reach the cluster at {endpoint} to revoke the token ({e.message}); "
                "use --local to only forget it here"
            ) from None
        outcome = "NOT revoked (cluster unreachable)"
    who = cfg.user or "you"
    if token == cfg.token:
        cfg.token, cfg.user = "", ""
        path = userconfig.save(cfg)
        print(f"logged out {who}: token {outcome}, removed from {path}")
    else:
        print(f"logged out: the $TESSERA_TOKEN token is {outcome} (unset the variable)")
    return 0


async def _passwd(client: Client, args: argparse.Namespace) -> int:
    old = _secret(args.old_password, "current password: ")
    new = _secret(args.new_password, "new password: ")
    if args.new_password is None and sys.stdin.isatty():
        if getpass.getpass("new password again: ") != new:
            raise CliError("the new passwords differ; nothing changed")
    token = await client.change_password(old, new)
    cfg = userconfig.load()
    note = ""
    if not os.environ.get("TESSERA_TOKEN"):
        cfg.token = token
        note = f"; this terminal's new token saved in {userconfig.save(cfg)}"
    print(f"password changed: every other device must log in again{note}")
    return 0


def _table(header: list[str], rows: list[list[str]]) -> None:
    """Print columns padded to their widest cell (the last one unpadded)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        print("  ".join([c.ljust(w) for c, w in zip(r, widths, strict=False)] + [r[-1]]))


async def _devices(client: Client, args: argparse.Namespace) -> int:
    rows = [
        [("* " if d.current else "  ") + d.name, _when(d.created_at_us), _when(d.last_seen_at_us)]
        for d in await client.devices()
    ]
    _table(["  DEVICE", "CREATED", "LAST SEEN"], rows)
    return 0


async def _devices_revoke(client: Client, args: argparse.Namespace) -> int:
    device = await client.revoke_device(args.name)
    also = " (this terminal: log in again)" if device.current else ""
    print(f"revoked device {device.name}: its access ended on every node{also}")
    return 0


async def _user_list(client: Client, args: argparse.Namespace) -> int:
    rows = [
        [u.name, "admin" if u.is_admin else "user", _when(u.created_at_us), str(u.devices)]
        for u in await client.users()
    ]
    _table(["USER", "ROLE", "CREATED", "DEVICES"], rows)
    return 0


async def _user_rm(client: Client, args: argparse.Namespace) -> int:
    if sys.stdin.isatty() and not args.yes:
        answer = await asyncio.to_thread(
            input, f"delete user {args.name}, their files and shares? [y/N] "
        )
        if answer.strip().lower() not in {"y", "yes"}:
            raise CliError("not deleted")
    done = await client.delete_user(args.name)
    print(
        f"deleted user {args.name}: signed out everywhere, {done.shares_ended} shares ended, "
        f"{done.files_deleted} files and folders deleted (kept per the retention rules)"
    )
    return 0


def add_account_commands(sub: Any, user_sub: Any) -> None:
    """Register the commands on the ``tessera`` parser and its ``user`` group."""
    with_client = _with_client

    whoami = sub.add_parser("whoami", help="who this terminal is logged in as, and on which device")
    whoami.set_defaults(func=with_client(_whoami))

    logout = sub.add_parser(
        "logout", help="revoke this terminal's token on every node and forget it here"
    )
    logout.add_argument(
        "--local", action="store_true", help="if the cluster is unreachable, only forget it here"
    )
    logout.set_defaults(func=cmd_logout)

    passwd = sub.add_parser(
        "passwd", help="change your password (every other device must log in again)"
    )
    passwd.add_argument("--old-password", help="prompted for when omitted")
    passwd.add_argument("--new-password", help="prompted for when omitted")
    passwd.set_defaults(func=with_client(_passwd))

    devices = sub.add_parser("devices", help="your devices (one per login); * is this one")
    devices.set_defaults(func=with_client(_devices))
    devices_sub = devices.add_subparsers(dest="devices_command", metavar="ACTION")
    revoke = devices_sub.add_parser("revoke", help="end a device's access on every node")
    revoke.add_argument("name", help="a device name from `tessera devices`")
    revoke.set_defaults(func=with_client(_devices_revoke))

    ls = user_sub.add_parser("list", help="every user (admin)")
    ls.set_defaults(func=with_client(_user_list))
    rm = user_sub.add_parser(
        "rm",
        help="delete a user (admin): their tokens die everywhere, their shares end, "
        "their files are deleted and kept per the retention rules",
    )
    rm.add_argument("name")
    rm.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rm.set_defaults(func=with_client(_user_rm))
