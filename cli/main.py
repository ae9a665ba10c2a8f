"""The ``tessera`` command: local cluster, accounts, files.

Every command is a function ``(args) -> int``. Errors print one line (``tessera: …``) and exit
non-zero; tracebacks are only for bugs.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time

import grpc

from cli import userconfig
from cli.common import CliError, _human, _password, _remote, _with_client
from client import Client, ClientConfig, SyncError, UnavailableError
from client._errors import AuthenticationError


# -- accounts ----------------------------------------------------------------------------------
async def _user_add(client: Client, args: argparse.Namespace) -> int:
    password = _password(args, f"password for {args.name}: ")
    user_id = await client.create_user(args.name, password, is_admin=args.admin)
    print(f"created user {args.name} ({user_id})")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    endpoint = userconfig.resolve_endpoint(args.endpoint)
    cfg = userconfig.load()
    previous = cfg.user if cfg.token else ""
    if previous and previous.casefold() != args.name.casefold() and not args.switch:
        raise CliError(
            f"this terminal is logged in as {previous}; run `tessera logout` first, "
            f"or `tessera login {args.name} --switch` to log {previous} out and replace them"
        )
    password = _password(args, f"password for {args.name}: ")
    config = ClientConfig.from_env()
    resp = asyncio.run(
        Client.login(endpoint, args.name, password, config=config, device_name=args.device)
    )
    old_token = cfg.token
    cfg.endpoint, cfg.token, cfg.user = endpoint, resp.token, args.name
    path = userconfig.save(cfg)
    note = ""
    if old_token:  # the replaced login would be a device nobody holds any more: end it
        note = f"; the previous login ({previous or 'unknown'}) {asyncio.run(_end(endpoint, old_token, config))}"
    print(
        f"logged in as {args.name} at {endpoint} as device {resp.device_name} (token saved in {path}){note}"
    )
    return 0


async def _end(endpoint: str, token: str, config: ClientConfig) -> str:
    """Revoke a token we are about to forget; says what happened."""
    client = Client(endpoint, token, config)
    try:
        await client.logout()
        return "was logged out"
    except (AuthenticationError, SyncError):
        return "was no longer valid"
    finally:
        await client.close()


# -- files ---------------------------------------------------------------------------------------
async def _ls(client: Client, args: argparse.Namespace) -> int:
    path = _remote(args.path, allow_root=True)
    try:
        entries = await client.list(path)
    except SyncError as e:
        if e.status is not grpc.StatusCode.FAILED_PRECONDITION:
            raise
        entry = await client.stat(path)  # a file lists as itself
        if entry.is_folder:
            raise
        entries = [entry]
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.modified_at_us / 1e6))
        name = e.name + ("/" if e.is_folder else "")
        size = "-" if e.is_folder else _human(e.size)
        print(f"{size:>10}  {when}  {name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tessera", description="Tessera: file sync and storage on a gRPC storage cluster."
    )
    parser.add_argument(
        "--endpoint",
        help="metanode address (default: $TESSERA_ENDPOINT, your config, or 127.0.0.1:7420)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from cli.cluster import add_cluster_commands

    add_cluster_commands(sub)
    from cli.params import add_params_commands

    add_params_commands(sub)
    from cli.sync import add_sync_command

    add_sync_command(sub)
    from cli.files import add_meta_commands

    add_meta_commands(sub)
    from cli.recover import add_recover_commands

    add_recover_commands(sub)

    user = sub.add_parser("user", help="manage users (admin)")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = user_sub.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--password", help="prompted for when omitted")
    add.add_argument("--admin", action="store_true", help="make the user an admin")
    add.set_defaults(func=_with_client(_user_add))

    login = sub.add_parser(
        "login",
        help="log in (a new device) and save the token in your config",
        description="Log in as NAME: this terminal becomes a device of NAME (see tessera devices). "
        "If it is logged in as someone else, login refuses unless --switch, which logs them out.",
    )
    login.add_argument("name")
    login.add_argument("--password", help="prompted for when omitted")
    login.add_argument(
        "--device",
        default=socket.gethostname(),
        help="this device's name in `tessera devices` [default: the host name]",
    )
    login.add_argument(
        "--switch",
        action="store_true",
        help="replace the user this terminal is logged in as (their login is revoked)",
    )
    login.set_defaults(func=cmd_login)

    from cli.accounts import add_account_commands

    add_account_commands(sub, user_sub)

    from cli.transfer import add_transfer_commands

    add_transfer_commands(sub)

    ls = sub.add_parser("ls", help="list a folder")
    ls.add_argument("path", nargs="?", default="")
    ls.set_defaults(func=_with_client(_ls))

    from cli.status import status as cluster_status

    status = sub.add_parser(
        "status",
        help="the cluster at a glance, every node probed now (admin)",
        description="Ask the metanode, then probe every block and sync node directly with a "
        "1 s deadline: a node that does not answer is DOWN even while its etcd lease runs. "
        "Live block nodes count under-replicated chunks afresh from what they hold now.",
    )
    status.set_defaults(func=_with_client(cluster_status))
    return parser


def _where_it_went(endpoint: str) -> str:
    """A hint after a failed dial: the local cluster's address when it moved, else `tessera up`."""
    import json

    from cli.cluster import default_dir

    try:
        state = json.loads((default_dir() / "cluster.json").read_text())
        meta = state["meta"][0]["grpc"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "is it running? (tessera up)"
    if meta and meta != endpoint:
        return (
            f"the local cluster in {default_dir()} listens on {meta}: "
            f"use --endpoint {meta}, or log in again there"
        )
    return "is it running? (tessera up)"


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except CliError as e:
        print(f"tessera: {e}", file=sys.stderr)
        code = 1
    except AuthenticationError as e:
        print(f"tessera: {e.message}", file=sys.stderr)
        code = 1
    except UnavailableError as e:
        endpoint = userconfig.resolve_endpoint(getattr(args, "endpoint", None))
        print(
            f"tessera: cannot reach the cluster at {endpoint} ({e.message}); "
            + _where_it_went(endpoint),
            file=sys.stderr,
        )
        code = 1
    except SyncError as e:
        print(f"tessera: {e.message}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("tessera: interrupted", file=sys.stderr)
        code = 130
    raise SystemExit(code)
