"""What the daemon tells its user: a live line on a terminal (``rich``), quiet logs otherwise.

On a terminal: files and bytes to go, transfer rate, conflicts, online/offline. Not on a
terminal: one structured log line per finished file, conflict and state change, nothing else.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

log = logging.getLogger("tessera.sync")


class Progress:
    """Counters the daemon updates; subclasses render them."""

    def __init__(self) -> None:
        self.files_to_go = 0
        self.bytes_to_go = 0
        self.conflicts = 0
        self.done_files = 0
        self.state = "starting"
        self._samples: deque[tuple[float, int]] = deque(maxlen=64)

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
        log.info("%s %s", what, path, extra={"size": size})

    def conflict(self, path: str, copy: str) -> None:
        """Both sides changed ``path``: the local version is kept as ``copy``."""
        self.conflicts += 1
        log.warning("conflict: %s changed elsewhere too; your version is kept as %s", path, copy)

    def set_state(self, state: str, detail: str = "") -> None:
        """online, offline (retrying), synced, stopped..."""
        if state != self.state:
            self.state = state
            log.log(logging.DEBUG if state in ("syncing", "synced") else logging.INFO, "%s%s", state, f": {detail}" if detail else "")

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
        self._console = Console(stderr=True)
        self._live: Any = Live(self._render(), console=self._console, refresh_per_second=4, transient=False,
                               get_renderable=self._render)

    def _render(self) -> Any:
        from rich.text import Text

        colour = {"synced": "green", "syncing": "cyan", "offline": "yellow", "stopped": "red"}.get(self.state, "white")
        t = Text()
        t.append(f"{self.state:<9}", style=f"bold {colour}")
        t.append(f" {self._folder}  ")
        t.append(f"{self.files_to_go} files / {_human(self.bytes_to_go)} to go  ")
        t.append(f"{_human(self.rate)}/s  ")
        t.append(f"{self.done_files} done")
        if self.conflicts:
            t.append(f"  {self.conflicts} conflicts", style="bold yellow")
        return t

    def file_done(self, path: str, size: int, what: str) -> None:  # noqa: D102
        self.done_files += 1
        log.debug("%s %s", what, path)

    def conflict(self, path: str, copy: str) -> None:  # noqa: D102
        self.conflicts += 1
        self._console.print(f"[yellow]conflict[/]: {path} changed elsewhere too; yours is kept as {copy}")

    def set_state(self, state: str, detail: str = "") -> None:  # noqa: D102
        if state != self.state and detail:
            self._console.print(f"{state}: {detail}")
        self.state = state

    def start(self) -> None:  # noqa: D102
        self._live.start()

    def stop(self) -> None:  # noqa: D102
        self._live.refresh()
        self._live.stop()
