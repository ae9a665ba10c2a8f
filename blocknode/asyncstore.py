"""The asyncio front of a chunk store: group-committed writes, reads on a few threads.

Mutations go through one writer task in FIFO order; puts queued while one batch is being
written and synced go out together in the next (one WAL sync for many chunks, and a burst of
puts costs a handful of round trips to the store). Other mutations (deletes, hint records)
run alone, in their place in the queue. Reads, and the re-hash of what they read, run on a
small thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from blocknode.cache import ChunkCache
from blocknode.store import BlockStore, ChunkCorrupt, StoreError, verify

log = logging.getLogger(__name__)

T = TypeVar("T")


class Copy(enum.Enum):
    """What a verified read found."""

    OK = "ok"
    MISSING = "missing"
    CORRUPT = "corrupt"


@dataclass
class _Op:
    puts: list[tuple[bytes, bytes]]
    hints: list[tuple[str, bytes]]
    call: Callable[[], Any] | None  # a mutation that runs alone (delete, hint bookkeeping)
    future: asyncio.Future[Any] = field(repr=False)

    @property
    def size(self) -> int:
        return sum(len(d) for _, d in self.puts) + 64 * len(self.hints)


class AsyncChunkStore:
    """Asyncio front of a BlockStore: group-committed writes, reads on a small thread pool.

    Mutations go through one writer task in FIFO order; consecutive puts are merged into one
    synced batch of at most ``max_batch_bytes``. Reads run on ``read_threads`` threads.

    Args:
        store: The blocking store it fronts (closed by ``close``).
        max_batch_bytes: Upper bound on the chunk bytes of one group commit.
        read_threads: Threads for reads and re-hashing.
        cache_bytes: Size of the hot-chunk cache of verified reads (0: none).
    """

    def __init__(
        self,
        store: BlockStore,
        *,
        max_batch_bytes: int = 16 * 1024 * 1024,
        read_threads: int = 4,
        cache_bytes: int = 0,
    ) -> None:
        self.store = store
        self.cache = ChunkCache(cache_bytes)
        self._max_batch = max_batch_bytes
        self._queue: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="chunkstore-write")
        self._reader_pool = ThreadPoolExecutor(read_threads, thread_name_prefix="chunkstore-read")
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0  # synced write batches so far (for tests and benchmarks)
        self.reclaimed = 0  # bytes compaction has given back so far
        self._compaction: asyncio.Task[None] | None = None
        self._no_compaction = False  # set by close

    async def _submit(
        self,
        puts: list[tuple[bytes, bytes]],
        hints: list[tuple[str, bytes]],
        call: Callable[[], T] | None = None,
    ) -> Any:
        if self._closing:
            raise StoreError("chunk store is closed")
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="chunkstore-writer")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Op(puts, hints, call, future))
        self._wake.set()
        # Shielded: a caller that goes away does not take the write with it.
        return await asyncio.shield(future)

    async def put(self, chunk_hash: bytes, data: bytes, *, hint_for: str = "") -> None:
        """Store a chunk durably, with a hint record when it is held for ``hint_for``."""
        hints = [(hint_for, chunk_hash)] if hint_for else []
        await self._submit([(chunk_hash, data)], hints)

    async def delete_many(self, hashes: Sequence[bytes]) -> int:
        """Remove chunks durably; how many were there."""
        items = list(hashes)
        self.cache.discard(items)
        deleted = int(await self._submit([], [], lambda: self.store.delete_many(items)))
        self._maybe_compact()
        return deleted

    async def finish_hints(self, target: str, hashes: Sequence[bytes]) -> int:
        """Forget ``target``'s hint records for these chunks (delivered, or moot)."""
        items = list(hashes)
        return int(await self._submit([], [], lambda: self.store.finish_hints(target, items)))

    async def drop_unhinted(self, hashes: Sequence[bytes]) -> list[bytes]:
        """Delete the chunks no hint record names; returns those deleted."""
        items = list(hashes)
        dropped = list(await self._submit([], [], lambda: self.store.drop_unhinted(items)))
        self.cache.discard(dropped)
        self._maybe_compact()
        return dropped

    def _maybe_compact(self) -> None:
        """After deletes: compact the sealed segment with the most garbage, in the background.

        One compaction at a time, through the writer queue (it runs alone there, between groups
        of puts). Stores without segments have nothing to compact.
        """
        find = getattr(self.store, "compactable", None)
        if find is None or self._compaction is not None or self._no_compaction:
            return
        seg = find()
        if seg is None:
            return

        async def run() -> None:
            try:
                reclaimed = await self._submit([], [], lambda: self.store.compact(seg))
                self.reclaimed += int(reclaimed)
                log.info("compacted segment %d: %d bytes reclaimed", seg, reclaimed)
            except Exception as e:
                log.error("compaction of segment %d failed: %s", seg, e)
            finally:
                self._compaction = None
            self._maybe_compact()  # the next one, if deletes left more garbage

        self._compaction = asyncio.create_task(run(), name="chunkstore-compact")

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
        if first.call is not None:
            return group
        while (
            self._queue
            and self._queue[0].call is None
            and size + self._queue[0].size <= self._max_batch
        ):
            op = self._queue.popleft()
            group.append(op)
            size += op.size
        return group

    def _apply(self, group: list[_Op]) -> Any:
        if group[0].call is not None:
            return group[0].call()
        puts = [p for op in group for p in op.puts]
        hints = [h for op in group for h in op.hints]
        return self.store.write(puts, hints)

    async def run_read(self, fn: Callable[[], T]) -> T:
        """Run a blocking read of the store on the read threads."""
        if self._closing:
            raise StoreError("chunk store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, fn)

    async def get(self, chunk_hash: bytes) -> bytes | None:
        """The chunk's stored bytes, or None."""
        return await self.run_read(lambda: self.store.get(chunk_hash))

    async def read(self, chunk_hash: bytes, *, cached: bool = True) -> tuple[Copy, bytes | None]:
        """The chunk re-hashed as read: (OK, data), (MISSING, None) or (CORRUPT, None).

        With ``cached`` a chunk verified by an earlier read may come from the hot-chunk cache,
        and a chunk read and verified now is kept there; without, the disk is read (scrubbing).
        """
        if cached and self.cache.max_bytes:
            hit = self.cache.get(chunk_hash)
            if hit is not None:
                return Copy.OK, hit

        def read() -> tuple[Copy, bytes | None]:
            try:
                data = self.store.get(chunk_hash)
            except ChunkCorrupt:
                return Copy.CORRUPT, None
            if data is None:
                return Copy.MISSING, None
            if not verify(chunk_hash, data):
                return Copy.CORRUPT, None
            if cached and self.cache.max_bytes:
                self.cache.put(chunk_hash, data)
            return Copy.OK, data

        return await self.run_read(read)

    async def get_verified(self, chunk_hash: bytes) -> tuple[bytes | None, bool]:
        """(data, intact): data is None when missing or unreadable; intact False unless OK."""
        state, data = await self.read(chunk_hash)
        return data, state is Copy.OK

    async def contains_many(self, hashes: Iterable[bytes]) -> list[bool]:
        """Presence of each hash, in order."""
        items = list(hashes)
        return await self.run_read(lambda: [self.store.contains(h) for h in items])

    async def scan_page(
        self, start: bytes, end: bytes | None = None, limit: int = 4096
    ) -> list[bytes]:
        """Up to ``limit`` stored hashes in ``[start, end)``, in order."""

        def page() -> list[bytes]:
            out: list[bytes] = []
            for h in self.store.scan(start, end):
                out.append(h)
                if len(out) >= limit:
                    break
            return out

        return await self.run_read(page)

    async def hints(self) -> list[tuple[str, bytes]]:
        """Every (target node, hash) hint record."""
        return await self.run_read(lambda: list(self.store.hints()))

    async def close(self) -> None:
        """Finish queued writes, stop the threads and close the store (idempotent)."""
        if self._closing:
            return
        self._no_compaction = True
        if self._compaction is not None:
            with contextlib.suppress(Exception):
                await self._compaction
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        await asyncio.to_thread(self._writer_pool.shutdown, wait=True)
        await asyncio.to_thread(self._reader_pool.shutdown, wait=True)
        self.store.close()
