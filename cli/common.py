"""What every command module of the CLI shares: the one-line error, argument helpers, and
running a command with a connected client.

Command modules import this, and ``cli.main`` imports the command modules: no cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable

from cli import userconfig
from client import Client, ClientConfig
from tessera.paths import InvalidPath, normalize_path


class CliError(Exception):
    """A user mistake: printed as one line, exit code 1."""


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _remote(path: str, *, allow_root: bool = False) -> str:
    try:
        return normalize_path(path, allow_root=allow_root)
    except InvalidPath as e:
        raise CliError(str(e)) from None


def _password(args: argparse.Namespace, prompt: str) -> str:
    if args.password is not None:
        return args.password
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise CliError("no password given (use --password or type it when asked)")
        return line
    return getpass.getpass(prompt)


async def _client(args: argparse.Namespace) -> Client:
    cfg = userconfig.load()
    endpoint = userconfig.resolve_endpoint(args.endpoint)
    token = os.environ.get("TESSERA_TOKEN") or cfg.token
    if not token:
        raise CliError(
            "not logged in: run `tessera login NAME` (or `tessera up` for a local cluster)"
        )
    return await Client.connect(
        endpoint, token=token, config=ClientConfig.from_env(device_id=cfg.device_id or "cli")
    )


def _with_client(
    fn: Callable[[Client, argparse.Namespace], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            client = await _client(args)
            try:
                return await fn(client, args)
            finally:
                await client.close()

        return asyncio.run(main())

    return run
