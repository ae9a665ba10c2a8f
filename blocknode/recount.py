"""Under-replication counted afresh, for ``tessera status``: from what this node holds now.

The replicator's figure is as of its last pass (every ``repair_interval`` seconds) and trusts
etcd's liveness; an operator who just lost a node wants the count now, with the nodes a health
probe found dead counted as down too. Each live node scans its own store: a chunk counts when
an owner of it is down and this node is its first live owner, so the per-node figures add up
without any chunk counted twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from blocknode.metrics import dir_bytes, disk_usage
from blocknode.ranges import OwnerIndex
from tessera.pb import block_pb2

if TYPE_CHECKING:
    from blocknode.service import BlockService


def count_short(hashes: Iterable[bytes], index: OwnerIndex, me: str, down: Collection[str]) -> int:
    """Chunks among ``hashes`` (held here) with an owner in ``down``, counted by this node when
    it is their first owner not down."""
    short = 0
    for h in hashes:
        owners = index.owners(h)
        if not owners:
            continue
        live = [o for o in owners if o not in down]
        if live and live[0] == me and len(live) < len(owners):
            short += 1
    return short


async def node_figures(
    service: BlockService, request: block_pb2.NodeStatusRequest
) -> dict[str, Any]:
    """NodeStatus's capacity figures, and with ``recount`` the under-replicated count now."""
    data_dir = Path(service._cfg.data_dir)
    free, total = disk_usage(data_dir)
    figures: dict[str, Any] = {
        "store_bytes": await asyncio.to_thread(dir_bytes, data_dir),
        "disk_free_bytes": free,
        "disk_total_bytes": total,
        "metrics_address": service.metrics.address,
    }
    if request.recount:
        await service.rings.sync()
        ring, index, me = service.rings.ring, service._owner_index(), service._node_id
        down = ({m.node_id for m in ring.members if not m.up} | set(request.down_nodes)) - {me}
        store = service._store.store
        figures["under_replicated_now"] = await service._store.run_read(
            lambda: count_short(store.scan(), index, me, down)
        )
    return figures
