"""The consistent-hash ring: pure data and pure functions, no I/O.

Building a ring and using it are separate steps, as in OpenStack Swift's ``common/ring``:
``build_ring()`` turns a membership snapshot (read from etcd elsewhere) into an immutable
``Ring``; ``Ring.owners()`` and friends answer "which nodes hold this chunk?" from that value.
Every process that builds from the same members and ``vnodes`` gets the identical ring
(compare ``ring_fingerprint()``), so no ring is ever shipped over the wire.

Placement: independent SHA-256 virtual nodes, and enough of them
-----------------------------------------------------------------
A node gets ``round(vnodes * weight)`` points. Point ``i`` of node ``id`` is 8 bytes of
``SHA-256("tessera-ring-v1" | len(id) | id | i // 4)`` (one digest, four positions), so it
depends on ``(node_id, i)`` only. A key belongs to the first point clockwise from it (the arc
``(previous point, point]``). When a node joins, the only arcs that change hands are those its
points cut off, and they all go *to* it; when it leaves, only its arcs change hands; a weight
change adds or drops points of that node only (its points are a prefix of one sequence).
Movement is the node's share and nothing else: no churn among the other nodes.

The price is balance. A node's share is the sum of the arcs in front of its points; with
independent positions those arcs are nearly exponential, so the share's relative standard
deviation is about ``1/sqrt(vnodes)`` and the spread (max - min) / mean over N nodes about
``2 * sqrt(2 ln N)`` of those. The issue tracker's "100+ vnodes keep max and min within 10% of
the mean" is false for this (and any) independent placement. Measured, exact arc lengths, mean
spread over 10-300 random node-name sets (``bench/ring_sim.py`` has the large-N figures):

    vnodes   sigma    N=5    N=10   N=50
       128    8.8%    20%    27%    39%     (>=10% in 97-100% of clusters)
      1024    3.1%     6%     8%    13%
      4096    1.6%     4%     5%     7%     (N=50: 9.7% worst of 150; N=100: 3% of clusters >=10%)
      8192    1.1%     3%     3%     5%     (N=50: 7.5% worst of 60)

Alternatives, also measured, and rejected:

* Jitter-free spacing (node ``id`` at ``offset(id) + i * 2**64 / vnodes``): every node has the
  same stride, so the ring is periodic and each node's share is its share on a ring with ONE
  point per node: spread 2x (N=5) to 5x (N=50) the mean, whatever ``vnodes`` is.
* Stratified offsets (one point per 1/vnodes of the ring) or per-node Weyl sequences: no
  better than random from N of about 10 (Weyl has worse tails). The union of many independent
  point sets is close to a Poisson process whatever their own regularity (Palm-Khintchine), so
  arcs stay exponential. Any placement whose positions depend only on ``(node_id, index)`` has
  this floor; beating it needs positions that know the other members (Swift's partition
  balancer, Cassandra's token allocator): movement among old nodes on a join, or a ring that
  depends on history rather than on the members.
* Rendezvous hashing over fixed partitions: the same 1/sqrt(partitions per node) floor, and
  O(N) per lookup.

So ``DEFAULT_VNODES = 8192``: under 10% spread with a wide margin up to a few hundred nodes
(4096 would pass at p99 for 50 nodes, not robustly). The cost is points: ~115 bytes each in
CPython and ~1.5 us each to build, e.g. 50 nodes = 410k points = ~47 MB, ~0.6 s. ``vnodes`` is
a cluster-wide constant (changing it moves data); a cluster of thousands of nodes should set
it so that ``N * vnodes`` stays around 1-3M points, and then balance by trimming weights from
measured replica shares (``bench/ring_sim.py``: 1000 nodes x 256 vnodes, replica-share sigma
6.4% -> 1.1% in three trims moving 3.7%, 1.4% and 0.9% of replicas; see ``docs/scale.md``).

Replicas: walking clockwise over distinct nodes, the first node of each zone not yet used is
taken first (in the order the zones are met), then the remaining nodes in clockwise order.
That order is the preference list; ``owners(p, n)`` is its first ``n``. A join only ever moves
other nodes *later* in a preference list, so it adds the new node to some replica sets and
changes nothing else; a leave is the reverse (``diff_rings()`` measures it exactly).
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from operator import itemgetter, le
from types import MappingProxyType

NodeId = str

RING_SPACE = 1 << 64
"""Positions live in ``[0, RING_SPACE)``."""

DEFAULT_VNODES = 8192
"""Points per unit of weight; see the module docstring for why this many."""

# Sync rings only spread users over sync nodes (no data moves when they change), so a small,
# cluster-wide count keeps them cheap; the client, sync nodes and metanodes must all use it.
SYNC_VNODES = 64

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
        positions = tuple(map(itemgetter(0), self.points))
        try:
            point_member = tuple(map(index.__getitem__, map(itemgetter(1), self.points)))
        except KeyError as e:
            raise ValueError(f"ring point names unknown member {e.args[0]!r}") from None
        if not all(map(le, positions, positions[1:])):
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
        seen: set[int] = set()
        used_zones: set[int] = set()
        n_firsts = 0  # how many of firsts (and of others) count: all of them, or the live ones
        n_others = 0
        i = bisect_left(positions, position)
        for _ in range(count):
            if i == count:
                i = 0
            k = point_member[i]
            i += 1
            if k in seen:
                continue
            seen.add(k)
            counts = member_up[k] or not live
            z = member_zone[k]
            if z in used_zones:
                others.append(k)
                n_others += counts
            else:
                used_zones.add(z)
                firsts.append(k)
                n_firsts += counts
            # Stop once the first n counted entries of firsts + others cannot change: later
            # zone-firsts only append to firsts, later others only append to others.
            if n_firsts >= n or (len(firsts) == zones and n_firsts + n_others >= n):
                break
            if len(seen) == placed:
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
    ordered = _ordered_members(members, vnodes)
    points = _sorted_points(ordered, range(len(ordered)), vnodes)
    return Ring(revision=revision, members=ordered, points=tuple(points), vnodes=vnodes)


def update_ring(previous: Ring, members: Iterable[Member], revision: int) -> Ring:
    """The ring for new membership, reusing the points of nodes whose point count is unchanged.

    Returns exactly ``build_ring(members, previous.vnodes, revision)`` (a node's points depend
    only on its id and count), but hashes only the nodes that joined or changed weight and
    merges instead of sorting everything: a join or leave on a ring of millions of points
    costs a fraction of a rebuild. ``previous`` must come from ``build_ring``/``update_ring``.

    Raises:
        ValueError: As ``build_ring``.
    """
    vnodes = previous.vnodes
    ordered = _ordered_members(members, vnodes)
    before = {m.node_id: vnode_count(m.weight, vnodes) for m in previous.members}
    keep = {
        m.node_id for m in ordered if before.get(m.node_id, -1) == vnode_count(m.weight, vnodes)
    }
    fresh = [k for k, m in enumerate(ordered) if m.node_id not in keep]
    points = [pt for pt in previous.points if pt[1] in keep]
    points += _sorted_points(ordered, fresh, vnodes)
    points.sort()  # two sorted runs: timsort merges them in one linear pass
    return Ring(revision=revision, members=ordered, points=tuple(points), vnodes=vnodes)


def _ordered_members(members: Iterable[Member], vnodes: int) -> tuple[Member, ...]:
    """Members sorted by node id, checked."""
    if vnodes < 1:
        raise ValueError(f"vnodes must be >= 1, got {vnodes}")
    ordered = tuple(sorted(members, key=lambda m: m.node_id))
    if any(a.node_id == b.node_id for a, b in pairwise(ordered)):
        raise ValueError("duplicate node_id in ring members")
    if len(ordered) > _IDX_MASK:
        raise ValueError("too many ring members")
    return ordered


def _sorted_points(
    ordered: Sequence[Member], which: Iterable[int], vnodes: int
) -> list[tuple[int, str]]:
    """The sorted ``(position, node_id)`` points of ``ordered[k]`` for each ``k`` in ``which``."""
    # Sort (position << 32 | member index): plain ints sort much faster than tuples, and the
    # index (members are sorted by id) breaks the astronomically unlikely tie of two equal
    # positions exactly as sorting (position, node_id) would.
    keyed: list[int] = []
    for k in which:
        m = ordered[k]
        count = vnode_count(m.weight, vnodes)
        keyed += [(p << _IDX_BITS) | k for p in vnode_positions(m.node_id, count)]
    keyed.sort()
    ids = [m.node_id for m in ordered]
    positions = [v >> _IDX_BITS for v in keyed]
    names = map(ids.__getitem__, [v & _IDX_MASK for v in keyed])
    return list(zip(positions, names, strict=True))


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

    # Changed points: (ring, index) of the points present on one side only, plus every point
    # of a node whose zone changed. Set operations run in C; only changed points cost Python.
    old_points, new_points = set(old.points), set(new.points)
    changed = [(old, _point_index(old, pt)) for pt in old_points.difference(new_points)]
    changed += [(new, _point_index(new, pt)) for pt in new_points.difference(old_points)]
    if rezoned:
        for ring in (old, new):
            changed += [(ring, i) for i, (_, node) in enumerate(ring.points) if node in rezoned]

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


def _point_index(ring: Ring, point: tuple[int, str]) -> int:
    """Index of a point known to be on the ring."""
    i = bisect_left(ring._positions, point[0])
    while ring.points[i] != point:
        i += 1
    return i


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
