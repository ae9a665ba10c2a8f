"""Replica placement, hinted-handoff pairing and ring tracking of the block node (no I/O)."""

from __future__ import annotations

import hashlib
import random

import pytest

from blocknode.placement import RingTracker, members_of, placement
from blocknode.service import bucket_bounds
from tessera.membership import ClusterParams, NodeRecord, View
from tessera.ring import RING_SPACE, Member, build_ring, chunk_position

NODES = [f"n{i}" for i in range(5)]


def chunk_ids(count: int) -> list[bytes]:
    return [hashlib.sha256(str(i).encode()).digest() for i in range(count)]


def view(revision: int, alive: set[str], nodes: list[str] = NODES, port: int = 1000) -> View:
    records = {n: NodeRecord(n, f"127.0.0.1:{port + i}") for i, n in enumerate(nodes)}
    return View("block", revision, records, frozenset(alive))


def test_placement_all_up_is_owners_without_hints() -> None:
    ring = build_ring([Member(n) for n in NODES], vnodes=64)
    for h in chunk_ids(200):
        replicas = placement(ring, h, 3)
        assert [r.member.node_id for r in replicas] == ring.owners(chunk_position(h), 3)
        assert all(r.hint_for == "" for r in replicas)


def test_stand_ins_carry_hints_for_down_owners() -> None:
    members = [Member(n, up=n not in {"n1", "n3"}) for n in NODES]
    ring = build_ring(members, vnodes=64)
    seen_hints = 0
    for h in chunk_ids(300):
        nominal = ring.owners(chunk_position(h), 3)
        replicas = placement(ring, h, 3)
        assert len(replicas) == 3 and all(r.member.up for r in replicas)
        hinted = {r.hint_for for r in replicas if r.hint_for}
        assert hinted == {n for n in nominal if n in {"n1", "n3"}}
        for r in replicas:
            assert (r.member.node_id in nominal) == (r.hint_for == "")
        seen_hints += len(hinted)
    assert seen_hints > 0


def test_placement_with_too_few_live_nodes() -> None:
    ring = build_ring([Member("a"), Member("b", up=False)], vnodes=16)
    h = chunk_ids(1)[0]
    assert [r.member.node_id for r in placement(ring, h, 3)] == ["a"]
    assert placement(build_ring([], vnodes=16), h, 3) == []


async def test_tracker_follows_views_and_reuses_points() -> None:
    tracker = RingTracker("n0", ClusterParams(3, 2, 32))
    assert len(tracker.ring) == 0 and tracker.placement(chunk_ids(1)[0]) == []
    tracker.update(view(5, set(NODES)))
    ring = await tracker.sync()
    assert ring.revision == 5 and [m.node_id for m in ring.members] == NODES
    # Liveness and address changes keep the points; an older view is ignored.
    tracker.update(view(7, set(NODES) - {"n2"}, port=2000))
    tracker.update(view(6, set()))
    ring2 = await tracker.sync()
    assert ring2.revision == 7 and ring2.points is ring.points
    assert not ring2.member("n2").up and ring2.member("n1").address == "127.0.0.1:2001"
    # A new member means new points.
    tracker.update(view(9, set(NODES) | {"n9"}, NODES + ["n9"]))
    ring3 = await tracker.sync()
    assert len(ring3) == 6 and ring3.points != ring.points
    tracker.close()


async def test_tracker_ownership_and_read_sources() -> None:
    tracker = RingTracker("n0", ClusterParams(2, 2, 32))
    tracker.update(view(3, set(NODES) - {"n4"}))
    await tracker.sync()
    for h in chunk_ids(100):
        owners = [r.member.node_id for r in tracker.placement(h)]
        assert tracker.is_owner(h) == ("n0" in owners)
        sources = [m.node_id for m in tracker.read_sources(h, 10)]
        assert "n0" not in sources and "n4" not in sources and len(sources) == 3
        assert [s for s in owners if s != "n0"] == sources[: len([s for s in owners if s != "n0"])]
    tracker.close()


async def test_tracker_takes_the_clusters_parameters_from_the_view() -> None:
    """Parameters published in etcd win over the node's own; a vnodes change rebuilds points."""
    tracker = RingTracker("n0", ClusterParams(3, 2, 32))
    tracker.update(view(3, set(NODES)))
    ring = await tracker.sync()
    assert (tracker.replicas, tracker.vnodes, ring.vnodes) == (3, 32, 32)
    published = View(
        "block", 4, view(3, set(NODES)).nodes, frozenset(NODES), ClusterParams(2, 1, 16)
    )
    tracker.update(published)
    ring2 = await tracker.sync()
    assert (tracker.replicas, tracker.write_quorum, ring2.vnodes) == (2, 1, 16)
    assert ring2.points == build_ring(members_of(published), 16, 4).points
    assert all(len(tracker.placement(h)) == 2 for h in chunk_ids(50))
    tracker.close()


def test_members_of_view() -> None:
    members = members_of(view(1, {"n1"}, ["n1", "n0"]))
    assert [(m.node_id, m.up) for m in members] == [("n0", False), ("n1", True)]


@pytest.mark.parametrize("buckets", [1, 2, 3, 7, 1000, 65536])
def test_bucket_bounds_partition_positions(buckets: int) -> None:
    bounds = [bucket_bounds(buckets, b) for b in range(buckets)]
    assert bounds[0][0] == bytes(8) and bounds[-1][1] is None
    for (_, end), (start, _) in zip(bounds, bounds[1:], strict=False):
        assert end == start
    rng = random.Random(buckets)
    positions = [0, RING_SPACE - 1] + [rng.randrange(RING_SPACE) for _ in range(200)]
    for p in positions:
        b = (p * buckets) >> 64
        start, end = bounds[b]
        key = p.to_bytes(8, "big") + bytes(24)
        assert start <= key and (end is None or key < end)


def test_cluster_params_disagreements_name_only_given_values() -> None:
    cluster = ClusterParams(3, 2, 8192)
    assert cluster.disagreements() == []
    assert cluster.disagreements(replicas=3, vnodes=8192) == []
    assert cluster.disagreements(replicas=2, write_quorum=2) == ["--replicas 2 (cluster: 3)"]
    assert ClusterParams.decode(ClusterParams(2, 1, 64).encode()) == ClusterParams(2, 1, 64)
    with pytest.raises(ValueError, match="W=4"):
        cluster.with_overrides(write_quorum=4).checked()
