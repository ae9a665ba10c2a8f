"""Decommissioning: a node down for longer than ``--down-grace`` leaves the ring.

Liveness is not membership: a node whose lease lapsed is *down* (reads and writes route around
it, writes leave hints) but keeps its ranges. ``Decommissioner`` notes when each member was
first seen down; once one has been down for ``down_grace`` seconds, the lowest-id live node
(every node computes the same one from the same etcd view, so it happens once) removes its
membership key, in an etcd transaction that does nothing if the node came back meanwhile. The
ring then drops the node, and the replicators re-replicate its chunks to their new owners.

Nothing is decommissioned while half the members or more are down, or when fewer than RF would
remain up: that is an outage of the cluster (a power cut, a partition, a full stop), not the
loss of a node, and re-replicating into what is left would only make it worse.

A decommissioned node that starts again registers again, as a new member: it joins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from blocknode.ratelimit import wait_event
from tessera.membership import View

log = logging.getLogger(__name__)

Remove = Callable[[str], Awaitable[bool]]


class Decommissioner:
    """Tracks down nodes and removes those past their grace (when this node is the one to).

    Args:
        node_id: This node.
        grace: Seconds a node may be down before it is decommissioned.
        remove: Removes a node's membership unless it is alive; True if it did.
        replicas: RF: fewer up nodes than this, and nobody is decommissioned.
        on_removed: Called with the node id after a removal (metrics).
    """

    def __init__(
        self,
        node_id: str,
        grace: float,
        remove: Remove,
        *,
        replicas: int = 3,
        on_removed: Callable[[str], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self.grace = grace
        self.replicas = replicas
        self._held_back = False
        self._remove = remove
        self._on_removed = on_removed or (lambda _n: None)
        self._down_since: dict[str, float] = {}
        self._view: View | None = None
        self._wake = asyncio.Event()

    def observe(self, view: View) -> None:
        """Adopt a membership view (the etcd watcher's callback)."""
        now = time.monotonic()
        down = {n for n in view.nodes if n not in view.alive}
        for node in down:
            self._down_since.setdefault(node, now)
        for node in list(self._down_since):
            if node not in down:
                del self._down_since[node]
        self._view = view
        self._wake.set()

    def due(self, now: float | None = None) -> list[str]:
        """Down nodes past their grace that this node should remove now (it is the lowest live
        id), oldest first."""
        view = self._view
        if view is None or not view.alive or min(view.alive) != self.node_id:
            return []
        now = time.monotonic() if now is None else now
        late = [(since, n) for n, since in self._down_since.items() if now - since >= self.grace]
        if not late:
            return []
        up = len(view.alive & view.nodes.keys())
        if 2 * len(self._down_since) >= len(view.nodes) or up < self.replicas:
            if not self._held_back:
                log.warning(
                    "%d of %d block nodes are down: not decommissioning any (cluster outage?)",
                    len(self._down_since),
                    len(view.nodes),
                )
            self._held_back = True
            return []
        self._held_back = False
        return [n for _, n in sorted(late)]

    def next_due_in(self, now: float | None = None) -> float | None:
        """Seconds until the next node's grace ends (None: nobody is down)."""
        if not self._down_since:
            return None
        now = time.monotonic() if now is None else now
        return max(0.0, min(self._down_since.values()) + self.grace - now)

    async def run(self) -> None:
        """Remove nodes as their grace ends, until cancelled."""
        while True:
            for node in self.due():
                try:
                    removed = await self._remove(node)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.warning("decommissioning %s failed (%s); will retry", node, e)
                    continue
                if removed:
                    log.warning(
                        "decommissioned block node %s: down for more than %.0f s",
                        node,
                        self.grace,
                    )
                    self._on_removed(node)
                self._down_since.pop(node, None)
            self._wake.clear()
            wait = self.next_due_in()
            timeout = 5.0 if wait is None else min(5.0, wait + 0.05)
            await wait_event(self._wake, timeout)
