"""``tessera sync FOLDER``: the sync daemon, on a terminal or as a service; ``tessera sync
status [FOLDER]``: ask a running daemon what it is doing.

On a terminal it shows live progress; otherwise it logs one JSON object a line. ``--once``
syncs and exits (0: in sync; 1: an error; 2: the cluster was away or the folder is missing,
changes stay queued).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

EPILOG = """\
what is synced:
  Everything in FOLDER except the names matched by FOLDER/.tesseraignore (gitignore syntax,
  e.g. "*.tmp", "build/", "!keep.tmp"; the file itself syncs to your other devices).
  Ignoring is about uploading only: a matching local file is never uploaded, and nothing
  you do to it here (edit, delete, move away) changes the server. Ignoring never deletes
  anything anywhere: files that were synced before a rule matched them stay on the server
  and on your other devices, and changes to them made elsewhere still come down (a local
  edit there is then kept beside the new version as a conflicted copy).
  FOLDER/.tessera/ is the daemon's marker (never synced): if it is missing (the folder
  is unmounted, deleted or replaced) the daemon pauses, deletes nothing, and resumes by
  itself when the folder is back.

selective sync (this device only, not synced):
  --exclude PATH  stops syncing PATH (relative to FOLDER) here. The local copy is removed
                  once the server holds all of it (local-only or modified files under it
                  are uploaded first; anything it cannot upload is kept and listed as
                  skipped). It stays on the server and on your other devices.
  --include PATH  syncs it here again (it downloads).
  With a daemon already running for FOLDER, the change is sent to it and the command exits.

status:
  tessera sync status [FOLDER] [--json] asks the running daemon(s) over a unix socket in
  their state directory (owner-only): state ("up to date" only when nothing is queued,
  in flight or waiting remotely), files and bytes to go each way, current transfers,
  conflicts, skipped paths with reasons, view-only edits kept local, exclusions.
  A folder literally named "status" is ./status.
"""


def _state_base() -> Path:
    return (
        Path(os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state"))
        / "tessera"
        / "sync"
    )


def default_state_dir(folder: Path) -> Path:
    """``$XDG_STATE_HOME/tessera/sync/<hash of the folder's path>``: outside the folder, so an
    unmounted or wiped folder cannot take the daemon's memory of it along."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return _state_base() / digest


def add_sync_command(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``tessera sync`` to the CLI's subcommands."""
    p = subparsers.add_parser(
        "sync",
        help="keep a folder in sync with your files on the cluster (or: sync status)",
        usage="tessera sync [options] FOLDER\n       tessera sync status [FOLDER] [--state-dir DIR] [--json]",
        description="Keep FOLDER in sync with your files on the cluster.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "folder",
        metavar="FOLDER",
        help="the folder to keep in sync (created if missing on first run), or `status`",
    )
    p.add_argument(
        "status_folder",
        nargs="?",
        metavar="STATUS_FOLDER",
        help="with `status`: which folder (default: every running daemon)",
    )
    p.add_argument("--once", action="store_true", help="sync once and exit (for scripts and tests)")
    p.add_argument(
        "--state-dir", help="where the daemon keeps its state (default: under $XDG_STATE_HOME)"
    )
    p.add_argument(
        "--device",
        default=socket.gethostname(),
        help="this device's name, used in conflicted copies",
    )
    p.add_argument(
        "--settle", type=float, default=1.0, help="seconds a file must stay unchanged before upload"
    )
    p.add_argument(
        "--rescan", type=float, default=300.0, help="seconds between full rescans (a safety net)"
    )
    p.add_argument(
        "--backoff-cap", type=float, default=30.0, help="longest wait between reconnect attempts"
    )
    p.add_argument("--no-watch", action="store_true", help="no filesystem watcher: rescans only")
    p.add_argument("--json-logs", action="store_true", help="structured logs even on a terminal")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATH",
        help="stop syncing PATH (relative to FOLDER) on this device; repeatable (see below)",
    )
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="sync an excluded PATH on this device again; repeatable",
    )
    p.add_argument("--json", action="store_true", help="with `status`: print JSON for scripts")
    p.set_defaults(func=cmd_sync)


def _rel(folder: Path, path: str) -> str:
    """A PATH given on the command line, relative to FOLDER (absolute paths must be inside it)."""
    from cli.common import CliError

    p = Path(path).expanduser()
    if not p.is_absolute():
        return path
    try:
        return p.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        raise CliError(f"{path} is not inside {folder}") from None


def cmd_sync(args: argparse.Namespace) -> int:
    """Run the daemon (see the module doc for exit codes), or ``status``."""
    if args.folder == "status":
        return cmd_status(args)
    from cli.common import CliError

    if args.status_folder:
        raise CliError(
            f"unexpected argument {args.status_folder!r} (did you mean `tessera sync status {args.status_folder}`?)"
        )
    folder = Path(args.folder).expanduser()
    state_dir = Path(args.state_dir).expanduser() if args.state_dir else default_state_dir(folder)
    from syncd.selective import BadPath, clean_path

    try:
        excludes = [clean_path(_rel(folder, p)) for p in args.exclude]
        includes = [clean_path(_rel(folder, p)) for p in args.include]
    except BadPath as e:
        raise CliError(str(e)) from None
    if excludes or includes:
        told = _tell_running(state_dir, excludes, includes)
        if told is not None:
            print(told)
            return 0
    elif _running(state_dir):
        raise CliError(
            f"a sync daemon is already running for {folder} (see `tessera sync status {folder}`)"
        )
    return _run_daemon(args, folder, state_dir, excludes, includes)


