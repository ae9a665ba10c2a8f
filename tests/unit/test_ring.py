"""The consistent-hash ring: determinism, replica placement, balance and movement (pure, no I/O).

Balance and movement are measured exactly, with arc lengths of the 2**64 hash space, never by
sampling keys. Property tests use few vnodes (the properties do not depend on how many);
balance and movement use ``DEFAULT_VNODES``, as deployed.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.ring import (
    RING_SPACE,
    Member,
    Ring,
    build_ring,
    chunk_position,
    diff_rings,
    key_position,
    primary_arcs,
    ring_fingerprint,
    update_ring,
    vnode_positions,
)

FAST = settings(max_examples=60, deadline=None)

positions = st.integers(min_value=0, max_value=RING_SPACE - 1)


@st.composite
def member_sets(draw: st.DrawFn, min_size: int = 0, max_size: int = 9) -> list[Member]:
    """Distinct node ids with random zones, weights and liveness."""
    ids = draw(
        st.lists(
            st.text("abcdefgh0123456789-", min_size=1, max_size=6),
            min_size=min_size,
            max_size=max_size,
            unique=True,
        )
    )
    return [
        Member(
            node_id,
            address=f"10.0.0.{i}:7100",
            zone=draw(st.sampled_from(["z1", "z2", "z3", "z4"])),
            weight=draw(st.sampled_from([0.5, 1.0, 2.0])),
            up=draw(st.booleans()),
        )
        for i, node_id in enumerate(ids)
    ]


def cluster(count: int, zone_count: int = 3, prefix: str = "blk-") -> list[Member]:
    """``count`` equal nodes spread round-robin over ``zone_count`` zones."""
    return [
        Member(f"{prefix}{i:04d}", f"10.1.{i // 250}.{i % 250}:7100", f"zone-{i % zone_count}")
        for i in range(count)
    ]


def exact_shares(ring: Ring) -> dict[str, float]:
    """Fraction of the hash space each node is primary for, from the points (arc lengths)."""
    arcs = dict.fromkeys((m.node_id for m in ring.members), 0)
    prev = ring.points[-1][0] - RING_SPACE
    for pos, node_id in ring.points:
        arcs[node_id] += pos - prev
        prev = pos
    assert sum(arcs.values()) == RING_SPACE
    return {n: a / RING_SPACE for n, a in arcs.items()}


def clockwise_nodes(ring: Ring, position: int) -> list[str]:
    """Distinct nodes in the order of their first point at or after ``position`` (wrapping)."""
    pts = ring.points
    start = next((i for i, (p, _) in enumerate(pts) if p >= position), 0)
    walk: list[str] = []
    for i in range(len(pts)):
        node = pts[(start + i) % len(pts)][1]
        if node not in walk:
            walk.append(node)
    return walk


def reference_preference(ring: Ring, position: int) -> list[str]:
    """The placement rule, spelled out: each zone's first node in the order met, then the rest."""
    walk = clockwise_nodes(ring, position)
    firsts: list[str] = []
    for node in walk:
        if ring.member(node).zone not in {ring.member(f).zone for f in firsts}:
            firsts.append(node)
    return firsts + [x for x in walk if x not in firsts]


def spread(values: Sequence[float]) -> float:
    """(max - min) / mean."""
    mean = sum(values) / len(values)
    return (max(values) - min(values)) / mean


def brute_diff(old: Ring, new: Ring, n: int) -> tuple[int, int, int, int, int]:
    """``diff_rings`` the slow, obvious way: evaluate owners on every segment of the union."""
    placed_old = {node for _, node in old.points}
    placed_new = {node for _, node in new.points}
    added, removed = placed_new - placed_old, placed_old - placed_new
    cuts = sorted({p for p, _ in old.points} | {p for p, _ in new.points})
    prev = cuts[-1] - RING_SPACE
    moved = churn = changed = replicas = replica_churn = 0
    for u in cuts:
        length, prev = u - prev, u
        before, after = old.owners(u, n), new.owners(u, n)
        if before[:1] != after[:1]:
            moved += length
            if before and after and before[0] not in removed and after[0] not in added:
                churn += length
        entered = set(after) - set(before)
        if entered or len(after) != len(before):
            changed += length
        replicas += length * len(entered)
        excess = len(entered - added) - len(set(before) & removed)
        replica_churn += length * max(excess, 0)
    return moved, churn, changed, replicas, replica_churn


