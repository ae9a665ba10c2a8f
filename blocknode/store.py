"""Chunk stores: a narrow Protocol, the RocksDB store of earlier versions, a dict for tests.

The node's store is ``blocknode.segstore.SegmentChunkStore`` (segment files, RocksDB as the
index). ``RocksChunkStore`` below is what earlier versions used; a node opening a data directory
of that kind copies it into segments (``blocknode.app.open_store``).

A chunk is stored under its SHA-256. ``RocksChunkStore`` keeps four column families:

- ``default``: hash -> chunk bytes; values of 64 KiB and up live in blob files, so compaction
  rewrites keys, not chunk bytes.
- ``index``: hash -> size (8 bytes). ``contains``, ``scan`` and ``count`` read only this, never a
  blob.
- ``hints``: ``target_node NUL hash`` -> b"": hinted-handoff records, chunks held here on behalf
  of a node that was down when they were written.
- ``hint_index``: ``hash target_node`` -> b"": the same records by chunk, so that a handoff copy
  is dropped only when no other hint still needs it.

Every write is one ``WriteBatch`` across the families, durable before it returns: RocksDB syncs
the WAL itself (``WriteOptions.sync``). rocksdict holds the GIL through the call, fsync
included (earlier versions ran it in a child process for that reason).
Writes use ``no_slowdown``: a RocksDB write stall comes back at once and is retried after a
sleep that releases the GIL.

A copy RocksDB finds corrupt (a blob record failing its checksum) raises ``ChunkCorrupt``; a
copy corrupted in a way RocksDB cannot see comes back as stored and fails the caller's re-hash.
Either way the node repairs it from another replica by writing the chunk again.
"""

from __future__ import annotations

import hashlib
import logging
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
_HINT_INDEX_CF = "hint_index"


class StoreError(Unavailable):
    """The chunk store cannot be opened or written (disk full, locked, closed): UNAVAILABLE."""


class ChunkCorrupt(StoreError):
    """The stored copy of a chunk failed RocksDB's own checksum: it is there but unreadable."""


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

    def finish_hints(self, target: str, hashes: Sequence[bytes]) -> int:
        """Forget the hint records of ``target`` for these chunks; how many there were."""

    def drop_unhinted(self, hashes: Sequence[bytes]) -> list[bytes]:
        """Delete the chunks no hint record names, in one durable batch; which were deleted."""


def _hint_key(target: str, chunk_hash: bytes) -> bytes:
    raw = target.encode()
    if not raw or b"\x00" in raw:
        raise ValueError(f"invalid hint target {target!r}")
    return raw + b"\x00" + chunk_hash


def _split_hint_key(key: bytes) -> tuple[str, bytes]:
    target, _, chunk_hash = key.partition(b"\x00")
    return target.decode(), chunk_hash


def _hint_index_key(target: str, chunk_hash: bytes) -> bytes:
    return chunk_hash + target.encode()


def scan_keys(table: Rdict, start: bytes, end: bytes | None) -> Iterator[bytes]:
    """Keys of a RocksDB table (or column family) in ``[start, end)``, in byte order."""
    opts = ReadOptions()
    if end is not None:
        opts.set_iterate_upper_bound(end)
    for key in table.keys(from_key=start, read_opt=opts):
        yield bytes(key)


def hint_records(hints: Rdict, target: str | None) -> Iterator[tuple[str, bytes]]:
    """(target, hash) of the records of a hints column family, all or for one target."""
    start, end = (
        (b"", None) if target is None else (_hint_key(target, b""), target.encode() + b"\x01")
    )
    for key in scan_keys(hints, start, end):
        yield _split_hint_key(key)