def _running(state_dir: Path) -> bool:
    from syncd.status import request

    try:
        asyncio.run(request(state_dir, {"cmd": "ping"}, timeout=5))
    except (OSError, TimeoutError, ValueError):
        return False
    return True


def _tell_running(state_dir: Path, excludes: list[str], includes: list[str]) -> str | None:
    """Send exclude/include to a daemon already running on this state; None if none runs."""
    from cli.common import CliError
    from syncd.status import request

    async def tell() -> dict[str, Any]:
        reply: dict[str, Any] = {}
        for cmd, paths in (("include", includes), ("exclude", excludes)):
            if paths:
                reply = await request(state_dir, {"cmd": cmd, "paths": paths})
                if "error" in reply:
                    raise CliError(str(reply["error"]))
        return reply

    try:
        reply = asyncio.run(tell())
    except (OSError, TimeoutError, ValueError):
        return None
    excluded = reply.get("excluded", {})
    return "excluded on this device: " + (
        ", ".join(f"{p} ({s})" for p, s in sorted(excluded.items())) or "nothing"
    )


def _run_daemon(
    args: argparse.Namespace,
    folder: Path,
    state_dir: Path,
    excludes: list[str],
    includes: list[str],
) -> int:
    from cli import userconfig
    from cli.common import CliError
    from client import AuthenticationError
    from syncd.daemon import Daemon, DaemonConfig
    from syncd.progress import Progress, RichProgress
    from syncd.selective import BadPath
    from tessera.logs import setup_logging

    known = (state_dir / "state.sqlite3").exists()
    if not folder.exists() and not known:
        folder.mkdir(parents=True)
    if folder.exists() and not folder.is_dir():
        raise CliError(f"{folder} is not a folder")
    cfg_file = userconfig.load()
    token = os.environ.get("TESSERA_TOKEN") or cfg_file.token
    if not token:
        raise CliError(
            "not logged in: run `tessera login NAME` (or `tessera up` for a local cluster)"
        )
    tty = sys.stderr.isatty() and not args.json_logs
    setup_logging("WARNING" if tty else "INFO", json_lines=not tty, name="sync")
    progress = RichProgress(str(folder)) if tty else Progress()
    cfg = DaemonConfig(
        folder=folder,
        state_dir=state_dir,
        endpoint=userconfig.resolve_endpoint(args.endpoint),
        token=token,
        device_name=args.device,
        settle=args.settle,
        rescan_interval=args.rescan,
        backoff_cap=args.backoff_cap,
        watch=not args.no_watch and not args.once,
    )

    async def main() -> int:
        daemon = Daemon(cfg, progress)
        try:
            daemon.selective.include(includes)
            daemon.selective.exclude(excludes)
        except BadPath as e:
            daemon.db.close()
            raise CliError(str(e)) from None
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
    except AuthenticationError as e:
        raise CliError(f"{e.message} (log in again: tessera login NAME)") from None


# -- tessera sync status ----------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    """Print what the running daemon(s) are doing; 1 if none answers."""
    from cli.common import CliError
    from syncd.status import request

    if args.state_dir:
        dirs = [Path(args.state_dir).expanduser()]
    elif args.status_folder:
        dirs = [default_state_dir(Path(args.status_folder).expanduser())]
    else:
        base = _state_base()
        dirs = sorted(p.parent for p in base.glob("*/status.sock")) if base.is_dir() else []
    reports: list[dict[str, Any]] = []

    async def ask_all() -> None:
        for d in dirs:
            try:
                reports.append(await request(d, {"cmd": "status"}))
            except (OSError, TimeoutError, ValueError):
                if args.status_folder or args.state_dir:
                    raise CliError(
                        f"no sync daemon is running for {args.status_folder or d} (start it with `tessera sync FOLDER`)"
                    ) from None

    asyncio.run(ask_all())
    if args.json:
        print(
            json.dumps(
                reports[0] if (args.status_folder or args.state_dir) and reports else reports,
                indent=2,
            )
        )
        return 0 if reports else 1
    if not reports:
        print("no sync daemon is running")
        return 1
    for rep in reports:
        print(format_report(rep))
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} B"


def format_report(rep: dict[str, Any]) -> str:
    """The human form of one daemon's report."""
    lines = [
        f"{rep.get('folder')}: {rep.get('state')}"
        + (f" ({rep['detail']})" if rep.get("detail") else "")
    ]
    up, down = rep.get("up", {}), rep.get("down", {})
    lines.append(f"  to upload:   {up.get('files', 0)} files, {_human(up.get('bytes', 0))}")
    lines.append(f"  to download: {down.get('files', 0)} files, {_human(down.get('bytes', 0))}")
    for t in rep.get("transfers", []):
        pct = 100 * t["done"] / t["total"] if t["total"] else 100.0
        lines.append(
            f"  {'uploading  ' if t['direction'] == 'up' else 'downloading'} {t['path']}  "
            f"{_human(t['done'])} / {_human(t['total'])} ({pct:.0f}%)"
        )
    conflicts = rep.get("conflicts", {})
    if conflicts.get("count"):
        lines.append(f"  conflicts: {conflicts['count']}")
        lines.extend(
            f"    {c['path']} -> kept yours as {c['copy']}" for c in conflicts.get("recent", [])
        )
    for title, key in (("skipped", "skipped"), ("view-only edits kept here", "view_only")):
        items = rep.get(key, [])
        if items:
            lines.append(f"  {title}: {len(items)}")
            lines.extend(f"    {x['path']}: {x['reason']}" for x in items)
    excluded = rep.get("excluded", {})
    if excluded:
        lines.append(
            "  excluded on this device: "
            + ", ".join(f"{p} ({s})" for p, s in sorted(excluded.items()))
        )
    return "\n".join(lines)
