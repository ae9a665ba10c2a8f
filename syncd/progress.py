"""What the daemon tells its user: a live line on a terminal (``rich``), quiet logs otherwise.

On a terminal: the state ("up to date" only when nothing is queued, in flight or waiting
remotely: the daemon computes it live), files and bytes to go each way, the current transfers
with their progress, rate, conflicts. Not on a terminal: one structured log line per finished
file, conflict and state change, nothing else. ``tessera sync status`` shows the same report.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("tessera.sync")


@dataclass
class Transfer:
    """One file going up or down right now."""

    path: str
    direction: str  # "up" or "down"
    total: int
    done: int = 0


class Progress:
    """Counters the daemon updates; subclasses render them."""

    def __init__(self) -> None:
        self.files_to_go = 0
        self.bytes_to_go = 0
        self.conflicts = 0
        self.recent_conflicts: deque[tuple[str, str]] = deque(maxlen=100)
        self.done_files = 0
        self.state = "starting"
        self.transfers: dict[tuple[str, str], Transfer] = {}
        self.report: Callable[[], dict[str, Any]] | None = None  # the daemon's live report
        self.on_done: Callable[[str], None] | None = None  # a path synced
        self._samples: deque[tuple[float, int]] = deque(maxlen=64)

    # -- per-file progress of large transfers --------------------------------------------
    def begin(self, path: str, direction: str, total: int) -> None:
        """A file starts going ``direction`` ("up"/"down")."""
        self.transfers[(direction, path)] = Transfer(path, direction, total)

    def advance(self, path: str, direction: str, n: int) -> None:
        """``n`` more bytes of the file were handled (sent, found on the cluster, written)."""
        t = self.transfers.get((direction, path))
        if t is not None:
            t.done = min(t.total, t.done + n)

    def end(self, path: str, direction: str) -> None:
        """The file's transfer finished or stopped."""
        self.transfers.pop((direction, path), None)

    def queue(self, files: int, bytes_: int) -> None:
        """What is left to do."""
        self.files_to_go, self.bytes_to_go = files, bytes_

    def add_bytes(self, n: int) -> None:
        """Bytes moved over the network just now."""
        self._samples.append((time.monotonic(), n))

    @property
    def rate(self) -> float:
        """Bytes per second over the last few seconds."""
        now = time.monotonic()
        recent = [(t, n) for t, n in self._samples if now - t < 5]
        if not recent:
            return 0.0
        span = max(now - recent[0][0], 0.5)
        return sum(n for _, n in recent) / span

    def file_done(self, path: str, size: int, what: str) -> None:
        """A file went up, came down, moved or was deleted."""
        self.done_files += 1
        if self.on_done is not None:
            self.on_done(path)
        log.info("%s %s", what, path, extra={"size": size})

    def conflict(self, path: str, copy: str) -> None:
        """Both sides changed ``path``: the local version is kept as ``copy``."""
        self.conflicts += 1
        self.recent_conflicts.append((path, copy))
        log.warning("conflict: %s changed elsewhere too; your version is kept as %s", path, copy)

    def set_state(self, state: str, detail: str = "") -> None:
        """online, offline (retrying), synced, stopped..."""
        if state != self.state:
            self.state = state
            log.log(
                logging.DEBUG if state in ("syncing", "up to date") else logging.INFO,
                "%s%s",
                state,
                f": {detail}" if detail else "",
            )

    def start(self) -> None:
        """Begin rendering."""

    def stop(self) -> None:
        """Stop rendering."""


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} B"


class RichProgress(Progress):
    """A live status line on a terminal."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        from rich.console import Console
        from rich.live import Live

        self._folder = folder
        self._last_report: dict[str, Any] = {}
        self._console = Console(stderr=True)
        self._live: Any = Live(
            self._render(),
            console=self._console,
            refresh_per_second=4,
            transient=False,
            get_renderable=self._render,
        )

    def _render(self) -> Any:
        from rich.text import Text

        try:  # rich renders on its own thread: the daemon's state may change meanwhile
            rep = self.report() if self.report is not None else {}
            self._last_report = rep
        except Exception:  # noqa: BLE001 - keep showing the last good report
            rep = self._last_report
        state = str(rep.get("state", self.state))
        colour = {
            "up to date": "green",
            "syncing": "cyan",
            "offline": "yellow",
            "paused": "yellow",
            "stopped": "red",
        }.get(state, "white")
        t = Text()
        t.append(f"{state:<10}", style=f"bold {colour}")
        t.append(f" {self._folder}  ")
        up, down = rep.get("up", {}), rep.get("down", {})
        if up or down:
            t.append(
                f"↑ {up.get('files', 0)} files / {_human(up.get('bytes', 0))}  "
                f"↓ {down.get('files', 0)} files / {_human(down.get('bytes', 0))} to go  "
            )
        else:
            t.append(f"{self.files_to_go} files / {_human(self.bytes_to_go)} to go  ")
        t.append(f"{_human(self.rate)}/s  ")
        t.append(f"{self.done_files} done")
        if self.conflicts:
            t.append(f"  {self.conflicts} conflicts", style="bold yellow")
        for tr in list(self.transfers.values())[:3]:
            pct = 100 * tr.done / tr.total if tr.total else 100
            t.append(
                f"\n  {'↑' if tr.direction == 'up' else '↓'} {tr.path}  {_human(tr.done)} / {_human(tr.total)} ({pct:.0f}%)"
            )
        return t

    def file_done(self, path: str, size: int, what: str) -> None:  # noqa: D102
        self.done_files += 1
        if self.on_done is not None:
            self.on_done(path)
        log.debug("%s %s", what, path)

    def conflict(self, path: str, copy: str) -> None:  # noqa: D102
        self.conflicts += 1
        self.recent_conflicts.append((path, copy))
        self._console.print(
            f"[yellow]conflict[/]: {path} changed elsewhere too; yours is kept as {copy}"
        )

    def set_state(self, state: str, detail: str = "") -> None:  # noqa: D102
        if state != self.state and detail:
            self._console.print(f"{state}: {detail}")
        self.state = state

    def start(self) -> None:  # noqa: D102
        self._live.start()

    def stop(self) -> None:  # noqa: D102
        self._live.refresh()
        self._live.stop()