# ---------------------------------------------------------------- positions and determinism


def test_chunk_and_key_positions() -> None:
    digest = hashlib.sha256(b"hello").digest()
    assert chunk_position(digest) == int.from_bytes(digest[:8], "big")
    assert key_position("user-1") == key_position(b"user-1")
    assert key_position("ü") == int.from_bytes(hashlib.sha256("ü".encode()).digest()[:8], "big")
    with pytest.raises(ValueError):
        chunk_position(digest.hex().encode())
    with pytest.raises(ValueError):
        chunk_position(digest[:8])


def test_vnode_positions_depend_only_on_node_and_index() -> None:
    full = vnode_positions("blk-1", 10)
    assert vnode_positions("blk-1", 3) == full[:3]
    assert vnode_positions("blk-2", 10) != full
    assert all(0 <= p < RING_SPACE for p in full)
    # The same node has the same points whoever else is in the ring.
    alone = build_ring([Member("blk-1")], vnodes=10)
    crowd = build_ring([Member("blk-1"), Member("blk-0"), Member("zz")], vnodes=10)
    assert (
        [p for p, n in crowd.points if n == "blk-1"] == sorted(full) == [p for p, _ in alone.points]
    )
    # Pinned: changing the scheme silently would move every chunk in every cluster.
    assert vnode_positions("blk-1", 1)[0] == int.from_bytes(
        hashlib.sha256(b"tessera-ring-v1\x05blk-1\x00\x00\x00\x00").digest()[:8], "big"
    )


@FAST
@given(member_sets(), st.randoms(use_true_random=False), st.lists(positions, max_size=8))
def test_same_members_in_any_order_give_the_same_ring(
    members: list[Member], rnd: random.Random, probes: list[int]
) -> None:
    shuffled = list(members)
    rnd.shuffle(shuffled)
    a = build_ring(members, vnodes=16, revision=4)
    b = build_ring(shuffled, vnodes=16, revision=4)
    assert a == b
    assert ring_fingerprint(a) == ring_fingerprint(b)
    assert [m.node_id for m in a.members] == sorted(m.node_id for m in members)
    assert list(a.points) == sorted(a.points)
    for p in probes:
        assert a.owners(p, 3) == b.owners(p, 3)
        assert a.live_owners(p, 2) == b.live_owners(p, 2)


def test_same_ring_in_other_processes() -> None:
    """Nothing depends on per-process state such as str hash randomisation."""
    code = (
        "from tessera.ring import *; "
        "r = build_ring([Member(f'n{i}', zone=f'z{i % 3}') for i in range(7)], vnodes=50); "
        "print(ring_fingerprint(r).hex(), r.owners(2**63, 3))"
    )
    here = build_ring([Member(f"n{i}", zone=f"z{i % 3}") for i in range(7)], vnodes=50)
    expected = f"{ring_fingerprint(here).hex()} {here.owners(2**63, 3)}"
    root = Path(__file__).resolve().parents[2]
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == expected


def test_fingerprint_tracks_content() -> None:
    base = cluster(4)
    fp = ring_fingerprint(build_ring(base, vnodes=32))
    assert fp == ring_fingerprint(build_ring(list(reversed(base)), vnodes=32, revision=9))
    variants = [
        [*base[:3], Member(base[3].node_id, base[3].address, base[3].zone, weight=2.0)],
        [*base[:3], Member(base[3].node_id, base[3].address, "zone-x")],
        [*base[:3], Member(base[3].node_id, base[3].address, base[3].zone, up=False)],
        base[:3],
    ]
    for members in variants:
        assert ring_fingerprint(build_ring(members, vnodes=32)) != fp
    assert ring_fingerprint(build_ring(base, vnodes=33)) != fp


