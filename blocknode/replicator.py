"""The replicator: the loop that brings every chunk to its RF ring owners, and only there.

One pass (``Replicator.run_pass``), every ``repair_interval`` seconds and at once when the ring's
membership changes or a node comes back up:

1. **Hint delivery.** Each hinted-handoff copy held here goes to the node it was written for,
   once that node is up; the hint record is then dropped, and so is the copy itself once every
   ring owner holds the chunk (a stand-in is not an owner). Hints for a node that was
   decommissioned are dropped; their copies are then simply misplaced (step 2).
2. **Rebalance.** A chunk held here whose ring owners no longer include this node (a node joined
   and took the range; the primary of a client with a stale ring) is *misplaced*. When no owner
   holds it yet, this node streams it to them. Once every owner holds it durably (``HasChunks``
   after their synced write), the copy here is deleted. So a chunk never has fewer copies than
   before the move.
3. **Anti-entropy.** For each up peer that co-owns chunks with this node, both sides digest the
   chunks they should both hold (``ranges``) per bucket of the position space; differing
   buckets are listed and what the peer lacks is streamed to it. Of a chunk's owners, only the
   first that holds it sends it (so a new owner gets one copy, not RF-1), and only that one
   counts the chunk when it is under-replicated, so the per-node counts add up.

After a decommission every surviving owner still holds its chunks, and the new owner of each
range lacks them: step 3 re-replicates. After a join, the joining node is a new owner: step 3
streams to it from the current holders, step 2 deletes the copies of the node it displaced.
Every transfer goes through one ``RateLimiter`` (``--rebalance-rate-mb``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from blocknode.asyncstore import AsyncChunkStore, Copy
from blocknode.metrics import BlockMetrics
from blocknode.peers import PeerClient, PeerError, PushResult
from blocknode.placement import RingTracker
from blocknode.ranges import (
    OwnerIndex,
    PeerDigests,
    bucket_bounds,
    bucket_count,
    bucket_of,
    placement_fingerprint,
)
from blocknode.ratelimit import RateLimiter, wait_event
from tessera.ring import Member, Ring

log = logging.getLogger(__name__)

T = TypeVar("T")

PUSH_BATCH = 16  # chunks per background Replicate stream
CHECK_BATCH = 2048  # misplaced chunks checked (HasChunks) per round
PEER_CONCURRENCY = 4  # peers compared or pushed to at once


@dataclass
class PassReport:
    """What one replication pass did (logged, and returned for tests and benchmarks)."""

    seconds: float = 0.0
    hints_delivered: int = 0
    pushed: Counter[str] = field(default_factory=Counter)  # bytes, by kind
    dropped: int = 0
    misplaced: int = 0
    peers_compared: int = 0
    peers_failed: int = 0
    buckets_differing: int = 0
    under_replicated: int = 0


@dataclass
class _Scan:
    """One pass over the local store."""

    buckets: int
    digests: PeerDigests
    misplaced: list[bytes]
    short: Counter[int]  # per bucket: chunks counted here, assuming co-owners hold them


class Replicator:
    """Runs replication passes for one node.

    Args:
        node_id: This node.
        store: Its chunk store.
        rings: The ring it follows.
        peers: Calls to the other nodes.
        metrics: Where figures go.
        limiter: Shared rate of background transfers.
        interval: Seconds between passes when nothing triggers one.
    """

    def __init__(
        self,
        node_id: str,
        store: AsyncChunkStore,
        rings: RingTracker,
        peers: PeerClient,
        metrics: BlockMetrics,
        limiter: RateLimiter,
        interval: float,
    ) -> None:
        self.node_id = node_id
        self._store = store
        self._rings = rings
        self._peers = peers
        self._metrics = metrics
        self._limiter = limiter
        self._interval = interval
        self._wake = asyncio.Event()
        self._index: OwnerIndex | None = None
        self._members: frozenset[str] | None = None
        self._joined: frozenset[str] = frozenset()  # added by the latest membership change
        self.last_report: PassReport | None = None

    def trigger(self) -> None:
        """Start a pass soon (a ring change, a node back up)."""
        self._wake.set()

    async def run(self) -> None:
        """Pass after pass until cancelled; a failed pass is logged and retried later."""
        while True:
            self._wake.clear()
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("replication pass failed")
            await wait_event(self._wake, self._interval)

    # -- one pass ---------------------------------------------------------------------------
    async def run_pass(self) -> PassReport:
        """Deliver hints, move misplaced copies, reconcile with co-owners; count what is short."""
        began = time.monotonic()
        report = PassReport()
        ring = await self._rings.sync()
        index = self._owner_index(ring)
        up = {m.node_id for m in ring.members if m.up} | {self.node_id}
        await self._deliver_hints(ring, index, report)
        scan = await asyncio.to_thread(self._scan, index, up)
        report.misplaced = len(scan.misplaced)
        await self._rebalance(scan.misplaced, ring, index, report)
        report.under_replicated = await self._anti_entropy(scan, ring, index, up, report)
        report.seconds = time.monotonic() - began
        self._metrics.set_under_replicated(report.under_replicated)
        self._metrics.pass_done(time.time())
        self.last_report = report
        if report.pushed or report.dropped or report.hints_delivered or report.peers_failed:
            log.info(
                "replication pass in %.1f s: pushed %s bytes, %d hints delivered, %d copies "
                "dropped, %d misplaced, %d differing buckets, %d peers failed, "
                "%d under-replicated",
                report.seconds,
                dict(report.pushed),
                report.hints_delivered,
                report.dropped,
                report.misplaced,
                report.buckets_differing,
                report.peers_failed,
                report.under_replicated,
            )
        return report

    def _owner_index(self, ring: Ring) -> OwnerIndex:
        """The owner index for this ring (rebuilt when membership changed), noting joins."""
        index = self._index
        if index is None or index.placement != placement_fingerprint(ring, self._rings.replicas):
            index = self._index = OwnerIndex(ring, self._rings.replicas)
        if self._members is not None and index.members != self._members:
            self._joined = index.members - self._members
        self._members = index.members
        return index

    def _kind(self, target: str) -> str:
        """``rebalance`` for copies to a node the latest membership change added (a join),
        ``repair`` for the rest (a lost copy, a decommissioned node's ranges)."""
        return "rebalance" if target in self._joined else "repair"

    async def _read(self, chunk_hash: bytes) -> bytes | None:
        """A chunk's bytes here for sending, verified: a corrupt copy is never spread."""
        state, data = await self._store.read(chunk_hash)
        if state is Copy.CORRUPT:
            self._metrics.found_corrupt()
            log.error("chunk %s is corrupt here; not sending it", chunk_hash.hex())
        return data

    async def _push(
        self, member: Member, hashes: Sequence[bytes], kind: str, report: PassReport
    ) -> tuple[set[bytes], set[bytes]]:
        """Stream chunks to a peer in batches; (stored there, refused there)."""
        stored: set[bytes] = set()
        refused: set[bytes] = set()
        for i in range(0, len(hashes), PUSH_BATCH):
            try:
                result: PushResult = await self._peers.push(
                    member, hashes[i : i + PUSH_BATCH], self._read, self._limiter
                )
            except PeerError as e:
                log.warning(
                    "copying %d chunks to %s failed: %s", len(hashes) - i, member.node_id, e
                )
                break
            self._metrics.transfer(kind, result.bytes)
            report.pushed[kind] += result.bytes
            stored.update(result.stored)
            refused.update(result.refused)
        return stored, refused

    # -- 1. hints ---------------------------------------------------------------------------
    async def _deliver_hints(self, ring: Ring, index: OwnerIndex, report: PassReport) -> None:
        by_target: dict[str, list[bytes]] = defaultdict(list)
        for target, chunk_hash in await self._store.hints():
            by_target[target].append(chunk_hash)
        for target, hashes in by_target.items():
            if target not in index.members:
                gone = await self._store.finish_hints(target, hashes)
                log.info("dropped %d hints for %s, no longer a member", gone, target)
                continue
            # A hint for this node itself, or for a chunk its target no longer owns (the ring
            # changed since), is moot: the copy here is then just misplaced (step 2).
            moot = {h for h in hashes if target == self.node_id or target not in index.owners(h)}
            if moot:
                await self._store.finish_hints(target, sorted(moot))
                hashes = [h for h in hashes if h not in moot]
            member = ring.member(target)
            if not member.up or not hashes:
                continue
            for i in range(0, len(hashes), PUSH_BATCH):
                batch = hashes[i : i + PUSH_BATCH]
                try:
                    result = await self._peers.push(member, batch, self._read, self._limiter)
                except PeerError as e:
                    log.warning("delivering hints to %s failed: %s", target, e)
                    break
                self._metrics.transfer("handoff", result.bytes)
                report.pushed["handoff"] += result.bytes
                done = result.stored + result.refused + result.skipped
                report.hints_delivered += await self._store.finish_hints(target, done)
                mine = [h for h in result.stored if self.node_id not in index.owners(h)]
                await self._drop_if_placed(mine, ring, index, report)
                gc = [h for h in result.refused if self.node_id not in index.owners(h)]
                await self._drop(gc, report)

    # -- 2. rebalance -----------------------------------------------------------------------
    def _scan(self, index: OwnerIndex, up: set[str]) -> _Scan:
        """Read every hash held here (in a thread): digests per co-owner, misplaced copies."""
        store = self._store.store
        hinted = {h for _, h in store.hints()}
        buckets = bucket_count(store.count())
        digests = PeerDigests(self.node_id, index, buckets)
        misplaced: list[bytes] = []
        short: Counter[int] = Counter()
        me = self.node_id
        for h in store.scan():
            owners = index.owners(h)
            if me in owners:
                digests.add(h, owners)
                live = [o for o in owners if o in up]
                if live[0] == me and len(live) < len(owners):
                    short[bucket_of(h, buckets)] += 1
            elif h not in hinted:
                misplaced.append(h)
        return _Scan(buckets, digests, misplaced, short)

    async def _holders(
        self, ring: Ring, index: OwnerIndex, hashes: Sequence[bytes]
    ) -> dict[bytes, set[str]]:
        """Which up owners hold each chunk (owners that cannot be asked count as not holding)."""
        asks: dict[str, list[bytes]] = defaultdict(list)
        for h in hashes:
            for owner in index.owners(h):
                if owner != self.node_id and ring.member(owner).up:
                    asks[owner].append(h)
        holders: dict[bytes, set[str]] = {h: set() for h in hashes}

        async def ask(owner: str, part: list[bytes]) -> None:
            try:
                present = await self._peers.has(ring.member(owner), part)
            except PeerError as e:
                log.info("HasChunks on %s failed: %s", owner, e)
                return
            for h, ok in zip(part, present, strict=False):
                if ok:
                    holders[h].add(owner)

        await _gather_limited(ask(o, p) for o, p in asks.items())
        return holders

    async def _drop_if_placed(
        self, hashes: Sequence[bytes], ring: Ring, index: OwnerIndex, report: PassReport
    ) -> None:
        """Delete copies here (not an owner) of the chunks every ring owner holds."""
        if not hashes:
            return
        holders = await self._holders(ring, index, hashes)
        placed = [h for h in hashes if holders[h] >= set(index.owners(h)) - {self.node_id}]
        await self._drop(placed, report)

    async def _drop(self, hashes: Sequence[bytes], report: PassReport) -> None:
        if hashes:
            dropped = await self._store.drop_unhinted(hashes)
            self._metrics.dropped.inc(len(dropped))
            report.dropped += len(dropped)

    async def _rebalance(
        self, misplaced: list[bytes], ring: Ring, index: OwnerIndex, report: PassReport
    ) -> None:
        """Copy misplaced chunks to owners when none holds them; drop them once all do."""
        for i in range(0, len(misplaced), CHECK_BATCH):
            await self._rebalance_batch(misplaced[i : i + CHECK_BATCH], ring, index, report)

    async def _rebalance_batch(
        self, batch: list[bytes], ring: Ring, index: OwnerIndex, report: PassReport
    ) -> None:
        holders = await self._holders(ring, index, batch)
        sends: dict[str, list[bytes]] = defaultdict(list)
        for h in batch:
            if not holders[h]:
                for owner in index.owners(h):
                    if ring.member(owner).up:
                        sends[owner].append(h)
        results = await _gather_limited(
            self._push(ring.member(o), part, "rebalance", report) for o, part in sends.items()
        )
        refused: set[bytes] = set()
        for owner, (stored, no) in zip(sends, results, strict=True):
            for h in stored:
                holders[h].add(owner)
            refused |= no
        placed = [h for h in batch if index.owners(h) and holders[h] >= set(index.owners(h))]
        await self._drop(placed + sorted(refused), report)

    # -- 3. anti-entropy --------------------------------------------------------------------
    async def _anti_entropy(
        self, scan: _Scan, ring: Ring, index: OwnerIndex, up: set[str], report: PassReport
    ) -> int:
        """Reconcile with every up co-owner; returns the chunks this node counts as short."""
        me, buckets = self.node_id, scan.buckets
        peers = [
            m
            for m in ring.members
            if m.node_id != me and m.up and any(scan.digests.for_peer(m.node_id))
        ]
        answers = await _gather_limited(self._compare(m, scan, index.placement) for m in peers)
        differing = {
            m.node_id: diff for m, diff in zip(peers, answers, strict=True) if diff is not None
        }
        report.peers_compared = len(differing)
        report.peers_failed = len(peers) - len(differing)
        known = set(differing)
        short = sum(scan.short.values())
        all_buckets = sorted(set().union(*differing.values())) if differing else []
        report.buckets_differing = len(all_buckets)
        sends: dict[str, list[bytes]] = defaultdict(list)
        counted: set[bytes] = set()  # chunks counted short here, to count each once
        for b in all_buckets:
            start, end = bucket_bounds(buckets, b)
            local = await self._store.scan_page(start, end, limit=1 << 30)
            lists: dict[str, set[bytes]] = {}
            for peer in (p for p, diff in differing.items() if b in diff):
                try:
                    listed = await self._peers.list_range(
                        ring.member(peer), buckets, b, me, index.placement
                    )
                    lists[peer] = set(listed)
                except PeerError as e:
                    log.info("ListRange on %s failed: %s", peer, e)
                    known.discard(peer)
            short -= scan.short[b]  # recounted exactly below
            for h in local:
                owners = index.owners(h)
                if me not in owners:
                    continue
                holding = [_holds(o, h, me, up, known, lists) for o in owners]
                if owners[holding.index(True)] != me:
                    continue  # an earlier owner holds it: that one sends it
                if sum(o in up for o in owners) < len(owners):
                    short += 1
                    counted.add(h)
                for owner, held in zip(owners, holding, strict=True):
                    if not held and owner in known:
                        sends[owner].append(h)
        results = await _gather_limited(
            self._push(ring.member(o), part, self._kind(o), report) for o, part in sends.items()
        )
        failures: set[bytes] = set()
        for part, (stored, _) in zip(sends.values(), results, strict=True):
            failures.update(h for h in part if h not in stored)
        return short + len(failures - counted)

    async def _compare(self, member: Member, scan: _Scan, placement: bytes) -> set[int] | None:
        """Buckets where this node holds shared chunks the peer's digest disagrees on (None:
        the peer could not be asked)."""
        mine = scan.digests.for_peer(member.node_id)
        try:
            theirs = await self._peers.range_digests(member, scan.buckets, self.node_id, placement)
        except PeerError as e:
            log.info("anti-entropy with %s skipped: %s", member.node_id, e)
            return None
        return {b for b, d in enumerate(mine) if d and (b >= len(theirs) or d != theirs[b])}


def _holds(
    owner: str,
    chunk_hash: bytes,
    me: str,
    up: set[str],
    known: set[str],
    lists: dict[str, set[bytes]],
) -> bool:
    """Whether an owner holds a chunk as far as this pass knows (unknown counts as no)."""
    if owner == me:
        return True
    if owner not in up or owner not in known:
        return False
    return chunk_hash in lists[owner] if owner in lists else True


async def _gather_limited(aws: Iterable[Awaitable[T]], limit: int = PEER_CONCURRENCY) -> list[T]:
    """Await coroutines, at most ``limit`` at once; their results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(aw: Awaitable[T]) -> T:
        async with gate:
            return await aw

    return list(await asyncio.gather(*(one(aw) for aw in aws)))
