"""The consistent-hash ring: pure data and pure functions, no I/O.

Building a ring and using it are separate steps, as in OpenStack Swift's ``common/ring``:
``build_ring()`` turns a membership snapshot (from etcd, in ``ring_watch``) into an immutable
``Ring``; ``Ring.owners()`` and friends answer "which nodes hold this chunk?" from that value.
Every process that builds from the same members and ``vnodes`` gets the identical ring
(compare ``ring_fingerprint()``), so no ring is ever shipped over the wire.

Placement scheme: independent SHA-256 virtual nodes, and enough of them
------------------------------------------------------------------------
Each node gets ``round(vnodes * weight)`` points. Point ``i`` of node ``id`` sits at 8 bytes of
``SHA-256("tessera-ring-v1" | len(id) | id | i // 4)``: one digest yields four 64-bit positions.
A position depends only on ``(node_id, i)``, never on the other members, and a key belongs to
the first point clockwise from it (the arc ``(previous point, point]``). So when a node joins,
the only arcs that change hands are those its own points cut off, and they all go *to* it; when
it leaves, only its own arcs change hands. Movement is exactly the node's share, never churn
among the others. That property is why the placement is kept this simple.

The price is balance. A node's primary share is the sum of the arcs in front of its points,
and with positions independent of one another those arcs are (nearly) exponential: the share's
relative standard deviation is about ``1 / sqrt(points per node)``. That is 8.8% at 128 vnodes,
which is why "100+ vnodes give under 10% max-min spread" was false: the spread (max - min over
the mean) of N nodes is about ``2 * sqrt(2 ln N)`` standard deviations, ~4.5 sigma for 50 nodes.
Measured with exact arc lengths (means over many random node-name sets):

    vnodes  sigma   spread N=5  N=10   N=50     points per node -> memory (CPython)
       128   8.8%     19%       28%    42%
      1024   2.9%      6%        8%    13%
      4096   1.5%      4%        5%     7%      (p99 at N=50: ~9.5%)
      8192   1.1%      3%        4%     5%

The alternatives were measured too, and do not help:

* Jitter-free spacing (node ``id`` at ``offset(id) + i * 2**64 / vnodes``): every node then has
  the same stride, the ring is periodic with that stride, and each node's share equals its
  share on a ring with ONE point per node. Spread 2-5x the mean. Far worse, not better.
* Stratified or per-node low-discrepancy (Weyl) offsets: no gain beyond N of about 10. The
  union of many independent point sets is nearly a Poisson process whatever each set's own
  regularity (Palm-Khintchine), so the arcs stay exponential. Any scheme whose positions depend
  only on ``(node_id, index)`` has this floor; beating it needs positions that know about the
  other members (Swift's partition balancer, Cassandra's token allocator), which moves data
  among old nodes on a join, or is history-dependent rather than a function of the members.
* Rendezvous hashing over fixed partitions: same 1/sqrt(partitions per node) floor, O(N) per
  lookup.

So DEFAULT_VNODES is 4096: sigma ~1.5%, spread ~5% at 10 nodes and ~7% at 50 (under 10% in
>99% of random 50-node clusters), weights in 1/4096 steps, and a join or leave moves the
ideal 1/N. The cost is points: N * 4096 of them, about 120 bytes each in CPython and ~4 us
each to build (~25 MB and ~1 s for 50 nodes). Past a few hundred nodes, set the cluster's
``vnodes`` lower (the total of ``N * vnodes`` is what costs memory; 1M-2M points is cheap)
and expect ``spread ~ 2 * sqrt(2 ln N) / sqrt(vnodes)``; ``bench/ring_sim.py`` prints the
figures, and ``docs/scale.md`` discusses trimming node weights from measured shares, which
keeps every movement between the trimmed node and its neighbours only.

Replica placement is zone-aware: walking clockwise over distinct nodes, the first node of each
zone not yet used is taken first (in the order the zones are met), then the remaining nodes in
clockwise order. The ordered result is the preference list; ``owners(p, n)`` is its first
``n``. Adding a node only ever moves other nodes *later* in a preference list, so a join puts
the new node into some replica sets and changes nothing else; a leave is the reverse.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from types import MappingProxyType

NodeId = str

RING_SPACE = 1 << 64
"""Positions live in ``[0, RING_SPACE)``."""

DEFAULT_VNODES = 4096
"""Points per unit of weight; see the module docstring for why this many."""

_DOMAIN = b"tessera-ring-v1"
_POINTS_PER_DIGEST = 4
_IDX_BITS = 32
_IDX_MASK = (1 << _IDX_BITS) - 1
_MAX_NODE_ID_BYTES = 255


@dataclass(frozen=True)
class Member:
    """One registered node as the ring sees it.

    Attributes:
        node_id: Stable, unique id of the node.
        address: ``host:port`` where it serves (not used for placement).
        zone: Failure zone; replicas prefer distinct zones.
        weight: Relative capacity; the node gets ``round(vnodes * weight)`` points (at least one
            when the weight is positive; zero for weight 0, a drained node that owns nothing).
        up: Liveness (its lease is alive). Membership is separate from liveness: a down node
            keeps its ranges and ``live_owners()`` sends its writes to stand-ins.
    """

    node_id: str
    address: str = ""
    zone: str = "default"
    weight: float = 1.0
    up: bool = True


@dataclass(frozen=True, repr=False)
class Ring:
    """An immutable consistent-hash ring built from one membership snapshot.

    Attributes:
        revision: The etcd revision the membership was read at (0 when not from etcd).
        members: All members, sorted by ``node_id`` (including any with no points).
        points: ``(position, node_id)`` pairs sorted by position, then node id.
        vnodes: Points per unit of weight used to build it.
    """

    revision: int
    members: tuple[Member, ...]
    points: tuple[tuple[int, str], ...]
    vnodes: int
    # Derived in __post_init__ from the fields above; immutable, never updated afterwards.
    _positions: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _point_member: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _member_zone: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _member_up: tuple[bool, ...] = field(init=False, repr=False, compare=False)
    _ids: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False)
    _placed: int = field(init=False, repr=False, compare=False)
    _zones: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Check the invariants and derive the lookup tables.

        Raises:
            ValueError: Members not sorted or not unique, points not sorted, or a point naming
                a node that is not a member.
        """
        ids = [m.node_id for m in self.members]
        if any(a >= b for a, b in pairwise(ids)):
            raise ValueError("ring members must be sorted by node_id and unique")
        index = {node_id: i for i, node_id in enumerate(ids)}
        positions = tuple(p for p, _ in self.points)
        try:
            point_member = tuple(map(index.__getitem__, (n for _, n in self.points)))
        except KeyError as e:
            raise ValueError(f"ring point names unknown member {e.args[0]!r}") from None
        if any(a > b for a, b in pairwise(positions)):
            raise ValueError("ring points must be sorted by position")
        if positions and not (0 <= positions[0] and positions[-1] < RING_SPACE):
            raise ValueError("ring positions must lie in [0, 2**64)")
        zone_names = sorted({m.zone for m in self.members})
        zone_index = {z: i for i, z in enumerate(zone_names)}
        placed = set(point_member)
        set_ = object.__setattr__
        set_(self, "_positions", positions)
        set_(self, "_point_member", point_member)
        set_(self, "_member_zone", tuple(zone_index[m.zone] for m in self.members))
        set_(self, "_member_up", tuple(m.up for m in self.members))
        set_(self, "_ids", tuple(ids))
        set_(self, "_index", MappingProxyType(index))
        set_(self, "_placed", len(placed))
        set_(self, "_zones", len({self.members[i].zone for i in placed}))

    def __repr__(self) -> str:
        """A summary; the points themselves would be megabytes."""
        return (
            f"Ring(revision={self.revision}, members={len(self.members)}, "
            f"points={len(self.points)}, vnodes={self.vnodes}, zones={self._zones})"
        )

    def __len__(self) -> int:
        """Number of members (including any with weight 0)."""
        return len(self.members)

    def member(self, node_id: str) -> Member:
        """The member with this id.

        Raises:
            KeyError: No such member.
        """
        return self.members[self._index[node_id]]

    def owners(self, position: int, n: int) -> list[str]:
        """The ``n`` replica nodes for a position, ignoring liveness.

        Walks clockwise from ``position`` over distinct nodes, taking the first node of each
        zone not yet used while there are unused zones, then the remaining distinct nodes in
        clockwise order. Returns fewer than ``n`` only when the ring has fewer placed nodes.

        Args:
            position: A position in ``[0, 2**64)`` (``chunk_position``/``key_position``).
            n: How many replicas (RF).

        Returns:
            Node ids, primary first.
        """
        return self._walk(position, n, live=False)

    def preference_list(self, position: int) -> list[str]:
        """Every placed node in the order ``owners()`` picks them.

        ``owners(p, n) == preference_list(p)[:n]`` for every ``n``.
        """
        return self._walk(position, self._placed, live=False)

    def live_owners(self, position: int, n: int) -> list[str]:
        """The first ``n`` nodes of the preference list that are up.

        When an owner is down, the next nodes on the preference list stand in for it (the
        hinted-handoff targets). Equals ``owners(position, n)`` when every node is up.
        """
        return self._walk(position, n, live=True)

    def _walk(self, position: int, n: int, *, live: bool) -> list[str]:
        """Walk clockwise from ``position``; the first ``n`` of the (live) preference list."""
        positions = self._positions
        count = len(positions)
        if n <= 0 or count == 0:
            return []
        point_member = self._point_member
        member_zone = self._member_zone
        member_up = self._member_up
        zones = self._zones
        placed = self._placed
        firsts: list[int] = []  # first node met in each zone, in the order the zones are met
        others: list[int] = []  # every other node, clockwise
        used_zones: list[int] = []
        n_firsts = 0  # how many of firsts (and of others) count: all of them, or the live ones
        n_others = 0
        i = bisect_left(positions, position)
        for _ in range(count):
            if i == count:
                i = 0
            k = point_member[i]
            i += 1
            if k in firsts or k in others:
                continue
            counts = member_up[k] or not live
            z = member_zone[k]
            if z in used_zones:
                others.append(k)
                n_others += counts
            else:
                used_zones.append(z)
                firsts.append(k)
                n_firsts += counts
            # Stop once the first n counted entries of firsts + others cannot change: later
            # zone-firsts only append to firsts, later others only append to others.
            if n_firsts >= n or (len(firsts) == zones and n_firsts + n_others >= n):
                break
            if len(firsts) + len(others) == placed:
                break
        ids = self._ids
        if live:
            return [ids[k] for k in firsts + others if member_up[k]][:n]
        return [ids[k] for k in (firsts + others)[:n]]


