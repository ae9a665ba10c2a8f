"""``tessera sync FOLDER``: the sync daemon, on a terminal or as a service.

On a terminal it shows live progress; otherwise it logs one JSON object a line. ``--once``
syncs and exits (0: in sync; 1: an error; 2: the cluster was away, changes stay queued).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import sys
from pathlib import Path


def default_state_dir(folder: Path) -> Path:
    """``$XDG_STATE_HOME/tessera/sync/<hash of the folder's path>``: outside the folder, so an
    unmounted or wiped folder cannot take the daemon's memory of it along."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return Path(base) / "tessera" / "sync" / digest


def add_sync_command(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``tessera sync`` to the CLI's subcommands."""
    p = subparsers.add_parser("sync", help="keep a folder in sync with your files on the cluster")
    p.add_argument("folder", help="the folder to keep in sync (created if missing on first run)")
    p.add_argument("--once", action="store_true", help="sync once and exit (for scripts and tests)")
    p.add_argument("--state-dir", help="where the daemon keeps its state (default: under $XDG_STATE_HOME)")
    p.add_argument("--device", default=socket.gethostname(), help="this device's name, used in conflicted copies")
    p.add_argument("--settle", type=float, default=1.0, help="seconds a file must stay unchanged before upload")
    p.add_argument("--rescan", type=float, default=300.0, help="seconds between full rescans (a safety net)")
    p.add_argument("--backoff-cap", type=float, default=30.0, help="longest wait between reconnect attempts")
    p.add_argument("--no-watch", action="store_true", help="no filesystem watcher: rescans only")
    p.add_argument("--json-logs", action="store_true", help="structured logs even on a terminal")
    p.set_defaults(func=cmd_sync)


def cmd_sync(args: argparse.Namespace) -> int:
    """Run the daemon (see the module doc for exit codes)."""
    from cli import userconfig
    from cli.common import CliError
    from client._daemon import Daemon, DaemonConfig
    from client._errors import AuthenticationError
    from client._indexer import FolderVanished
    from client._progress import Progress, RichProgress
    from tessera.logs import setup_logging

    folder = Path(args.folder).expanduser()
    state_dir = Path(args.state_dir).expanduser() if args.state_dir else default_state_dir(folder)
    if not folder.exists():
        if (state_dir / "state.sqlite3").exists():
            raise CliError(f"{folder} is missing (unmounted?); not syncing it as a mass delete")
        folder.mkdir(parents=True)
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder")
    cfg_file = userconfig.load()
    token = os.environ.get("TESSERA_TOKEN") or cfg_file.token
    if not token:
        raise CliError("not logged in: run `tessera login NAME` (or `tessera up` for a local cluster)")
    tty = sys.stderr.isatty() and not args.json_logs
    setup_logging("WARNING" if tty else "INFO", json_lines=not tty, name="sync")
    progress = RichProgress(str(folder)) if tty else Progress()
    cfg = DaemonConfig(folder=folder, state_dir=state_dir, endpoint=userconfig.resolve_endpoint(args.endpoint), token=token,
                       device_name=args.device, settle=args.settle, rescan_interval=args.rescan,
                       backoff_cap=args.backoff_cap, watch=not args.no_watch and not args.once)

    async def main() -> int:
        daemon = Daemon(cfg, progress)
        progress.start()
        try:
            if args.once:
                ok = await daemon.run_once()
                return 0 if ok else 2
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, daemon.stop)
            await daemon.run()
            return 0
        finally:
            progress.stop()

    try:
        return asyncio.run(main())
    except FolderVanished as e:
        raise CliError(str(e)) from None
    except AuthenticationError as e:
        raise CliError(f"{e.message} (log in again: tessera login NAME)") from None
