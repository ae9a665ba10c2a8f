"""Resumable uploads for ``tessera put``: the receipts of chunks already stored, kept on disk.

While a put runs, the receipt of every chunk the cluster stored is appended to a journal in
``$XDG_CACHE_HOME/tessera/uploads/`` named after what is uploaded where (endpoint, user,
local file with its size and mtime, remote path). A put of the same file that was interrupted
(Ctrl-C, a crash, a lost network) finds the journal and sends only the chunks it does not
name: the metanode accepts those receipts at commit as proof the chunks are stored, although
nothing was committed yet. The journal is removed once the commit succeeds; receipts about to
expire are not reused (their chunks are sent again).
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

from client import UploadHooks
from tessera.pb import common_pb2

EXPIRY_MARGIN = 600  # seconds a reused receipt must still be valid for


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tessera/uploads`` (``~/.cache/tessera/uploads`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tessera" / "uploads"


def journal_path(endpoint: str, user: str, local: Path, remote: str) -> Path:
    """Where the journal of this upload lives (a changed file gets another journal)."""
    st = local.stat()
    key = "\0".join(
        (endpoint, user, str(local.resolve()), str(st.st_size), str(st.st_mtime_ns), remote)
    )
    return cache_dir() / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".receipts")


def load(path: Path) -> dict[bytes, common_pb2.Receipt]:
    """The receipts a journal holds that are still valid (a torn last line is ignored)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    out: dict[bytes, common_pb2.Receipt] = {}
    deadline = time.time() + EXPIRY_MARGIN
    for line in lines:
        try:
            r = common_pb2.Receipt.FromString(base64.b64decode(line, validate=True))
        except Exception:  # noqa: BLE001 - a torn or foreign line: skip it
            continue
        if r.expires_at > deadline and len(r.hash) == 32:
            out[bytes(r.hash)] = r
    return out


class Journal(UploadHooks):
    """``put_file``'s resume hooks backed by a journal file; ``on_progress`` gets byte counts."""

    def __init__(self, path: Path, on_progress: object = None) -> None:
        super().__init__(load(path))
        self.path = path
        self.resumed = len(self.known)
        self.saved = 0
        self._on_progress = on_progress
        self.stop_requested = False

    def sent(self, receipts: list[common_pb2.Receipt]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(
                "".join(base64.b64encode(r.SerializeToString()).decode() + "\n" for r in receipts)
            )
            f.flush()
            os.fsync(f.fileno())
        self.saved += len(receipts)

    def progressed(self, nbytes: int) -> None:
        if callable(self._on_progress):
            self._on_progress(nbytes)

    def stopping(self) -> bool:
        return self.stop_requested  # Ctrl-C: read no further; what is in flight is journalled

    def stopped(self) -> None:
        raise Interrupted

    def done(self) -> None:
        """The upload committed: the journal is no longer needed."""
        self.path.unlink(missing_ok=True)


class Interrupted(Exception):
    """A put stopped between batches at the user's request; its journal lets it resume."""