def chunk_position(chunk_hash: bytes) -> int:
    """Ring position of a chunk: the first 8 bytes of its SHA-256 id, big-endian.

    Args:
        chunk_hash: The 32-byte SHA-256 digest that names the chunk.

    Raises:
        ValueError: Not 32 bytes (a hex string or a truncated id is a bug upstream).
    """
    if len(chunk_hash) != 32:
        raise ValueError(f"chunk id must be a 32-byte SHA-256 digest, got {len(chunk_hash)} bytes")
    return int.from_bytes(chunk_hash[:8], "big")


def key_position(key: str | bytes) -> int:
    """Ring position of any other key (a user id, a namespace id): ``sha256(key)[:8]``, big-endian.

    A ``str`` key is hashed as UTF-8.
    """
    data = key.encode() if isinstance(key, str) else bytes(key)
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def vnode_count(weight: float, vnodes: int) -> int:
    """Points a node of this weight gets: ``round(vnodes * weight)``, at least 1 if weight > 0.

    Raises:
        ValueError: Negative, NaN or infinite weight.
    """
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
    if weight == 0:
        return 0
    return max(1, round(vnodes * weight))


def vnode_positions(node_id: str, count: int) -> list[int]:
    """Positions of a node's first ``count`` virtual nodes; depends on nothing else.

    Point ``i`` is bytes ``8*(i%4) .. 8*(i%4)+8`` of
    ``SHA-256(b"tessera-ring-v1" + len(id) + id + (i // 4).to_bytes(4, "big"))``,
    big-endian, with ``id`` in UTF-8 and ``len(id)`` one byte.

    Raises:
        ValueError: Empty node id or one longer than 255 bytes in UTF-8.
    """
    raw = node_id.encode()
    if not raw or len(raw) > _MAX_NODE_ID_BYTES:
        raise ValueError(f"node_id must be 1..{_MAX_NODE_ID_BYTES} bytes of UTF-8: {node_id!r}")
    prefix = _DOMAIN + bytes((len(raw),)) + raw
    sha = hashlib.sha256
    from_bytes = int.from_bytes
    out: list[int] = []
    for block in range((count + _POINTS_PER_DIGEST - 1) // _POINTS_PER_DIGEST):
        d = sha(prefix + block.to_bytes(4, "big")).digest()
        out += (
            from_bytes(d[0:8], "big"),
            from_bytes(d[8:16], "big"),
            from_bytes(d[16:24], "big"),
            from_bytes(d[24:32], "big"),
        )
    del out[count:]
    return out


def build_ring(members: Iterable[Member], vnodes: int = DEFAULT_VNODES, revision: int = 0) -> Ring:
    """Build the ring for a membership snapshot.

    Deterministic: the same members (in any order) and ``vnodes`` give an identical ``Ring``
    in every process. A node gets ``vnode_count(weight, vnodes)`` points.

    Args:
        members: The registered nodes (up or down; membership, not liveness).
        vnodes: Points per unit of weight; every process of a cluster must use the same value.
        revision: The etcd revision the snapshot was read at.

    Raises:
        ValueError: Duplicate node ids, a bad node id or weight, or ``vnodes < 1``.
    """
    if vnodes < 1:
        raise ValueError(f"vnodes must be >= 1, got {vnodes}")
    ordered = tuple(sorted(members, key=lambda m: m.node_id))
    if any(a.node_id == b.node_id for a, b in pairwise(ordered)):
        raise ValueError("duplicate node_id in ring members")
    if len(ordered) > _IDX_MASK:
        raise ValueError("too many ring members")
    # Sort (position << 32 | member index): plain ints sort much faster than tuples, and the
    # member index breaks the (astronomically unlikely) tie of two equal positions by node id.
    keyed: list[int] = []
    for k, m in enumerate(ordered):
        keyed += [
            (p << _IDX_BITS) | k for p in vnode_positions(m.node_id, vnode_count(m.weight, vnodes))
        ]
    keyed.sort()
    ids = [m.node_id for m in ordered]
    points = tuple([(v >> _IDX_BITS, ids[v & _IDX_MASK]) for v in keyed])
    return Ring(revision=revision, members=ordered, points=points, vnodes=vnodes)


def primary_arcs(ring: Ring) -> dict[str, int]:
    """Exact length of the hash space each member is primary for (sums to ``2**64``).

    A point owns the arc from the previous point (exclusive) up to itself (inclusive).
    Members without points get 0. An empty ring gives zeros.
    """
    arcs = dict.fromkeys((m.node_id for m in ring.members), 0)
    points = ring.points
    if not points:
        return arcs
    prev = points[-1][0] - RING_SPACE
    for pos, node_id in points:
        arcs[node_id] += pos - prev
        prev = pos
    return arcs


def ring_fingerprint(ring: Ring) -> bytes:
    """SHA-256 over the ring's members and points, to compare rings across processes.

    Covers every member field (liveness included: two processes that disagree on who is up
    route writes differently) and every point. The etcd revision is not included: two rings
    with the same content are the same ring whatever revision they were read at.
    """
    h = hashlib.sha256()
    h.update(_DOMAIN + b"|fingerprint|" + ring.vnodes.to_bytes(8, "big"))
    h.update(len(ring.members).to_bytes(8, "big"))
    for m in ring.members:
        for text in (m.node_id, m.address, m.zone):
            raw = text.encode()
            h.update(len(raw).to_bytes(4, "big") + raw)
        h.update(float(m.weight).hex().encode() + b"|" + (b"\x01" if m.up else b"\x00"))
    h.update(len(ring.points).to_bytes(8, "big"))
    h.update(b"".join(p.to_bytes(8, "big") for p in ring._positions))
    h.update(b"".join(k.to_bytes(4, "big") for k in ring._point_member))
    return h.digest()


@dataclass(frozen=True)
class RingDiff:
    """What changes between two rings, measured exactly in units of hash space.

    Attributes:
        n: Replication factor the replica figures are for.
        primary_moved: Space whose primary node changed.
        primary_churn: Space whose primary moved from a node still in the ring to one that was
            already in it (neither joined nor left): movement a pure join or leave never needs.
        sets_changed: Space whose replica set (as a set) changed.
        replicas_moved: Sum over space of replicas that enter a set (copies to make);
            divide by ``n * 2**64`` for the fraction of all stored replicas.
        replica_churn: Entries beyond what joins and leaves need: at each position, entries
            by nodes that did not join, minus the replicas lost with nodes that left.
    """

    n: int
    primary_moved: int
    primary_churn: int
    sets_changed: int
    replicas_moved: int
    replica_churn: int


def _stop_window(ring: Ring, index: int, n: int) -> int:
    """Index of the latest point before ``index`` whose walk stops before reaching ``index``.

    Walks that start at or before that point never visit point ``index``: the points between
    them and it already satisfy ``owners``'s stopping rule, and the rule only gets easier to
    satisfy as a walk starts earlier. Returns -1 when every walk on the ring visits the point.
    """
    count = len(ring._positions)
    point_member = ring._point_member
    member_zone = ring._member_zone
    seen: set[int] = set()
    zones: set[int] = set()
    j = index
    for _ in range(count - 1):
        j = j - 1 if j > 0 else count - 1
        k = point_member[j]
        if k in seen:
            continue
        seen.add(k)
        zones.add(member_zone[k])
        if (
            len(zones) >= n
            or (len(zones) == ring._zones and len(seen) >= n)
            or len(seen) == ring._placed
        ):
            return j
    return -1


def diff_rings(old: Ring, new: Ring, n: int = 3) -> RingDiff:
    """Measure exactly how placement changes from ``old`` to ``new`` (a join, leave, reweight).

    Only the neighbourhoods of changed points are evaluated: a position's owners depend on the
    points its walk visits, so a position whose walks (on both rings) reach no added or removed
    point keeps its owners. Cost is O(changed points x walk length), not O(ring).

    Args:
        old: The ring before.
        new: The ring after.
        n: Replication factor for the replica figures.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    old_zone = {m.node_id: m.zone for m in old.members}
    new_zone = {m.node_id: m.zone for m in new.members}
    rezoned = {i for i, z in new_zone.items() if old_zone.get(i, z) != z}
    old_placed = {old._ids[k] for k in set(old._point_member)}
    new_placed = {new._ids[k] for k in set(new._point_member)}
    added = new_placed - old_placed
    removed = old_placed - new_placed

    # Changed points: (ring, index) pairs present on one side only (a sorted merge).
    changed: list[tuple[Ring, int]] = []
    op, np_ = old.points, new.points
    a = b = 0
    while a < len(op) or b < len(np_):
        if b == len(np_) or (a < len(op) and op[a] < np_[b]):
            changed.append((old, a))
            a += 1
        elif a == len(op) or np_[b] < op[a]:
            changed.append((new, b))
            b += 1
        else:
            if op[a][1] in rezoned:
                changed += ((old, a), (new, b))
            a += 1
            b += 1

    # Affected segment ends: union breakpoints u in (stop point, changed point].
    full = False
    ends: set[int] = set()
    for ring, idx in changed:
        stop = _stop_window(ring, idx, n)
        if stop < 0:
            full = True
            break
        lo, hi = ring._positions[stop], ring._positions[idx]
        for r in (old, new):
            ends.update(_positions_in(r._positions, lo, hi))
    if full:
        ends = set(old._positions) | set(new._positions)

    union_pred = _UnionPred(old._positions, new._positions)
    primary_moved = primary_churn = sets_changed = replicas_moved = replica_churn = 0
    for u in ends:
        length = u - union_pred(u)
        before = old.owners(u, n)
        after = new.owners(u, n)
        if before[:1] != after[:1]:
            primary_moved += length
            if before and after and before[0] not in removed and after[0] not in added:
                primary_churn += length
        entered = set(after).difference(before)
        if entered or len(after) != len(before):
            sets_changed += length
        replicas_moved += length * len(entered)
        lost = sum(1 for x in before if x in removed)
        excess = sum(1 for x in entered if x not in added) - lost
        if excess > 0:
            replica_churn += length * excess
    return RingDiff(n, primary_moved, primary_churn, sets_changed, replicas_moved, replica_churn)


def _positions_in(positions: tuple[int, ...], lo: int, hi: int) -> list[int]:
    """Positions ``p`` with ``lo < p <= hi``, going clockwise (wrapping when ``hi <= lo``)."""
    if lo < hi:
        return list(positions[bisect_right(positions, lo) : bisect_right(positions, hi)])
    return list(positions[bisect_right(positions, lo) :]) + list(
        positions[: bisect_right(positions, hi)]
    )


class _UnionPred:
    """Predecessor (strictly before, clockwise) of a position among two rings' points."""

    def __init__(self, a: tuple[int, ...], b: tuple[int, ...]) -> None:
        self._sides = [s for s in (a, b) if s]

    def __call__(self, u: int) -> int:
        best = None
        for s in self._sides:
            i = bisect_left(s, u)
            p = s[i - 1] if i > 0 else s[-1] - RING_SPACE
            if best is None or p > best:
                best = p
        assert best is not None
        return best
