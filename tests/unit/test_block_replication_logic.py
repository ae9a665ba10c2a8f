"""Pure pieces of block replication: owners per chunk, range digests, rate limit, decommission."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

from blocknode.decommission import Decommissioner
from blocknode.ranges import (
    MAX_BUCKETS,
    MIN_BUCKETS,
    OwnerIndex,
    PeerDigests,
    bucket_bounds,
    bucket_count,
    bucket_of,
    digests,
    placement_fingerprint,
)
from blocknode.ratelimit import RateLimiter
from tessera.membership import NodeRecord, View
from tessera.ring import Member, build_ring, chunk_position

MEMBERS = [Member(f"n{i}", f"h:{i}", f"zone-{i % 3}") for i in range(7)]


def hashes(count: int) -> list[bytes]:
    return sorted(hashlib.sha256(os.urandom(8)).digest() for _ in range(count))


def test_owner_index_matches_the_ring() -> None:
    ring = build_ring(MEMBERS, vnodes=32)
    index = OwnerIndex(ring, 3)
    for h in hashes(2000) + [b"\x00" * 32, b"\xff" * 32]:
        assert list(index.owners(h)) == ring.owners(chunk_position(h), 3)
    assert OwnerIndex(build_ring([], vnodes=4), 3).owners(b"\x01" * 32) == ()


def test_placement_ignores_liveness_and_addresses_only() -> None:
    ring = build_ring(MEMBERS, vnodes=16)
    same = [Member(m.node_id, "elsewhere:1", m.zone, m.weight, up=False) for m in MEMBERS]
    assert placement_fingerprint(build_ring(same, vnodes=16), 3) == placement_fingerprint(ring, 3)
    for changed in (
        [*MEMBERS[:-1], Member("n6", zone="zone-9")],
        [*MEMBERS[:-1], Member("n6", zone="zone-0", weight=2.0)],
        MEMBERS[:-1],
    ):
        assert placement_fingerprint(build_ring(changed, vnodes=16), 3) != placement_fingerprint(
            ring, 3
        )
    assert placement_fingerprint(ring, 2) != placement_fingerprint(ring, 3)


def test_bucket_count_and_bounds() -> None:
    assert bucket_count(0) == MIN_BUCKETS
    assert bucket_count(10**9) == MAX_BUCKETS
    n = bucket_count(100_000)
    assert n & (n - 1) == 0 and n * 32 >= 100_000
    for h in hashes(500):
        b = bucket_of(h, 64)
        start, end = bucket_bounds(64, b)
        assert start <= h and (end is None or h < end)


def test_peer_digests_equal_digests_of_the_shared_chunks() -> None:
    ring = build_ring(MEMBERS, vnodes=32)
    index = OwnerIndex(ring, 3)
    held = hashes(3000)
    pd = PeerDigests("n0", index, 128)
    for h in held:
        if "n0" in index.owners(h):
            pd.add(h, index.owners(h))
    for peer in ("n1", "n2", "n5"):
        shared = [h for h in held if {"n0", peer} <= set(index.owners(h))]
        assert pd.for_peer(peer) == digests(shared, 128)
        assert any(pd.for_peer(peer))
    assert pd.for_peer("nobody") == [b""] * 128


async def test_rate_limiter_paces_and_zero_means_unlimited() -> None:
    free = RateLimiter(0)
    began = time.monotonic()
    for _ in range(100):
        await free.take(10**9)
    assert time.monotonic() - began < 0.5
    limited = RateLimiter(2_000_000, burst=100_000)
    began = time.monotonic()
    for _ in range(6):
        await limited.take(100_000)  # 600 kB at 2 MB/s after a 100 kB burst: ~0.25 s
    elapsed = time.monotonic() - began
    assert 0.2 <= elapsed < 1.0


def view(nodes: list[str], alive: list[str], revision: int = 1) -> View:
    return View("block", revision, {n: NodeRecord(n, f"h:{n}") for n in nodes}, frozenset(alive))


def test_decommission_waits_for_the_grace_and_the_lowest_live_node() -> None:
    nodes = ["a", "b", "c", "d", "e"]

    async def remove(_node: str) -> bool:
        return True

    first = Decommissioner("a", 10.0, remove)
    other = Decommissioner("b", 10.0, remove)
    for d in (first, other):
        d.observe(view(nodes, ["a", "b", "c", "e"]))
    now = time.monotonic()
    assert first.due(now + 5) == [] and first.next_due_in(now) == pytest.approx(10, abs=0.5)
    assert first.due(now + 11) == ["d"]
    assert other.due(now + 11) == []  # "a" is the lowest live id: only it acts
    first.observe(view(nodes, nodes, 2))  # back in time: forgotten
    assert first.due(now + 11) == [] and first.next_due_in() is None


def test_decommission_holds_back_in_an_outage() -> None:
    async def remove(_node: str) -> bool:
        return True

    d = Decommissioner("a", 0.0, remove, replicas=3)
    d.observe(view(["a", "b", "c", "d"], ["a", "b"]))  # half the members down
    assert d.due() == []
    d.observe(view(["a", "b", "c"], ["a", "b"]))  # one of three down, but RF=3 can't remain
    assert d.due() == []
    d.observe(view(["a", "b", "c", "d", "e"], ["a", "b", "c", "e"]))
    assert d.due() == ["d"]


async def test_decommission_loop_removes_once() -> None:
    removed: list[str] = []

    async def remove(node: str) -> bool:
        removed.append(node)
        return True

    d = Decommissioner("a", 0.1, remove)
    d.observe(view(["a", "b", "c", "d"], ["a", "b", "c"]))
    task = asyncio.create_task(d.run())
    try:
        for _ in range(100):
            if removed:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
    assert removed == ["d"]
