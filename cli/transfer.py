"""``tessera put`` and ``tessera get``: files and whole folders, ``-`` for standard input and
output, progress bars for transfers over a few MB, resumable uploads.

- ``put LOCAL REMOTE``: a file, or a folder with everything in it (symlinks are skipped and
  said so). REMOTE ending in ``/`` puts LOCAL inside it under its own name. ``-`` reads
  standard input (REMOTE then names the file). An interrupted put (Ctrl-C stops after the
  chunks in flight; a second Ctrl-C at once) resumes when run again: only chunks the cluster
  does not hold yet are sent, including chunks of the interrupted attempt that were never
  committed (``cli.resume``).
- ``get REMOTE LOCAL``: a file, or a folder with everything in it. An existing LOCAL file is
  never overwritten without ``--force``; an existing folder LOCAL receives REMOTE under its own
  name. ``-`` writes a file to standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from cli import resume
from cli.common import CliError, _human, _remote, _with_client
from client import Client, FileVersion, SyncError

PROGRESS_MIN_BYTES = 4 * 1024 * 1024  # smaller transfers finish before a bar would help


@dataclass
class _Bar:
    """A rich progress bar on stderr, or nothing."""

    progress: object = None
    task: object = None

    def advance(self, nbytes: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, nbytes)  # type: ignore[attr-defined]

    def describe(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=text)  # type: ignore[attr-defined]


@contextlib.contextmanager
def _bar(args: argparse.Namespace, total: int, what: str) -> Iterator[_Bar]:
    wanted = args.progress if args.progress is not None else sys.stderr.isatty()
    if not wanted or total < PROGRESS_MIN_BYTES:
        yield _Bar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with progress:
        yield _Bar(progress, progress.add_task(what, total=total))


# -- put ----------------------------------------------------------------------------------------
def _walk(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(files, folders, skipped) under ``root``, sorted; symlinks and special files skipped."""
    files: list[Path] = []
    folders: list[Path] = []
    skipped: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for d in sorted(dirnames):
            (skipped if (base / d).is_symlink() else folders).append(base / d)
        dirnames[:] = sorted(d for d in dirnames if not (base / d).is_symlink())
        for f in sorted(filenames):
            p = base / f
            (files if p.is_file() and not p.is_symlink() else skipped).append(p)
    return files, folders, skipped


class _Stopper:
    """Ctrl-C during a put: the first stops after the chunks in flight, the second at once."""

    def __init__(self) -> None:
        self.journals: list[resume.Journal] = []
        self.presses = 0
        self._task: asyncio.Task[object] | None = None

    def __enter__(self) -> _Stopper:
        self._task = asyncio.current_task()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._pressed)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def _pressed(self) -> None:
        self.presses += 1
        if self.presses == 1:
            print(
                "\nstopping after the chunks in flight (Ctrl-C again to stop at once) ...",
                file=sys.stderr,
                flush=True,
            )
            for j in self.journals:
                j.stop_requested = True
        elif self._task is not None:
            self._task.cancel()


async def _put_one(
    client: Client, local: Path, remote: str, bar: _Bar, stopper: _Stopper
) -> FileVersion:
    path = resume.journal_path(client.target, client.user_id, local, remote)
    journal = resume.Journal(path, bar.advance)
    journal.stop_requested = stopper.presses > 0
    stopper.journals.append(journal)
    bar.describe(local.name)
    try:
        version = await client.put_file(local, remote, resume=journal)
    finally:
        stopper.journals.remove(journal)
    journal.done()
    s = version.stats
    resumed = f", resumed: {journal.resumed} chunks already stored" if journal.resumed else ""
    print(
        f"{remote}  {_human(version.entry.size)}  revision {version.entry.revision}  "
        f"({s.chunks_sent}/{s.chunks} chunks sent, {_human(s.bytes_sent)}{resumed})",
        flush=True,
    )
    return version


def _spool_stdin() -> Path:
    """Standard input copied to a private temporary file (a put needs to read it twice)."""
    fd, name = tempfile.mkstemp(prefix="tessera-stdin-")
    with os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
    return Path(name)


async def _put(client: Client, args: argparse.Namespace) -> int:
    into = args.remote.endswith("/") or args.remote in ("", "/")
    spooled: Path | None = None
    if args.local == "-":
        if into:
            raise CliError("with `-` (standard input), REMOTE must name the file, not a folder")
        spooled = local = _spool_stdin()
    else:
        local = Path(args.local)
        if not local.exists() and not local.is_symlink():
            raise CliError(f"{local}: no such file or folder")
    base = args.remote.rstrip("/") + "/" + local.name if into else args.remote
    base = _remote(base)
    try:
        if local.is_dir():
            files, folders, skipped = _walk(local)
            for p in skipped:
                print(f"skipped {p} (a symlink or special file)", file=sys.stderr)
            todo = [(p, f"{base}/{p.relative_to(local).as_posix()}") for p in files]
        elif local.is_file():
            folders, todo = [], [(local, base)]
        else:
            raise CliError(f"{local}: not a regular file or folder")
        total = sum(p.stat().st_size for p, _ in todo)
        began = time.perf_counter()
        with _Stopper() as stopper, _bar(args, total, local.name) as bar:
            try:
                for p, remote in todo:
                    await _put_one(client, p, _remote(remote), bar, stopper)
                for d in folders:  # empty ones too (the others exist by now)
                    await _make_folder(client, f"{base}/{d.relative_to(local).as_posix()}")
            except (resume.Interrupted, asyncio.CancelledError):
                print(
                    "tessera: interrupted; what was sent is kept: run the same command again "
                    "to resume (only the chunks still missing are sent)",
                    file=sys.stderr,
                )
                return 130
        if local.is_dir():
            print(f"{len(todo)} files, {_human(total)} in {time.perf_counter() - began:.2f}s")
        return 0
    except OSError as e:
        raise CliError(f"cannot read {e.filename or local}: {e.strerror or e}") from None
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)


