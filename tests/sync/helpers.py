"""Devices for sync tests: daemons on separate folders against the real local cluster."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
import time
from pathlib import Path

from syncd.daemon import Daemon, DaemonConfig
from syncd.indexer import IGNORE_FILE


class Device:
    """One daemon (an asyncio task in the test's loop) on its own folder and state."""

    def __init__(
        self, name: str, base: Path, endpoint: str, token: str, **overrides: object
    ) -> None:
        self.name = name
        self.folder = base / name / "folder"
        self.state = base / name / "state"
        self.folder.mkdir(parents=True, exist_ok=True)
        opts: dict[str, object] = {
            "settle": 0.2,
            "backoff_base": 0.05,
            "backoff_cap": 0.5,
            "rescan_interval": 30.0,
        }
        opts.update(overrides)
        self.cfg = DaemonConfig(
            folder=self.folder,
            state_dir=self.state,
            endpoint=endpoint,
            token=token,
            device_name=name,
            **opts,
        )  # type: ignore[arg-type]
        self.daemon: Daemon | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Device:
        """Start the daemon."""
        self.daemon = Daemon(self.cfg)
        self.task = asyncio.create_task(self.daemon.run())
        return self

    async def stop(self) -> None:
        """Stop it cleanly."""
        if self.daemon is not None and self.task is not None:
            self.daemon.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 30)
        self.daemon = self.task = None

    async def crash(self) -> None:
        """Cancel it abruptly (no clean shutdown of its work in progress)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.task, 30)
        self.daemon = self.task = None

    def p(self, rel: str) -> Path:
        """A path inside the folder."""
        return self.folder / rel

    def write(self, rel: str, data: bytes) -> None:
        """Write a file (creating folders)."""
        path = self.p(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    @property
    def idle(self) -> bool:
        """Running and nothing left to do."""
        return (
            self.daemon is not None
            and self.daemon.idle
            and self.task is not None
            and not self.task.done()
        )

    def counters(self) -> dict[str, int]:
        """The daemon's persistent counters."""
        assert self.daemon is not None
        return self.daemon.db.counters()


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 (or "dir") of everything synced in a folder."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        rel_dir = os.path.relpath(dirpath, folder)
        dirnames[:] = [d for d in dirnames if d != ".tessera"]
        for d in dirnames:
            out[os.path.normpath(os.path.join(rel_dir, d))] = "dir"
        for f in filenames:
            if f.endswith(".tessera-part") or f == IGNORE_FILE:
                continue
            full = os.path.join(dirpath, f)
            if os.path.islink(full):
                continue
            with open(full, "rb") as fh:
                out[os.path.normpath(os.path.join(rel_dir, f))] = hashlib.sha256(
                    fh.read()
                ).hexdigest()
    return out


async def converge(
    devices: list[Device], timeout: float = 60.0, *, stable: float = 0.3
) -> dict[str, str]:
    """Wait until every device is idle and all folders are identical; returns the common tree."""
    deadline = time.monotonic() + timeout
    last: list[dict[str, str]] = []
    since = 0.0
    while time.monotonic() < deadline:
        for d in devices:
            if d.task is not None and d.task.done():
                d.task.result()  # surface a daemon crash
        trees = [tree(d.folder) for d in devices]
        same = all(t == trees[0] for t in trees)
        if same and all(d.idle for d in devices):
            if trees == last and time.monotonic() - since >= stable:
                return trees[0]
            if trees != last:
                since = time.monotonic()
        last = trees
        await asyncio.sleep(0.05)
    detail = "\n".join(
        f"{d.name}: {sorted(t.items())} status={d.daemon.status() if d.daemon else None}"
        for d, t in zip(devices, last, strict=False)
    )
    raise AssertionError(f"devices did not converge in {timeout}s:\n{detail}")


async def run_cli(*args: str) -> tuple[int, str]:
    """Run ``tessera ARGS`` without blocking the loop the daemons run in: (exit code, output)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()
