"""Chunk stores: a narrow Protocol, RocksDB (``rocksdict``) for real, a dict for unit tests.

A chunk is stored under its SHA-256. ``RocksChunkStore`` keeps three column families:

- ``default``: hash -> chunk bytes; values of 64 KiB and up live in blob files, so compaction
  rewrites keys, not chunk bytes.
- ``index``: hash -> size (8 bytes). ``contains``, ``scan`` and ``count`` read only this, never a
  blob.
- ``hints``: ``target_node NUL hash`` -> b"": hinted-handoff records, chunks held here on behalf
  of a node that was down when they were written.

Every write is one ``WriteBatch`` across the families, synced to the WAL before it returns.

rocksdict holds the GIL for the whole of every call (fsync included), so running it in a thread
does not let the event loop run meanwhile. ``AsyncChunkStore`` therefore group-commits: puts
queued while one batch is being written and synced go out together in the next batch, one
fsync for many chunks, and the loop stalls once per batch rather than once per chunk.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from rocksdict import DBCompressionType, Options, Rdict, ReadOptions, WriteBatch, WriteOptions

log = logging.getLogger(__name__)

T = TypeVar("T")

HASH_LEN = 32
MIN_BLOB_SIZE = 64 * 1024
_INDEX_CF = "index"
_HINTS_CF = "hints"


class StoreError(Exception):
    """The chunk store cannot be opened or written (disk full, locked, corrupt)."""


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
    """The block node's RocksDB store: blob files for chunk bytes, every write synced."""

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
        self._sync = WriteOptions()
        self._sync.sync = True
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
        try:
            self._db.write(batch, self._sync)
        except Exception as e:
            raise StoreError(f"chunk store write failed: {e}") from e

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


@dataclass
class _Op:
    puts: list[tuple[bytes, bytes]]
    hints: list[tuple[str, bytes]]
    deletes: list[bytes]
    future: asyncio.Future[int] = field(repr=False)

    @property
    def size(self) -> int:
        return sum(len(d) for _, d in self.puts) + 64 * (len(self.hints) + len(self.deletes))


class AsyncChunkStore:
    """Asyncio front of a BlockStore: group-committed writes, reads on a small thread pool.

    Mutations go through one writer task in FIFO order; consecutive puts are merged into one
    synced batch of at most ``max_batch_bytes``. Reads run on ``read_threads`` threads.
    """

    def __init__(
        self, store: BlockStore, *, max_batch_bytes: int = 32 * 1024 * 1024, read_threads: int = 4
    ) -> None:
        self.store = store
        self._max_batch = max_batch_bytes
        self._queue: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="chunkstore-write")
        self._reader_pool = ThreadPoolExecutor(read_threads, thread_name_prefix="chunkstore-read")
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0  # synced write batches so far (for tests and benchmarks)

    async def _submit(
        self, puts: list[tuple[bytes, bytes]], hints: list[tuple[str, bytes]], deletes: list[bytes]
    ) -> int:
        if self._closing:
            raise StoreError("chunk store is closed")
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="chunkstore-writer")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append(_Op(puts, hints, deletes, future))
        self._wake.set()
        # Shielded: a caller that goes away does not take the write with it.
        return await asyncio.shield(future)

    async def put(self, chunk_hash: bytes, data: bytes, *, hint_for: str = "") -> None:
        """Store a chunk durably, with a hint record when it is held for ``hint_for``."""
        hints = [(hint_for, chunk_hash)] if hint_for else []
        await self._submit([(chunk_hash, data)], hints, [])

    async def delete_many(self, hashes: Sequence[bytes]) -> int:
        """Remove chunks durably; how many were there."""
        return await self._submit([], [], list(hashes))

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            group = self._take_group()
            try:
                result = await loop.run_in_executor(self._writer_pool, self._apply, group)
            except Exception as e:
                log.error("chunk store write of %d ops failed: %s", len(group), e)
                for op in group:
                    if not op.future.done():
                        op.future.set_exception(e)
                continue
            self.batches += 1
            for op in group:
                if not op.future.done():
                    op.future.set_result(result)

    def _take_group(self) -> list[_Op]:
        """The next run of ops to apply together: consecutive puts, up to the byte limit."""
        first = self._queue.popleft()
        group, size = [first], first.size
        if first.deletes:
            return group
        while (
            self._queue
            and not self._queue[0].deletes
            and size + self._queue[0].size <= self._max_batch
        ):
            op = self._queue.popleft()
            group.append(op)
            size += op.size
        return group

    def _apply(self, group: list[_Op]) -> int:
        if group[0].deletes:
            return self.store.delete_many(group[0].deletes)
        puts = [p for op in group for p in op.puts]
        hints = [h for op in group for h in op.hints]
        return self.store.write(puts, hints)

    async def _read(self, fn: Callable[[], T]) -> T:
        if self._closing:
            raise StoreError("chunk store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, fn)

    async def get(self, chunk_hash: bytes) -> bytes | None:
        """The chunk's stored bytes, or None."""
        return await self._read(lambda: self.store.get(chunk_hash))

    async def get_verified(self, chunk_hash: bytes) -> tuple[bytes | None, bool]:
        """(data, intact): data is None when missing; intact is False when it hashes wrong."""

        def read() -> tuple[bytes | None, bool]:
            data = self.store.get(chunk_hash)
            return data, data is not None and verify(chunk_hash, data)

        return await self._read(read)

    async def contains_many(self, hashes: Iterable[bytes]) -> list[bool]:
        """Presence of each hash, in order."""
        items = list(hashes)
        return await self._read(lambda: [self.store.contains(h) for h in items])

    async def close(self) -> None:
        """Finish queued writes, stop the threads and close the store (idempotent)."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        await asyncio.to_thread(self._writer_pool.shutdown, wait=True)
        await asyncio.to_thread(self._reader_pool.shutdown, wait=True)
        self.store.close()
