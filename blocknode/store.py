"""Chunk stores: a narrow Protocol, RocksDB (``rocksdict``) for real, a dict for unit tests.

A chunk is stored under its SHA-256. ``RocksChunkStore`` keeps three column families:

- ``default``: hash -> chunk bytes; values of 64 KiB and up live in blob files, so compaction
  rewrites keys, not chunk bytes.
- ``index``: hash -> size (8 bytes). ``contains``, ``scan`` and ``count`` read only this, never a
  blob.
- ``hints``: ``target_node NUL hash`` -> b"": hinted-handoff records, chunks held here on behalf
  of a node that was down when they were written.

Every write is one ``WriteBatch`` across the families, durable in the WAL before it returns.

rocksdict holds the GIL for the whole of every call, so a synced ``write`` would stall every
Python thread, the event loop included, for the length of the fsync. The store therefore
writes without ``sync`` and with ``no_slowdown`` (RocksDB hands the WAL record to the OS before
``Write`` returns; a write stall comes back at once instead of sleeping under the GIL and is
retried after a GIL-free sleep), then fsyncs the WAL files itself with ``os.fsync``, which
releases the GIL. The WAL lives in its own directory (``wal/``) so finding its files is cheap;
a WAL deleted meanwhile had its memtable flushed (and synced) already. Even so a ``Write``
can block under the GIL (page-cache throttling on a busy disk), which is why the node runs the
store in a child process (``blocknode.storeproc``). ``blocknode.asyncstore``
adds group commit on top.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from rocksdict import DBCompressionType, Options, Rdict, ReadOptions, WriteBatch, WriteOptions

from tessera.errors import Unavailable

log = logging.getLogger(__name__)

HASH_LEN = 32
MIN_BLOB_SIZE = 64 * 1024
WAL_DIR = "wal"
STALL_TIMEOUT = 60.0  # seconds a write may wait out a RocksDB write stall
_INDEX_CF = "index"
_HINTS_CF = "hints"


class StoreError(Unavailable):
    """The chunk store cannot be opened or written (disk full, locked, closed): UNAVAILABLE."""


@runtime_checkable
class ChunkStore(Protocol):
    """Content-addressed chunk bytes, keyed by SHA-256."""

    def get(self, chunk_hash: bytes) -> bytes | None:
        """The chunk's bytes as stored (not re-hashed), or None."""

    def put(self, chunk_hash: bytes, data: bytes) -> None:
        """Store (or overwrite) a chunk durably before returning."""

    def delete(self, chunk_hash: bytes) -> bool:
        """Remove a chunk; True if it was there."""

    def contains(self, chunk_hash: bytes) -> bool:
        """Whether the chunk is stored, without reading its bytes."""

    def scan(self, start: bytes = b"", end: bytes | None = None) -> Iterator[bytes]:
        """Stored hashes in ``[start, end)`` in byte order."""

    def count(self) -> int:
        """How many chunks are stored."""

    def close(self) -> None:
        """Release the store; further calls fail."""


@runtime_checkable
class BlockStore(ChunkStore, Protocol):
    """A chunk store with atomic batches and hinted-handoff records."""

    def write(
        self, puts: Sequence[tuple[bytes, bytes]], hints: Sequence[tuple[str, bytes]] = ()
    ) -> int:
        """Store chunks and hint records in one durable batch; returns how many chunks were new."""

    def delete_many(self, hashes: Sequence[bytes]) -> int:
        """Remove chunks in one durable batch; returns how many were there."""

    def hints(self, target: str | None = None) -> Iterator[tuple[str, bytes]]:
        """(target node, hash) hint records, all or for one target."""

    def delete_hint(self, target: str, chunk_hash: bytes) -> None:
        """Forget one hint (after delivery)."""

    def hint_count(self) -> int:
        """How many hint records are held."""


def _hint_key(target: str, chunk_hash: bytes) -> bytes:
    raw = target.encode()
    if not raw or b"\x00" in raw:
        raise ValueError(f"invalid hint target {target!r}")
    return raw + b"\x00" + chunk_hash


def _split_hint_key(key: bytes) -> tuple[str, bytes]:
    target, _, chunk_hash = key.partition(b"\x00")
    return target.decode(), chunk_hash


