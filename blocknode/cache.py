"""The hot-chunk cache: a bounded LRU of verified chunk bytes in front of the store.

Chunks are content-addressed, so a cached copy never goes stale; it is dropped when the chunk is
deleted here. Only bytes that passed their hash check when read from disk are cached, so a hit
is as verified as a disk read. The scrubber reads around it (it checks the disk, not memory).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable


class ChunkCache:
    """An LRU of chunk bytes bounded by their total size.

    Args:
        max_bytes: Capacity; 0 disables the cache (every lookup is a miss, nothing is kept).
        max_chunk: Larger chunks are not cached (one big file must not flush the hot set).
    """

    def __init__(self, max_bytes: int, *, max_chunk: int = 4 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.max_chunk = min(max_chunk, max_bytes // 4) if max_bytes else 0
        self._items: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()  # reads complete on several threads
        self.hits = 0
        self.misses = 0

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._size

    def get(self, chunk_hash: bytes) -> bytes | None:
        """The cached bytes (now most recently used), or None; counts a hit or a miss."""
        with self._lock:
            data = self._items.get(chunk_hash)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(chunk_hash)
            self.hits += 1
            return data

    def put(self, chunk_hash: bytes, data: bytes) -> None:
        """Keep verified bytes, evicting the least recently used past the capacity."""
        if len(data) > self.max_chunk:
            return
        with self._lock:
            old = self._items.pop(chunk_hash, None)
            if old is not None:
                self._size -= len(old)
            self._items[chunk_hash] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, gone = self._items.popitem(last=False)
                self._size -= len(gone)

    def discard(self, hashes: Iterable[bytes]) -> None:
        """Forget chunks (deleted here)."""
        with self._lock:
            for h in hashes:
                gone = self._items.pop(h, None)
                if gone is not None:
                    self._size -= len(gone)