def test_weights_set_point_counts() -> None:
    ring = build_ring(
        [Member("a", weight=1.0), Member("b", weight=2.5), Member("c", weight=0.0)], vnodes=10
    )
    counts = {m.node_id: 0 for m in ring.members}
    for _, node in ring.points:
        counts[node] += 1
    assert counts == {"a": 10, "b": 25, "c": 0}
    assert len(ring) == 3 and ring.member("c").weight == 0.0
    assert "c" not in ring.preference_list(12345)
    assert build_ring([Member("tiny", weight=0.001)], vnodes=10).points[0][1] == "tiny"


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        build_ring([Member("a"), Member("a", zone="z2")])
    with pytest.raises(ValueError):
        build_ring([Member("a", weight=-1.0)])
    with pytest.raises(ValueError):
        build_ring([Member("a", weight=float("nan"))])
    with pytest.raises(ValueError):
        build_ring([Member("")])
    with pytest.raises(ValueError):
        build_ring([Member("a")], vnodes=0)
    with pytest.raises(ValueError):
        Ring(revision=0, members=(Member("b"), Member("a")), points=(), vnodes=1)
    with pytest.raises(ValueError):
        Ring(revision=0, members=(Member("a"),), points=((5, "a"), (1, "a")), vnodes=2)
    with pytest.raises(ValueError):
        Ring(revision=0, members=(Member("a"),), points=((5, "b"),), vnodes=1)
    with pytest.raises(KeyError):
        build_ring([Member("a")], vnodes=4).member("b")


