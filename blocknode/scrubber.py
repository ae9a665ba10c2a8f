"""The scrubber: re-hashes every stored chunk at a bounded rate and repairs bad copies.

A pass walks the store in hash order, reading each chunk (``--scrub-rate-mb`` bytes per second
at most) and checking it against its SHA-256. A copy that is corrupt (wrong bytes, or a blob
RocksDB's own checksum rejects) is replaced by a verified copy from another node that holds
the chunk, in ring preference order, and rewritten here. When no good copy can be found the
bad one is kept (it is all there is) and found again by the next pass. Between passes the
scrubber rests ``--scrub-interval`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time

from blocknode.asyncstore import AsyncChunkStore, Copy
from blocknode.metrics import BlockMetrics
from blocknode.peers import PeerClient, PeerError
from blocknode.placement import RingTracker
from blocknode.ratelimit import RateLimiter
from blocknode.store import StoreError

log = logging.getLogger(__name__)

PAGE = 1024  # hashes fetched from the store per round trip
MB = 1_000_000


class Scrubber:
    """Scrub passes for one node.

    Args:
        node_id: This node.
        store: Its chunk store.
        rings: The ring (where good copies are looked for).
        peers: Calls to the other nodes.
        metrics: Where figures go.
        rate_mb: Re-hash rate in MB/s; 0 disables the scrubber.
        interval: Seconds of rest after each full pass.
    """

    def __init__(
        self,
        node_id: str,
        store: AsyncChunkStore,
        rings: RingTracker,
        peers: PeerClient,
        metrics: BlockMetrics,
        rate_mb: float,
        interval: float,
    ) -> None:
        self.node_id = node_id
        self._store = store
        self._rings = rings
        self._peers = peers
        self._metrics = metrics
        self._limiter = RateLimiter(rate_mb * MB)
        self.enabled = rate_mb > 0
        self._interval = interval
        self.passes = 0

    async def run(self) -> None:
        """Pass after pass until cancelled."""
        if not self.enabled:
            return
        while True:
            try:
                await self.scrub_pass()
            except asyncio.CancelledError:
                raise
            except StoreError as e:
                log.warning("scrub pass stopped: %s", e)
            except Exception:
                log.exception("scrub pass failed")
            await asyncio.sleep(self._interval)

    async def scrub_pass(self) -> tuple[int, int]:
        """Re-hash every chunk once; returns (chunks checked, copies repaired)."""
        began = time.monotonic()
        checked = repaired = 0
        start = b""
        while True:
            page = await self._store.scan_page(start, None, PAGE)
            for chunk_hash in page:
                state, data = await self._store.read(chunk_hash, cached=False)
                size = len(data) if data is not None else 0
                await self._limiter.take(max(size, 4096))
                if state is Copy.MISSING:
                    continue  # deleted since the scan
                checked += 1
                self._metrics.scrubbed_one(size, chunk_hash)
                if state is Copy.CORRUPT:
                    repaired += await self.repair(chunk_hash)
            if len(page) < PAGE:
                break
            start = page[-1] + b"\x00"
        self.passes += 1
        self._metrics.scrub_pass_done()
        log.info(
            "scrub pass: %d chunks re-hashed in %.1f s, %d repaired",
            checked,
            time.monotonic() - began,
            repaired,
        )
        return checked, repaired

    async def repair(self, chunk_hash: bytes) -> bool:
        """Replace a corrupt copy here with a verified one from another node."""
        self._metrics.found_corrupt()
        log.error("scrubber: chunk %s is corrupt here; repairing", chunk_hash.hex())
        for member in self._rings.read_sources(chunk_hash, len(self._rings.ring)):
            try:
                data = await self._peers.fetch(member, chunk_hash)
            except PeerError as e:
                log.info("fetching %s from %s failed: %s", chunk_hash.hex()[:16], member.node_id, e)
                continue
            if data is None:
                continue
            await self._store.put(chunk_hash, data)
            self._metrics.repairs.inc()
            self._metrics.transfer_in("repair", len(data))
            log.info("scrubber: repaired chunk %s from %s", chunk_hash.hex(), member.node_id)
            return True
        log.error("scrubber: no good copy of %s found on any other node", chunk_hash.hex())
        return False