def is_hinted(hint_index: Rdict, chunk_hash: bytes) -> bool:
    """Whether a hint_index column family names this chunk."""
    for key in hint_index.keys(from_key=chunk_hash):
        return bytes(key).startswith(chunk_hash)
    return False


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
        families = {name: self._options() for name in (_INDEX_CF, _HINTS_CF, _HINT_INDEX_CF)}
        try:
            self._db = Rdict(str(self.path), data_opts, column_families=families)
        except Exception as e:  # rocksdict raises plain Exception
            raise StoreError(f"cannot open chunk store at {self.path}: {e}") from e
        self._index = self._db.get_column_family(_INDEX_CF)
        self._hints = self._db.get_column_family(_HINTS_CF)
        self._hint_index = self._db.get_column_family(_HINT_INDEX_CF)
        self._index_cf = self._db.get_column_family_handle(_INDEX_CF)
        self._hints_cf = self._db.get_column_family_handle(_HINTS_CF)
        self._hint_index_cf = self._db.get_column_family_handle(_HINT_INDEX_CF)
        self._write_opts = WriteOptions()
        self._write_opts.sync = True  # the WAL is synced before a write returns
        self._write_opts.no_slowdown = True  # a stall returns at once, see _commit
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
        """The chunk's bytes as stored, or None.

        Raises:
            ChunkCorrupt: RocksDB found the stored copy corrupt (checksum mismatch).
        """
        self._check_open()
        try:
            return self._db.get(chunk_hash)
        except Exception as e:  # rocksdict raises plain Exception
            if "corrupt" in str(e).lower() or "checksum" in str(e).lower():
                raise ChunkCorrupt(f"chunk {chunk_hash.hex()} is corrupt on disk: {e}") from e
            raise StoreError(f"chunk store read failed: {e}") from e

    def contains(self, chunk_hash: bytes) -> bool:
        """Whether the chunk is stored (reads the index only)."""
        self._check_open()
        return self._index.get(chunk_hash) is not None

    def scan(self, start: bytes = b"", end: bytes | None = None) -> Iterator[bytes]:
        """Stored hashes in ``[start, end)``."""
        self._check_open()
        yield from scan_keys(self._index, start, end)

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
            for target, chunk_hash in dict.fromkeys(hints):
                key = _hint_key(target, chunk_hash)
                if self._hints.get(key) is None:
                    new_hints += 1
                batch.put(key, b"", self._hints_cf)
                batch.put(_hint_index_key(target, chunk_hash), b"", self._hint_index_cf)
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
        """Apply a batch, durable (WAL synced) when this returns."""
        delay, deadline = 0.001, time.monotonic() + STALL_TIMEOUT
        while True:
            try:
                self._db.write(batch, self._write_opts)
                return
            except Exception as e:
                if "Write stall" not in str(e) or time.monotonic() > deadline:
                    raise StoreError(f"chunk store write failed: {e}") from e
            time.sleep(delay)  # compaction or flush behind: wait without holding the GIL
            delay = min(delay * 2, 0.05)

    # -- hints --------------------------------------------------------------------------------
    def hints(self, target: str | None = None) -> Iterator[tuple[str, bytes]]:
        """(target, hash) hint records, all or for one target node."""
        self._check_open()
        yield from hint_records(self._hints, target)

    def delete_hint(self, target: str, chunk_hash: bytes) -> None:
        """Forget one hint record."""
        self.finish_hints(target, [chunk_hash])

    def finish_hints(self, target: str, hashes: Sequence[bytes]) -> int:
        """Forget the hint records of ``target`` for these chunks; how many there were."""
        self._check_open()
        batch = WriteBatch(raw_mode=True)
        with self._lock:
            gone = 0
            for chunk_hash in dict.fromkeys(hashes):
                key = _hint_key(target, chunk_hash)
                if self._hints.get(key) is None:
                    continue
                batch.delete(key, self._hints_cf)
                batch.delete(_hint_index_key(target, chunk_hash), self._hint_index_cf)
                gone += 1
            if gone:
                self._commit(batch)
                self._hint_count -= gone
        return gone

    def _hinted(self, chunk_hash: bytes) -> bool:
        """Whether any hint record names this chunk."""
        return is_hinted(self._hint_index, chunk_hash)

    def drop_unhinted(self, hashes: Sequence[bytes]) -> list[bytes]:
        """Delete the chunks no hint record names, in one durable batch; which were deleted."""
        self._check_open()
        batch = WriteBatch(raw_mode=True)
        with self._lock:
            dropped = [
                h
                for h in dict.fromkeys(hashes)
                if self._index.get(h) is not None and not self._hinted(h)
            ]
            for chunk_hash in dropped:
                batch.delete(chunk_hash)
                batch.delete(chunk_hash, self._index_cf)
            if dropped:
                self._commit(batch)
                self._count -= len(dropped)
        return dropped

    def hint_count(self) -> int:
        """How many hint records are held."""
        return self._hint_count

    def close(self) -> None:
        """Flush the memtable (chunk bytes go to blob files) and close the database (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.flush()  # a restart then replays no WAL, and chunk bytes sit in blobs
            except Exception as e:
                log.warning("flush before close failed: %s", e)
            self._index.close()
            self._hints.close()
            self._hint_index.close()
            self._db.close()
            # rocksdict releases the DB (and its LOCK file) only once every handle is gone.
            del self._index, self._hints, self._hint_index
            del self._index_cf, self._hints_cf, self._hint_index_cf, self._db


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
        self.finish_hints(target, [chunk_hash])

    def finish_hints(self, target: str, hashes: Sequence[bytes]) -> int:
        """Forget the hint records of ``target`` for these chunks; how many there were."""
        self._check_open()
        with self._lock:
            gone = {(target, h) for h in hashes} & self._hints
            self._hints -= gone
        return len(gone)

    def drop_unhinted(self, hashes: Sequence[bytes]) -> list[bytes]:
        """Delete the chunks no hint record names; which were deleted."""
        self._check_open()
        with self._lock:
            hinted = {h for _, h in self._hints}
            dropped = [h for h in dict.fromkeys(hashes) if h in self._chunks and h not in hinted]
            for h in dropped:
                del self._chunks[h]
        return dropped

    def hint_count(self) -> int:
        """How many hint records are held."""
        return len(self._hints)

    def close(self) -> None:
        """Mark closed."""
        self._closed = True


def verify(chunk_hash: bytes, data: bytes) -> bool:
    """Whether ``data`` hashes to ``chunk_hash`` (SHA-256; releases the GIL for large data)."""
    return hashlib.sha256(data).digest() == chunk_hash
