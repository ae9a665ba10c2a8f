"""A block node lost for good: after the down grace it is decommissioned, and its chunks are
re-replicated until every chunk has RF copies again, on exactly its new ring owners.

Its own cluster (5 block nodes, zones a, b, c, a, b; RF=3) with a 2 s lease and a 3 s down
grace. The node killed is block-2, the only one in zone-c: an owner of every chunk, so every
chunk needs a new copy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from client import Client
from devcluster import LocalCluster
from tests.fault.blockutil import Blocks, MiB, block_cluster, make_chunks, misplacement, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RF = 3
GRACE = 3
ENV = {
    "TESSERA_LEASE_TTL": "2",
    "TESSERA_DOWN_GRACE": str(GRACE),
    "TESSERA_REPAIR_INTERVAL": "1",
    "TESSERA_REBALANCE_RATE_MB": "100",
    "TESSERA_SCRUB_RATE_MB": "0",
    "TESSERA_GRACE_STOP": "1",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with block_cluster(tmp_path_factory.mktemp("nodeloss"), ENV) as c:
        yield c


async def _status_count(cluster: LocalCluster) -> int:
    """Under-replicated chunks as the metanode's GetStatus (``tessera status``) reports them."""
    async with await Client.connect(cluster.meta_address, token=cluster.admin_token) as c:
        return (await c.status()).under_replicated_chunks


async def test_lost_node_is_decommissioned_and_its_chunks_rereplicated(
    cluster: LocalCluster,
) -> None:
    blocks = Blocks(cluster)
    try:
        chunks = make_chunks(300, 256 * 1024)
        hashes = [h for h, _ in chunks]
        ring = await blocks.ring()
        await blocks.put_routed(chunks, ring)

        async def placed_on(expected_ring: object) -> bool:
            missing, extra = misplacement(expected_ring, await blocks.holdings(hashes), hashes)
            return not missing and not extra

        await wait_until(lambda: placed_on(ring), 20, "every chunk on its 3 owners")
        before = {s.node_id: s for s in await blocks.statuses()}
        lost = "block-2"
        assert all(lost in ring.owners(int.from_bytes(h[:8], "big"), RF) for h in hashes)

        await asyncio.to_thread(cluster.kill, "block", 2)
        killed_at = time.monotonic()

        async def counted_short() -> bool:  # before the grace ends: down, not yet removed
            statuses = await blocks.statuses()
            if sum(s.under_replicated for s in statuses) != len(hashes):
                return False
            return await _status_count(cluster) == len(hashes)  # what `tessera status` shows

        await wait_until(counted_short, 15, "every chunk counted under-replicated once")

        async def decommissioned() -> bool:
            return lost not in {n.id for n in (await blocks.ring_info()).nodes}

        await wait_until(decommissioned, 30, f"{lost} removed from the ring")
        removed_after = time.monotonic() - killed_at
        new_ring = await blocks.ring()
        assert len(new_ring) == 4

        async def repaired() -> bool:
            if not await placed_on(new_ring):
                return False
            if sum(s.under_replicated for s in await blocks.statuses()) != 0:
                return False
            return await _status_count(cluster) == 0

        await wait_until(repaired, 60, "every chunk back to RF copies on its new owners")
        total = time.monotonic() - killed_at
        after = await blocks.statuses()
        moved = sum(
            s.repair_bytes
            + s.rebalance_bytes
            - before[s.node_id].repair_bytes
            - before[s.node_id].rebalance_bytes
            for s in after
        )
        data = sum(len(d) for _, d in chunks)
        print(
            f"\nlost {lost} (owner of all {len(hashes)} chunks, {data / MiB:.0f} MiB): "
            f"decommissioned {removed_after:.1f} s after the kill (lease 2 s + grace {GRACE} s), "
            f"RF restored {total:.1f} s after the kill, {total - removed_after:.1f} s after "
            f"decommission; {moved / MiB:.1f} MiB moved"
        )
        # Each missing copy was made once (by the first owner holding it), not once per owner.
        assert data <= moved <= data * 1.2
        for h, d in chunks[:5]:
            for rec in blocks.running():
                if rec["node_id"] in new_ring.owners(int.from_bytes(h[:8], "big"), RF):
                    assert await blocks.get(rec["grpc"], [h], as_node=True) == [d]
    finally:
        await blocks.close()
