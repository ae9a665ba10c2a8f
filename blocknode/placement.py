"""Where chunks go: the block ring as this node sees it, and replica sets with handoff hints.

``RingTracker`` follows the etcd ``View`` the watcher hands it and keeps an immutable ``Ring``
built with the cluster's parameters (RF, W, vnodes) published in that view.
Rebuilding hashes ``vnodes`` points per node, so it runs in a thread; when only liveness or
addresses changed (the common case: a lease lapsed or came back) the old points are reused.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from tessera.membership import ClusterParams, View
from tessera.ring import Member, Ring, build_ring, chunk_position

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Replica:
    """One node of a chunk's live replica set.

    Attributes:
        member: The node.
        hint_for: The down owner this node stands in for ("" when it is an owner itself).
    """

    member: Member
    hint_for: str = ""


def placement(ring: Ring, chunk_hash: bytes, replicas: int) -> list[Replica]:
    """The live replica set of a chunk, primary first.

    ``live_owners`` skips down owners and takes the next up nodes of the preference list; each
    such stand-in is paired, in order, with a down owner, whose copy it holds as a hint until
    that owner is back (hinted handoff).
    """
    position = chunk_position(chunk_hash)
    live = ring.live_owners(position, replicas)
    nominal = ring.owners(position, replicas)
    down = [n for n in nominal if n not in live]
    stand_ins = [n for n in live if n not in nominal]
    hints = dict(zip(stand_ins, down, strict=False))
    return [Replica(ring.member(n), hints.get(n, "")) for n in live]


def members_of(view: View) -> list[Member]:
    """Ring members for a membership view: every registered node, up when its lease lives."""
    members = (
        Member(n.node_id, n.address, n.zone, n.weight, n.node_id in view.alive)
        for n in view.nodes.values()
    )
    return sorted(members, key=lambda m: m.node_id)


class RingTracker:
    """The latest membership view, the cluster's parameters and the ring built from them.

    Args:
        node_id: This node's id.
        params: The parameters to use while a view carries none (before the first view, and
            where no cluster published any: in-process tests).
    """

    def __init__(self, node_id: str, params: ClusterParams) -> None:
        self.node_id = node_id
        self._configured = params
        self.params = params
        self.view = View("block", 0)
        self._ring = build_ring([], params.vnodes)
        self._rebuild: asyncio.Task[None] | None = None

    @property
    def replicas(self) -> int:
        """The cluster's replication factor RF."""
        return self.params.replicas

    @property
    def write_quorum(self) -> int:
        """The cluster's write quorum W."""
        return self.params.write_quorum

    @property
    def vnodes(self) -> int:
        """Ring points per unit of weight."""
        return self.params.vnodes

    @property
    def ring(self) -> Ring:
        """The current ring (empty until the first view arrives)."""
        return self._ring

    def update(self, view: View) -> None:
        """Adopt a view at least as new as the current one; the ring follows shortly."""
        if view.revision < self.view.revision:
            return
        self.view = view
        if self._rebuild is None or self._rebuild.done():
            self._rebuild = asyncio.create_task(self._follow(), name="ring-rebuild")

    async def sync(self) -> Ring:
        """Wait until the ring reflects the latest view, and return it."""
        while self._rebuild is not None and not self._rebuild.done():
            await asyncio.shield(self._rebuild)
        return self._ring

    def close(self) -> None:
        """Stop a rebuild in progress."""
        if self._rebuild is not None:
            self._rebuild.cancel()

    async def _follow(self) -> None:
        while True:
            view = self.view
            params = view.params or self._configured
            if params != self.params:
                log.warning("cluster parameters changed from %s to %s", self.params, params)
            ring = await self._build(view, params.vnodes)
            if ring.revision >= self._ring.revision:
                self._ring, self.params = ring, params
            if self.view is view:
                return

    async def _build(self, view: View, vnodes: int) -> Ring:
        members = members_of(view)
        old = self._ring
        if old.vnodes == vnodes and [(m.node_id, m.weight) for m in old.members] == [
            (m.node_id, m.weight) for m in members
        ]:
            return Ring(
                revision=view.revision,
                members=tuple(members),
                points=old.points,
                vnodes=vnodes,
            )
        log.info(
            "block ring membership changed at revision %d: %d nodes", view.revision, len(members)
        )
        return await asyncio.to_thread(build_ring, members, vnodes, view.revision)

    def placement(self, chunk_hash: bytes) -> list[Replica]:
        """The chunk's live replica set on the current ring."""
        return placement(self._ring, chunk_hash, self.replicas)

    def is_owner(self, chunk_hash: bytes) -> bool:
        """Whether this node is in the chunk's live replica set."""
        return any(r.member.node_id == self.node_id for r in self.placement(chunk_hash))

    def read_sources(self, chunk_hash: bytes, limit: int) -> list[Member]:
        """Up to ``limit`` other up nodes to read a chunk from, in preference order."""
        ring = self._ring
        nodes = ring.preference_list(chunk_position(chunk_hash))
        others = (ring.member(n) for n in nodes if n != self.node_id)
        return [m for m in others if m.up][:limit]
