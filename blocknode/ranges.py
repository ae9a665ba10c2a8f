"""Which chunks a node should hold, and digests of ranges two replicas share: pure, no I/O.

``OwnerIndex`` answers "which nodes are this chunk's ring owners?" (membership, not liveness)
fast for many chunks of one ring: a chunk's owners depend only on the ring arc it falls in,
so the walk is done once per arc and cached. Its ``placement`` fingerprint names the
membership it was built from; two nodes compare digests only when their fingerprints match.

Anti-entropy cuts the position space into ``buckets`` equal slices (a chunk's position is the
first 8 bytes of its hash, so a slice is a contiguous hash range). For a pair of nodes A and B
the digest of a slice covers only the chunks whose owners include both: what both must hold.
Equal digests mean the slice is in sync; a differing slice is listed and the difference copied.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from tessera.ring import RING_SPACE, Ring

MIN_BUCKETS = 64
MAX_BUCKETS = 65_536
CHUNKS_PER_BUCKET = 32  # aim: a differing bucket lists about this many hashes


class OwnerIndex:
    """The ring owners of chunks on one ring, cached per ring arc.

    Args:
        ring: The ring (liveness is ignored: owners are by membership).
        replicas: RF.
    """

    def __init__(self, ring: Ring, replicas: int) -> None:
        self.ring = ring
        self.replicas = replicas
        self.placement = placement_fingerprint(ring, replicas)
        self.members = frozenset(m.node_id for m in ring.members)
        self._points = ring.points
        self._arcs: dict[int, tuple[str, ...]] = {}

    def owners(self, chunk_hash: bytes) -> tuple[str, ...]:
        """The chunk's RF owners, primary first (empty on an empty ring)."""
        points = self._points
        if not points:
            return ()
        position = int.from_bytes(chunk_hash[:8], "big")
        i = bisect_left(points, (position,))
        if i == len(points):
            i = 0
        owners = self._arcs.get(i)
        if owners is None:
            owners = self._arcs[i] = tuple(self.ring.owners(points[i][0], self.replicas))
        return owners


def placement_fingerprint(ring: Ring, replicas: int) -> bytes:
    """SHA-256 over what decides ownership: members' ids, zones and weights, vnodes and RF.

    Liveness and addresses are left out: they change who serves, never who owns.
    """
    h = hashlib.sha256(b"tessera-placement-v1")
    h.update(ring.vnodes.to_bytes(8, "big") + replicas.to_bytes(4, "big"))
    for m in ring.members:
        for text in (m.node_id, m.zone):
            raw = text.encode()
            h.update(len(raw).to_bytes(4, "big") + raw)
        h.update(float(m.weight).hex().encode() + b"|")
    return h.digest()


def bucket_count(chunks: int) -> int:
    """Buckets for a node holding ``chunks`` chunks: a power of two, 64..65536."""
    want = max(MIN_BUCKETS, -(-chunks // CHUNKS_PER_BUCKET))
    return min(MAX_BUCKETS, 1 << (want - 1).bit_length())


def bucket_of(chunk_hash: bytes, buckets: int) -> int:
    """The bucket a chunk's position falls in."""
    return (int.from_bytes(chunk_hash[:8], "big") * buckets) >> 64


def bucket_bounds(buckets: int, bucket: int) -> tuple[bytes, bytes | None]:
    """Key range ``[start, end)`` of one of ``buckets`` equal slices of the ring position space.

    A chunk's position is the first 8 bytes of its hash, so the slice is a contiguous hash
    range; bucket ``b`` holds the positions ``p`` with ``p * buckets >> 64 == b``.
    """
    lo = -(-bucket * RING_SPACE // buckets)
    hi = -(-(bucket + 1) * RING_SPACE // buckets)
    return lo.to_bytes(8, "big"), (hi.to_bytes(8, "big") if hi < RING_SPACE else None)


def shared(index: OwnerIndex, chunk_hash: bytes, a: str, b: str) -> bool:
    """Whether both ``a`` and ``b`` are among the chunk's owners."""
    owners = index.owners(chunk_hash)
    return a in owners and b in owners


def digests(hashes: Iterable[bytes], buckets: int) -> list[bytes]:
    """Per bucket, SHA-256 of the sorted hashes in it (b"" for an empty bucket).

    ``hashes`` must come in ascending order (as a store scan yields them).
    """
    sums: dict[int, Any] = {}
    for h in hashes:
        b = bucket_of(h, buckets)
        if b not in sums:
            sums[b] = hashlib.sha256()
        sums[b].update(h)
    return [sums[b].digest() if b in sums else b"" for b in range(buckets)]


class PeerDigests:
    """Digests of the chunks this node shares with each peer, built in one pass over its store.

    Args:
        node_id: This node.
        index: Owners on the current ring.
        buckets: Slices of the position space.
    """

    def __init__(self, node_id: str, index: OwnerIndex, buckets: int) -> None:
        self.node_id = node_id
        self.index = index
        self.buckets = buckets
        self._sums: dict[str, dict[int, Any]] = {}

    def add(self, chunk_hash: bytes, owners: tuple[str, ...]) -> None:
        """Count a chunk this node holds and owns (``owners`` includes this node)."""
        b = bucket_of(chunk_hash, self.buckets)
        for peer in owners:
            if peer == self.node_id:
                continue
            per_peer = self._sums.get(peer)
            if per_peer is None:
                per_peer = self._sums[peer] = {}
            digest = per_peer.get(b)
            if digest is None:
                digest = per_peer[b] = hashlib.sha256()
            digest.update(chunk_hash)

    def for_peer(self, peer: str) -> list[bytes]:
        """This node's digests of the chunks it shares with ``peer``."""
        sums = self._sums.get(peer, {})
        return [sums[b].digest() if b in sums else b"" for b in range(self.buckets)]