async def _make_folder(client: Client, path: str) -> None:
    try:
        await client.make_folder(_remote(path))
    except SyncError as e:
        if e.status is not grpc.StatusCode.ALREADY_EXISTS:
            raise


# -- get ----------------------------------------------------------------------------------------
async def _remote_files(client: Client, remote: str) -> list[tuple[str, int, str]]:
    """(remote path, size, path relative to ``remote``) of every file under a folder."""
    out: list[tuple[str, int, str]] = []
    folders = [(remote, "")]
    while folders:
        path, rel = folders.pop()
        for e in sorted(await client.list(path), key=lambda e: e.name):
            child, child_rel = f"{path}/{e.name}" if path else e.name, f"{rel}{e.name}"
            if e.is_folder:
                folders.append((child, child_rel + "/"))
            else:
                out.append((child, e.size, child_rel))
    return out


def _probe(check: Callable[[], bool]) -> bool:
    """A local path check; a path the file system cannot even look up (a name too long) is
    "not there" here, and its write fails later with the precise reason."""
    try:
        return check()
    except OSError:
        return False


async def _get(client: Client, args: argparse.Namespace) -> int:
    remote = _remote(args.remote)
    entry = await client.stat(remote)
    if args.local == "-":
        if entry.is_folder:
            raise CliError(f"{remote} is a folder: `-` (standard output) takes one file")
        return await _get_to_stdout(client, remote, args)
    if entry.is_folder and args.revision:
        raise CliError(f"{remote} is a folder: --revision takes one file")
    local = Path(args.local)
    if _probe(local.is_dir):
        local = local / entry.name
    if entry.is_folder:
        if _probe(local.is_file):
            raise CliError(f"{local} is a file: cannot download the folder {remote} there")
        files = [(r, size, local / rel) for r, size, rel in await _remote_files(client, remote)]
    else:
        files = [(remote, entry.size, local)]
    clash = [dest for _, _, dest in files if _probe(dest.exists) or _probe(dest.is_symlink)]
    if clash and not args.force:
        more = f" and {len(clash) - 1} more" if len(clash) > 1 else ""
        raise CliError(f"{clash[0]} exists{more}: not overwritten (use --force to replace)")
    if entry.is_folder:
        try:
            local.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CliError(f"cannot create {local}: {e.strerror or e}") from None
    total = sum(size for _, size, _ in files)
    with _bar(args, total, entry.name) as bar:
        for r, _size, dest in files:
            bar.describe(dest.name)
            try:
                got = await client.get_file(
                    r, dest, revision=args.revision or "", progress=bar.advance
                )
            except OSError as e:
                raise CliError(f"cannot write {dest}: {e.strerror or e}") from None
            if not entry.is_folder:
                print(f"{dest}  {_human(got.size)}  revision {got.revision}")
    if entry.is_folder:
        print(f"{local}/  {len(files)} files, {_human(total)}")
    return 0


async def _get_to_stdout(client: Client, remote: str, args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="tessera-get-") as tmp:
        part = Path(tmp) / "file"
        await client.get_file(remote, part, revision=args.revision or "")
        with part.open("rb") as f:
            try:
                shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
                sys.stdout.buffer.flush()
            except BrokenPipeError:  # `| head`: the reader had enough
                with contextlib.suppress(OSError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def add_transfer_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``put`` and ``get`` on the ``tessera`` parser."""
    put = sub.add_parser(
        "put",
        help="upload a file or a folder (resumes an interrupted upload)",
        description="Upload LOCAL (a file, a folder with everything in it, or - for standard "
        "input) to REMOTE; each file's executable bit is part of its new revision. Run again "
        "after an interruption: only chunks the cluster lacks are sent, including those of the "
        "interrupted attempt.",
    )
    put.add_argument("local", help="a file, a folder, or - for standard input")
    put.add_argument("remote", help="remote path (ending in / puts LOCAL inside, keeping its name)")
    get = sub.add_parser(
        "get",
        help="download a file or a folder",
        description="Download REMOTE (a file or a folder with everything in it) to LOCAL, or a "
        "file to standard output with -. Existing files are not overwritten without --force. "
        "Files get mode 0666 less your umask, plus execute (where the umask allows) when the "
        "revision is executable.",
    )
    get.add_argument("remote")
    get.add_argument("local", help="a path, an existing folder to download into, or -")
    get.add_argument("--force", action="store_true", help="overwrite existing local files")
    get.add_argument(
        "--revision", help="a revision id from `tessera history` (default: the newest)"
    )
    for p in (put, get):
        p.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"show a progress bar for transfers over {_human(PROGRESS_MIN_BYTES)} "
            "[default: on a terminal]",
        )
    put.set_defaults(func=_with_client(_put))
    get.set_defaults(func=_with_client(_get))
