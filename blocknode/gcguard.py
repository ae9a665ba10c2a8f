"""Chunks garbage-collected here lately, so that background copies do not bring them back.

The metanode's garbage collector deletes an unreferenced chunk on each of its ring owners. A
copy elsewhere (a hinted-handoff copy, one awaiting rebalance) or an owner's anti-entropy pass
racing the deletes could otherwise send it straight back. For ``RECENT_DELETE_SECONDS`` after a
``DeleteChunks``, a background copy (``Replicate`` with ``repair``) of such a chunk is refused;
the sender, when it is not an owner, then drops its own copy. A client storing the chunk again
(a new upload) lifts the refusal at once. Kept in memory, bounded: after a restart, or past the
window, a stale copy can still come back, as unreferenced garbage (never as lost data).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable

RECENT_DELETE_SECONDS = 600.0
RECENT_DELETE_MAX = 1_000_000


class RecentDeletes:
    """Chunks garbage-collected here lately (in memory, bounded): background copies refused."""

    def __init__(self, keep: float = RECENT_DELETE_SECONDS, limit: int = RECENT_DELETE_MAX) -> None:
        self._keep = keep
        self._limit = limit
        self._at: OrderedDict[bytes, float] = OrderedDict()

    def add(self, hashes: Iterable[bytes]) -> None:
        """Note chunks just deleted."""
        now = time.monotonic()
        for h in hashes:
            self._at.pop(h, None)
            self._at[h] = now
        while len(self._at) > self._limit:
            self._at.popitem(last=False)

    def forget(self, chunk_hash: bytes) -> None:
        """A client stored the chunk again: copies of it are welcome."""
        self._at.pop(chunk_hash, None)

    def __contains__(self, chunk_hash: object) -> bool:
        at = self._at.get(chunk_hash)  # type: ignore[call-overload]
        return at is not None and time.monotonic() - at < self._keep