class RocksChunkStore:
    """The block node's RocksDB store: blob files for chunk bytes, every write synced.

    Args:
        path: The database directory (created if missing).
        min_blob_size: Values at least this large go to blob files.

    Raises:
        StoreError: The database cannot be opened (locked by another process, corrupt).
    """

    def __init__(self, path: str | Path, *, min_blob_size: int = MIN_BLOB_SIZE) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        data_opts = self._options()
        data_opts.set_enable_blob_files(True)
        data_opts.set_min_blob_size(min_blob_size)
        data_opts.set_blob_file_size(256 * 1024 * 1024)
        data_opts.set_blob_compression_type(DBCompressionType.none())
        data_opts.set_enable_blob_gc(True)
        data_opts.set_write_buffer_size(128 * 1024 * 1024)
        data_opts.set_max_write_buffer_number(4)
        data_opts.set_max_background_jobs(4)
        (self.path / WAL_DIR).mkdir(exist_ok=True)
        data_opts.set_wal_dir(str(self.path / WAL_DIR))
        try:
            self._db = Rdict(
                str(self.path),
                data_opts,
                column_families={_INDEX_CF: self._options(), _HINTS_CF: self._options()},
            )
        except Exception as e:  # rocksdict raises plain Exception
            raise StoreError(f"cannot open chunk store at {self.path}: {e}") from e
        self._index = self._db.get_column_family(_INDEX_CF)
        self._hints = self._db.get_column_family(_HINTS_CF)
        self._index_cf = self._db.get_column_family_handle(_INDEX_CF)
        self._hints_cf = self._db.get_column_family_handle(_HINTS_CF)
        self._write_opts = WriteOptions()
        self._write_opts.sync = False  # synced by _sync_wal, without the GIL
        self._write_opts.no_slowdown = True  # a stall returns at once, see _commit
        self._wal_dir = self.path / WAL_DIR
        self._wal_dir_fd = os.open(self._wal_dir, os.O_RDONLY | os.O_DIRECTORY)
        self._wal_files: set[str] = set()
        self._lock = threading.Lock()  # mutations: keeps the counts exact
        self._count = sum(1 for _ in self._index.keys())
        self._hint_count = sum(1 for _ in self._hints.keys())
        self._closed = False

    @staticmethod
    def _options() -> Options:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        return opts

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("chunk store is closed")

    # -- reads --------------------------------------------------------------------------------
    def get(self, chunk_hash: bytes) -> bytes | None:
        """The chunk's bytes as stored, or None."""
        self._check_open()
        return self._db.get(chunk_hash)

    def contains(self, chunk_hash: bytes) -> bool:
        """Whether the chunk is stored (reads the index only)."""
        self._check_open()
        return self._index.get(chunk_hash) is not None

    def scan(self, start: bytes = b"", end: bytes | None = None) -> Iterator[bytes]:
        """Stored hashes in ``[start, end)``."""
        self._check_open()
        opts = ReadOptions()
        if end is not None:
            opts.set_iterate_upper_bound(end)
        for key in self._index.keys(from_key=start, read_opt=opts):
            yield bytes(key)

    def count(self) -> int:
        """How many chunks are stored."""
        return self._count

    # -- writes -------------------------------------------------------------------------------
    def put(self, chunk_hash: bytes, data: bytes) -> None:
        """Store one chunk durably."""
        self.write([(chunk_hash, data)])

    def write(
        self, puts: Sequence[tuple[bytes, bytes]], hints: Sequence[tuple[str, bytes]] = ()
    ) -> int:
        """Store chunks (and hint records) in one synced batch; returns how many were new."""
        self._check_open()
        batch = WriteBatch(raw_mode=True)
        with self._lock:
            new_keys: set[bytes] = set()
            for chunk_hash, data in puts:
                batch.put(chunk_hash, data)
                batch.put(chunk_hash, len(data).to_bytes(8, "big"), self._index_cf)
                if chunk_hash not in new_keys and self._index.get(chunk_hash) is None:
                    new_keys.add(chunk_hash)
            new_hints = 0
            for target, chunk_hash in hints:
                key = _hint_key(target, chunk_hash)
                if self._hints.get(key) is None:
                    new_hints += 1
                batch.put(key, b"", self._hints_cf)
            self._commit(batch)
            self._count += len(new_keys)
            self._hint_count += new_hints
        return len(new_keys)

    def delete(self, chunk_hash: bytes) -> bool:
        """Remove one chunk; True if it was there."""
        return self.delete_many([chunk_hash]) == 1

    def delete_many(self, hashes: Sequence[bytes]) -> int:
        """Remove chunks in one synced batch; returns how many were there."""
        self._check_open()
        batch = WriteBatch(raw_mode=True)
        with self._lock:
            present = {h for h in hashes if self._index.get(h) is not None}
            for chunk_hash in present:
                batch.delete(chunk_hash)
                batch.delete(chunk_hash, self._index_cf)
            if present:
                self._commit(batch)
                self._count -= len(present)
        return len(present)

    def _commit(self, batch: WriteBatch) -> None:
        """Apply a batch and make it durable; the GIL is free while waiting on the disk."""
        delay, deadline = 0.001, time.monotonic() + STALL_TIMEOUT
        while True:
            try:
                self._db.write(batch, self._write_opts)
                break
            except Exception as e:
                if "Write stall" not in str(e) or time.monotonic() > deadline:
                    raise StoreError(f"chunk store write failed: {e}") from e
            time.sleep(delay)  # compaction or flush behind: wait without holding the GIL
            delay = min(delay * 2, 0.05)
        try:
            self._sync_wal()
        except OSError as e:
            raise StoreError(f"chunk store fsync failed: {e}") from e

    def _sync_wal(self) -> None:
        """fsync every WAL file (and the WAL directory when a file appeared)."""
        names = {n for n in os.listdir(self._wal_dir) if n.endswith(".log")}
        for name in sorted(names):
            try:
                fd = os.open(self._wal_dir / name, os.O_RDONLY)
            except FileNotFoundError:
                continue  # obsolete: its memtable was flushed and synced before it went
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if not names <= self._wal_files:
            os.fsync(self._wal_dir_fd)
        self._wal_files = names

    # -- hints --------------------------------------------------------------------------------
    def hints(self, target: str | None = None) -> Iterator[tuple[str, bytes]]:
        """(target, hash) hint records, all or for one target node."""
        self._check_open()
        opts = ReadOptions()
        start = b""
        if target is not None:
            start = _hint_key(target, b"")
            opts.set_iterate_upper_bound(target.encode() + b"\x01")
        for key in self._hints.keys(from_key=start, read_opt=opts):
            yield _split_hint_key(bytes(key))

    def delete_hint(self, target: str, chunk_hash: bytes) -> None:
        """Forget one hint record."""
        self._check_open()
        key = _hint_key(target, chunk_hash)
        batch = WriteBatch(raw_mode=True)
        with self._lock:
            if self._hints.get(key) is None:
                return
            batch.delete(key, self._hints_cf)
            self._commit(batch)
            self._hint_count -= 1

    def hint_count(self) -> int:
        """How many hint records are held."""
        return self._hint_count

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._index.close()
            self._hints.close()
            self._db.close()
            os.close(self._wal_dir_fd)
            # rocksdict releases the DB (and its LOCK file) only once every handle is gone.
            del self._index, self._hints, self._index_cf, self._hints_cf, self._db