def test_direct_construction_reuses_points() -> None:
    """A liveness change keeps the points (what ring trackers do) and behaves like a rebuild."""
    members = cluster(6)
    ring = build_ring(members, vnodes=64, revision=1)
    down = [
        Member(m.node_id, m.address, m.zone, m.weight, up=i % 2 == 0) for i, m in enumerate(members)
    ]
    reused = Ring(revision=2, members=tuple(down), points=ring.points, vnodes=64)
    rebuilt = build_ring(down, vnodes=64, revision=2)
    assert reused == rebuilt and reused.points is ring.points
    for p in range(0, RING_SPACE, RING_SPACE // 97):
        assert reused.live_owners(p, 3) == rebuilt.live_owners(p, 3)
    assert "points=" in repr(ring) and len(repr(ring)) < 200


# ---------------------------------------------------------------- owners and preference lists


def test_empty_and_tiny_rings() -> None:
    empty = build_ring([])
    assert len(empty) == 0 and empty.owners(0, 3) == [] and empty.preference_list(0) == []
    assert empty.live_owners(0, 3) == []
    one = build_ring([Member("solo")], vnodes=4)
    assert one.owners(RING_SPACE - 1, 3) == ["solo"] and one.owners(0, 0) == []


def test_owner_is_first_point_clockwise_with_wraparound() -> None:
    ring = build_ring(cluster(5, zone_count=1), vnodes=8)
    (first, first_node), (second, second_node) = ring.points[0], ring.points[1]
    last = ring.points[-1][0]
    assert 0 < first < second < last < RING_SPACE - 1  # true for these ids
    assert ring.owners(first, 1) == [first_node]  # a point owns its own position
    assert ring.owners(first - 1, 1) == [first_node]
    assert ring.owners(first + 1, 1) == [second_node]
    assert ring.owners(last + 1, 1) == [first_node]  # past the last point: wrap around
    assert ring.owners(RING_SPACE - 1, 1) == [first_node]
    assert ring.owners(0, 1) == [first_node]


@FAST
@given(member_sets(min_size=1), positions, st.integers(min_value=1, max_value=7))
def test_owners_properties(members: list[Member], position: int, n: int) -> None:
    ring = build_ring(members, vnodes=8)
    placed = {node for _, node in ring.points}
    pref = ring.preference_list(position)
    owners = ring.owners(position, n)
    assert sorted(pref) == sorted(placed)  # every placed node, once
    assert owners == pref[:n]
    assert len(owners) == min(n, len(placed)) and len(set(owners)) == len(owners)
    zone_count = len({ring.member(x).zone for x in placed})
    distinct = min(n, zone_count)
    assert len({ring.member(x).zone for x in owners[:distinct]}) == distinct
    if zone_count >= n:
        assert len({ring.member(x).zone for x in owners}) == len(owners)
    assert pref == reference_preference(ring, position)
    # One zone: plain consistent hashing, the first n distinct nodes clockwise.
    flat = build_ring([Member(m.node_id, weight=m.weight) for m in members], vnodes=8)
    assert flat.preference_list(position) == clockwise_nodes(flat, position)


def test_zone_preference_then_clockwise_fill() -> None:
    """Two zones, RF=3: one node per zone first (in the order met), then the next node clockwise."""
    members = [Member("a1", zone="A"), Member("a2", zone="A"), Member("b1", zone="B")]
    members += [Member("a3", zone="A")]
    ring = build_ring(members, vnodes=64)
    for p in range(0, RING_SPACE, RING_SPACE // 101):
        walk = clockwise_nodes(ring, p)
        first_a = next(x for x in walk if x != "b1")
        firsts = [x for x in walk if x in (first_a, "b1")]
        assert ring.preference_list(p) == firsts + [x for x in walk if x not in firsts]
        owners = ring.owners(p, 3)
        assert {ring.member(x).zone for x in owners[:2]} == {"A", "B"}


@FAST
@given(member_sets(min_size=1), positions, st.integers(min_value=1, max_value=5))
def test_live_owners_skip_down_nodes(members: list[Member], position: int, n: int) -> None:
    ring = build_ring(members, vnodes=8)
    pref = ring.preference_list(position)
    live = ring.live_owners(position, n)
    assert live == [x for x in pref if ring.member(x).up][:n]
    assert all(ring.member(x).up for x in live)
    assert len(live) == min(n, sum(ring.member(x).up for x in pref))
    # Everything up: live owners are the owners.
    all_up = build_ring([Member(m.node_id, zone=m.zone, weight=m.weight) for m in members], 8)
    assert all_up.live_owners(position, n) == all_up.owners(position, n)
    # The owners that are up keep their slots; stand-ins come after them, in preference order.
    up_owners = [x for x in ring.owners(position, n) if ring.member(x).up]
    assert live[: len(up_owners)] == up_owners


# ---------------------------------------------------------------- balance (exact arc lengths)


@pytest.mark.parametrize("count", [5, 10, 50])
@pytest.mark.parametrize("prefix", ["blk-", "node-eu-west-1a-"])
def test_balance_with_default_vnodes(count: int, prefix: str) -> None:
    """Issue tracker: the most and least loaded nodes differ by under 10% of the mean."""
    ring = build_ring(cluster(count, prefix=prefix))
    shares = exact_shares(ring)
    assert {n: a / RING_SPACE for n, a in primary_arcs(ring).items()} == shares
    assert spread(list(shares.values())) < 0.10


def test_balance_with_mixed_weights() -> None:
    """Share per unit of weight is as even as with equal weights."""
    members = [
        Member(f"w-{i:03d}", zone=f"zone-{i % 3}", weight=(0.5, 1.0, 2.0)[i % 3]) for i in range(30)
    ]
    ring = build_ring(members)
    shares = exact_shares(ring)
    total_weight = sum(m.weight for m in members)
    per_weight = [shares[m.node_id] / (m.weight / total_weight) for m in members]
    assert spread(per_weight) < 0.10


def test_too_few_vnodes_are_not_balanced() -> None:
    """Why DEFAULT_VNODES is large: 128 random points per node miss the 10% target badly."""
    ring = build_ring(cluster(50), vnodes=128)
    assert spread(list(exact_shares(ring).values())) > 0.20


# ---------------------------------------------------------------- movement


@FAST
@given(member_sets(max_size=7), member_sets(max_size=3), st.integers(min_value=1, max_value=4))
def test_diff_rings_matches_brute_force(
    old_members: list[Member], extra: list[Member], n: int
) -> None:
    """The windowed diff equals a full evaluation, for joins, leaves, reweights and rezones."""
    known = {m.node_id for m in old_members}
    new_members = old_members[1:] + [m for m in extra if m.node_id not in known]
    if old_members[1:2]:
        m = old_members[1]
        new_members[0] = Member(m.node_id, zone="z9", weight=m.weight * 2)
    old, new = build_ring(old_members, vnodes=6), build_ring(new_members, vnodes=6)
    if not old.points and not new.points:
        return
    d = diff_rings(old, new, n)
    got = (d.primary_moved, d.primary_churn, d.sets_changed, d.replicas_moved, d.replica_churn)
    assert got == brute_diff(old, new, n)


@pytest.mark.parametrize("zone_count", [1, 3])
def test_join_moves_only_to_the_new_node(zone_count: int) -> None:
    count, n = 21, 3
    members = cluster(count, zone_count)
    old = build_ring(members)
    new = build_ring([*members, Member("blk-new", zone="zone-0")])
    ideal = 1 / (count + 1)
    d = diff_rings(old, new, n)
    # Every range whose primary changes goes to the new node, and nothing else changes hands.
    assert d.primary_churn == 0 and d.replica_churn == 0
    assert d.primary_moved == primary_arcs(new)["blk-new"]
    assert 0.7 * ideal <= d.primary_moved / RING_SPACE <= 1.3 * ideal
    # Replica copies: the new node's share of all replicas, and every changed set gained it.
    # With zones, it joins a zone of count/3 nodes and takes 1/(count/3 + 1) of that zone's
    # replica, which is 1/(count + 3) of all replicas.
    zone_ideal = ideal if zone_count == 1 else 1 / (count + zone_count)
    assert 0.7 * zone_ideal <= d.replicas_moved / (n * RING_SPACE) <= 1.3 * zone_ideal
    assert d.sets_changed == d.replicas_moved  # each changed set gained exactly one node
    assert d.sets_changed / RING_SPACE <= 1.3 * n * ideal


@pytest.mark.parametrize("zone_count", [1, 3])
def test_leave_moves_only_the_leaving_nodes_ranges(zone_count: int) -> None:
    count, n = 21, 3
    members = cluster(count, zone_count)
    old = build_ring(members)
    gone = members[7].node_id
    new = build_ring([m for m in members if m.node_id != gone])
    ideal = 1 / count
    d = diff_rings(old, new, n)
    assert d.primary_churn == 0 and d.replica_churn == 0
    assert d.primary_moved == primary_arcs(old)[gone]
    assert 0.7 * ideal <= d.primary_moved / RING_SPACE <= 1.3 * ideal
    zone_ideal = ideal if zone_count == 1 else 1 / count  # zones of count/3, one replica each
    assert 0.7 * zone_ideal <= d.replicas_moved / (n * RING_SPACE) <= 1.3 * zone_ideal
    assert d.sets_changed == d.replicas_moved  # each changed set lost the node, got one stand-in
    assert d.sets_changed / RING_SPACE <= 1.3 * n * ideal


def test_join_of_several_nodes_and_weight_change() -> None:
    members = cluster(27)
    old = build_ring(members)
    joined = [Member(f"new-{i}", zone=f"zone-{i % 3}") for i in range(3)]
    d = diff_rings(old, build_ring([*members, *joined]), 3)
    ideal = 3 / 30
    assert d.primary_churn == 0 and d.replica_churn == 0
    assert 0.8 * ideal <= d.primary_moved / RING_SPACE <= 1.2 * ideal
    assert 0.8 * ideal <= d.replicas_moved / (3 * RING_SPACE) <= 1.2 * ideal
    # Doubling one node's weight moves data only to that node.
    heavier = [
        Member(m.node_id, zone=m.zone, weight=2.0 if i == 3 else 1.0) for i, m in enumerate(members)
    ]
    before, after = build_ring(members, vnodes=64), build_ring(heavier, vnodes=64)
    assert diff_rings(before, after, 3).replicas_moved > 0
    for u in sorted({p for p, _ in before.points} | {p for p, _ in after.points}):
        assert set(after.owners(u, 3)) - set(before.owners(u, 3)) <= {members[3].node_id}


@FAST
@given(member_sets(max_size=8), member_sets(max_size=4), st.integers(0, 3))
def test_update_ring_equals_a_full_build(
    old_members: list[Member], extra: list[Member], drop: int
) -> None:
    known = {m.node_id for m in old_members}
    new_members = old_members[drop:] + [m for m in extra if m.node_id not in known]
    if new_members:  # one node changes weight, one changes zone and liveness
        m = new_members[0]
        new_members[0] = Member(m.node_id, m.address, m.zone, m.weight * 3)
    if len(new_members) > 1:
        m = new_members[1]
        new_members[1] = Member(m.node_id, m.address, "z9", m.weight, not m.up)
    old = build_ring(old_members, vnodes=12, revision=1)
    assert update_ring(old, new_members, 2) == build_ring(new_members, vnodes=12, revision=2)
