"""Filesystem events (the ``watchdog`` package) turned into dirty paths for the indexer.

The observer thread only records relative paths and wakes the daemon's event loop; the
indexer decides what changed. A file seen closed after a write (inotify's IN_CLOSE_WRITE on
Linux) counts as finished at once; otherwise the indexer waits for it to settle.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers import Observer

log = logging.getLogger(__name__)


class Watcher(FileSystemEventHandler):
    """Collects dirty relative paths from a recursive watch of ``root``."""

    def __init__(
        self, root: Path, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]
    ) -> None:
        self.root = str(root.resolve())
        self._loop = loop
        self._wake = wake
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._closed: dict[str, int] = {}  # rel path -> mtime_ns seen at close
        self._observer: Observer | None = None  # type: ignore[valid-type]

    def start(self) -> None:
        """Start watching (recursive); failures leave the periodic rescan as the safety net."""
        try:
            observer = Observer()
            observer.schedule(self, self.root, recursive=True)
            observer.daemon = True
            observer.start()
            self._observer = observer
        except OSError as e:
            log.warning("cannot watch %s (%s); relying on periodic rescans", self.root, e)

    def stop(self) -> None:
        """Stop the observer thread."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def _rel(self, path: str | bytes) -> str | None:
        p = os.fsdecode(path)
        if p == self.root:
            return ""
        if not p.startswith(self.root + os.sep):
            return None
        return p[len(self.root) + 1 :].replace(os.sep, "/")

    def on_any_event(self, event: FileSystemEvent) -> None:
        """Record the paths an event touches (called on the observer thread)."""
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path]
        if isinstance(event, FileSystemMovedEvent):
            paths.append(event.dest_path)
        rels = [r for r in (self._rel(p) for p in paths) if r is not None]
        if not rels:
            return
        with self._lock:
            for rel in rels:
                if isinstance(event, FileClosedEvent):
                    try:
                        self._closed[rel] = os.lstat(os.path.join(self.root, rel)).st_mtime_ns
                    except OSError:
                        pass
                self._dirty.add(rel)
        self._loop.call_soon_threadsafe(self._wake)

    def take(self) -> set[str]:
        """The paths dirtied since the last call."""
        with self._lock:
            out, self._dirty = self._dirty, set()
            if len(self._closed) > 10000:
                self._closed.clear()
            return out

    @property
    def pending(self) -> set[str]:
        """The paths dirtied and not taken yet."""
        with self._lock:
            return set(self._dirty)

    def closed_after(self, rel: str, mtime_ns: int) -> bool:
        """Was the file seen closed with this mtime (so its writer is done)?"""
        with self._lock:
            return self._closed.get(rel) == mtime_ns

    @property
    def alive(self) -> bool:
        """Is the observer running?"""
        return self._observer is not None and self._observer.is_alive()
