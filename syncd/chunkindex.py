"""The daemon's chunk index and receipts: where each chunk of a synced file lies on disk (so
downloads reuse local bytes) and the receipts of chunks uploaded but not yet committed (so
an interrupted upload resumes). Mixed into ``LocalDB``."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any


class ChunkIndex:
    """The ``chunks`` and ``receipts`` tables of ``LocalDB``."""

    _all: Callable[..., list[Any]]
    tx: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def set_chunks(self, path: str, chunks: list[tuple[int, bytes, int]]) -> None:
        """Record where a file's chunks are: (offset, hash, size) each."""
        from syncd.localdb import key_of  # LocalDB's module mixes this class in

        key = key_of(path)
        with self.tx() as db:
            db.execute("DELETE FROM chunks WHERE key = ?", (key,))
            db.executemany(
                "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?)",
                [(key, o, h, s) for o, h, s in chunks],
            )

    def find_chunk(self, chunk_hash: bytes) -> list[tuple[str, int, int]]:
        """Where a chunk may be on disk: (path, offset, size) candidates (verify before use)."""
        return self._all(
            "SELECT l.path, c.offset, c.size FROM chunks c JOIN local l ON l.key = c.key WHERE c.hash = ? LIMIT 4",
            (chunk_hash,),
        )

    def save_receipts(self, receipts: list[tuple[bytes, int, bytes, int]]) -> None:
        """Keep receipts of uploaded chunks: (hash, size, serialized receipt, expires_at)."""
        with self.tx() as db:
            db.executemany("INSERT OR REPLACE INTO receipts VALUES (?, ?, ?, ?)", receipts)

    def receipts(self, hashes: list[bytes]) -> dict[bytes, bytes]:
        """Serialized receipts still valid for an hour or more, by hash."""
        out: dict[bytes, bytes] = {}
        limit = int(time.time()) + 3600
        for i in range(0, len(hashes), 500):
            part = hashes[i : i + 500]
            marks = ",".join("?" * len(part))
            for h, r in self._all(
                f"SELECT hash, receipt FROM receipts WHERE expires_at > ? AND hash IN ({marks})",
                (limit, *part),
            ):
                out[bytes(h)] = bytes(r)
        return out

    def drop_receipts(self, hashes: list[bytes]) -> None:
        """Forget receipts once their chunks are committed (the user owns them now)."""
        with self.tx() as db:
            db.executemany("DELETE FROM receipts WHERE hash = ?", [(h,) for h in hashes])
            db.execute("DELETE FROM receipts WHERE expires_at < ?", (int(time.time()),))

    def receipt_count(self) -> int:
        """How many uncommitted uploaded chunks this device holds receipts for."""
        return int(self._all("SELECT COUNT(*) FROM receipts")[0][0])