class MemoryChunkStore:
    """A dict-backed BlockStore for unit tests and pure-logic fakes."""

    def __init__(self) -> None:
        self._chunks: dict[bytes, bytes] = {}
        self._hints: set[tuple[str, bytes]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("chunk store is closed")

    def get(self, chunk_hash: bytes) -> bytes | None:
        """The chunk's bytes, or None."""
        self._check_open()
        return self._chunks.get(chunk_hash)

    def contains(self, chunk_hash: bytes) -> bool:
        """Whether the chunk is stored."""
        self._check_open()
        return chunk_hash in self._chunks

    def scan(self, start: bytes = b"", end: bytes | None = None) -> Iterator[bytes]:
        """Stored hashes in ``[start, end)``."""
        self._check_open()
        with self._lock:
            keys = sorted(self._chunks)
        yield from (k for k in keys if k >= start and (end is None or k < end))

    def count(self) -> int:
        """How many chunks are stored."""
        return len(self._chunks)

    def put(self, chunk_hash: bytes, data: bytes) -> None:
        """Store one chunk."""
        self.write([(chunk_hash, data)])

    def write(
        self, puts: Sequence[tuple[bytes, bytes]], hints: Sequence[tuple[str, bytes]] = ()
    ) -> int:
        """Store chunks and hint records; returns how many chunks were new."""
        self._check_open()
        for target, chunk_hash in hints:
            _hint_key(target, chunk_hash)  # validates the target
        with self._lock:
            new = {h for h, _ in puts if h not in self._chunks}
            self._chunks.update((h, bytes(d)) for h, d in puts)
            self._hints.update(hints)
        return len(new)

    def delete(self, chunk_hash: bytes) -> bool:
        """Remove one chunk; True if it was there."""
        return self.delete_many([chunk_hash]) == 1

    def delete_many(self, hashes: Sequence[bytes]) -> int:
        """Remove chunks; returns how many were there."""
        self._check_open()
        with self._lock:
            return sum(1 for h in set(hashes) if self._chunks.pop(h, None) is not None)

    def hints(self, target: str | None = None) -> Iterator[tuple[str, bytes]]:
        """(target, hash) hint records in key order."""
        self._check_open()
        with self._lock:
            records = sorted(self._hints, key=lambda r: _hint_key(*r))
        yield from (r for r in records if target is None or r[0] == target)

    def delete_hint(self, target: str, chunk_hash: bytes) -> None:
        """Forget one hint record."""
        with self._lock:
            self._hints.discard((target, chunk_hash))

    def hint_count(self) -> int:
        """How many hint records are held."""
        return len(self._hints)

    def close(self) -> None:
        """Mark closed."""
        self._closed = True


def verify(chunk_hash: bytes, data: bytes) -> bool:
    """Whether ``data`` hashes to ``chunk_hash`` (SHA-256; releases the GIL for large data)."""
    return hashlib.sha256(data).digest() == chunk_hash
