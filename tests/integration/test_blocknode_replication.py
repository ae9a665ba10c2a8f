"""Replication logic of block nodes in one process: real grpc.aio servers on port 0, in-memory
stores, membership views set by the test, passes run one at a time (deterministic).

Covers anti-entropy, the under-replicated count, hint delivery and drop, rebalancing after a
join, re-replication after a decommission, the scrubber, and that garbage-collected chunks are
not brought back. The same code runs against RocksDB and real etcd in ``tests/fault``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

import grpc
import pytest
from prometheus_client import CollectorRegistry

from blocknode.asyncstore import AsyncChunkStore
from blocknode.ratelimit import RateLimiter
from blocknode.replicator import Replicator
from blocknode.scrubber import Scrubber
from blocknode.service import NODE_METHODS, BlockService, add_to_server
from blocknode.store import MemoryChunkStore
from client import UnavailableError
from client._blocks import BlockPool, ring_from_pb
from tessera.auth import Signer
from tessera.chunking import Chunk
from tessera.config import BlockConfig
from tessera.membership import NodeRecord, View
from tessera.pb import block_pb2, block_pb2_grpc
from tessera.ring import chunk_position
from tessera.rpc import AuthInterceptor, ErrorInterceptor, auth_metadata

SECRET = "in-process-replication-test-secret"
SIGNER = Signer(SECRET)
USER_MD = auth_metadata(SIGNER.issue_token("u1", ttl=600)[0])
NODE_MD = auth_metadata(SIGNER.node_token("tests"))
VNODES = 64
RF = 3


@dataclass
class InNode:
    node_id: str
    zone: str
    service: BlockService
    store: AsyncChunkStore
    server: grpc.aio.Server
    address: str
    replicator: Replicator
    scrubber: Scrubber

    def holds(self, chunk_hash: bytes) -> bool:
        return self.store.store.contains(chunk_hash)


class InCluster:
    """Block services in this process; the test decides membership and liveness."""

    def __init__(self) -> None:
        self.nodes: dict[str, InNode] = {}
        self.members: list[str] = []
        self.alive: set[str] = set()
        self.revision = 0
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def add(self, node_id: str, zone: str) -> InNode:
        cfg = BlockConfig(
            cluster_secret=SECRET, replicas=RF, write_quorum=2, vnodes=VNODES, repair_interval=60
        )
        store = AsyncChunkStore(MemoryChunkStore())
        service = BlockService(cfg, node_id, store, SIGNER, CollectorRegistry())
        server = grpc.aio.server(
            interceptors=[AuthInterceptor(SIGNER, node_only=NODE_METHODS), ErrorInterceptor()]
        )
        add_to_server(service, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        replicator = Replicator(
            node_id, store, service.rings, service.peers, service.metrics, RateLimiter(0), 60
        )
        scrubber = Scrubber(
            node_id, store, service.rings, service.peers, service.metrics, 1000.0, 60
        )
        node = InNode(
            node_id, zone, service, store, server, f"127.0.0.1:{port}", replicator, scrubber
        )
        self.nodes[node_id] = node
        self.members.append(node_id)
        self.alive.add(node_id)
        return node

    async def publish(self) -> None:
        """Hand every node the current membership view and wait for their rings."""
        self.revision += 1
        records = {
            n: NodeRecord(n, self.nodes[n].address, self.nodes[n].zone) for n in self.members
        }
        view = View("block", self.revision, records, frozenset(self.alive & set(self.members)))
        for node in self.nodes.values():
            node.service.update_view(view)
        for node in self.nodes.values():
            await node.service.rings.sync()

    def owners(self, chunk_hash: bytes) -> list[str]:
        ring = next(iter(self.nodes.values())).service.rings.ring
        return ring.owners(chunk_position(chunk_hash), RF)

    def stub(self, node_id: str) -> block_pb2_grpc.BlockStub:
        address = self.nodes[node_id].address
        if address not in self._channels:
            self._channels[address] = grpc.aio.insecure_channel(address)
        return block_pb2_grpc.BlockStub(self._channels[address])

    async def put(self, chunks: Sequence[tuple[bytes, bytes]], via: str | None = None) -> None:
        """Put each chunk through its first live owner (or through ``via``)."""
        ring = next(iter(self.nodes.values())).service.rings.ring
        groups: dict[str, list[block_pb2.PutChunkRequest]] = {}
        for h, d in chunks:
            node = via or ring.live_owners(chunk_position(h), RF)[0]
            groups.setdefault(node, []).append(block_pb2.PutChunkRequest(hash=h, data=d))
        for node, requests in groups.items():
            call = self.stub(node).PutChunks(iter(requests), metadata=USER_MD, timeout=30)
            assert len([r async for r in call]) == len(requests)

    async def quiesce(self) -> None:
        """Let background replica copies of acknowledged puts finish."""
        for node in self.nodes.values():
            if node.service._background:
                await asyncio.wait(list(node.service._background), timeout=10)

    async def passes(self, rounds: int = 1, nodes: Iterable[str] | None = None) -> int:
        """Run ``rounds`` replication passes on every up member; total under-replicated."""
        under = 0
        for _ in range(rounds):
            under = 0
            for n in nodes or sorted(self.alive):
                under += (await self.nodes[n].replicator.run_pass()).under_replicated
        return under

    def copies(self, chunk_hash: bytes) -> set[str]:
        return {n for n, node in self.nodes.items() if node.holds(chunk_hash)}

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        for node in self.nodes.values():
            await node.server.stop(0)
            await node.service.close(grace=1)
            await node.store.close()


def make_chunks(count: int, size: int = 3000) -> list[tuple[bytes, bytes]]:
    out = []
    for _ in range(count):
        data = os.urandom(size)
        out.append((hashlib.sha256(data).digest(), data))
    return out


@pytest.fixture
async def cluster() -> AsyncIterator[InCluster]:
    c = InCluster()
    for i, zone in enumerate(["a", "b", "c", "a", "b"]):
        await c.add(f"n{i}", f"zone-{zone}")
    await c.publish()
    try:
        yield c
    finally:
        await c.close()


def assert_placed(c: InCluster, hashes: Iterable[bytes]) -> None:
    """Every chunk on exactly its RF ring owners."""
    for h in hashes:
        assert c.copies(h) == set(c.owners(h)), h.hex()[:12]


async def test_writes_reach_owners_and_a_pass_changes_nothing(cluster: InCluster) -> None:
    chunks = make_chunks(60)
    await cluster.put(chunks)
    await cluster.quiesce()
    assert_placed(cluster, [h for h, _ in chunks])
    assert await cluster.passes() == 0
    for node in cluster.nodes.values():
        report = node.replicator.last_report
        assert report is not None and not report.pushed and report.dropped == 0


async def test_anti_entropy_restores_lost_copies_once(cluster: InCluster) -> None:
    chunks = make_chunks(80)
    await cluster.put(chunks)
    await cluster.quiesce()
    victim = cluster.nodes["n1"]
    lost = [(h, d) for h, d in chunks if victim.holds(h)][:25]
    victim.store.store.delete_many([h for h, _ in lost])  # a disk lost them, silently
    assert await cluster.passes() == 0
    assert_placed(cluster, [h for h, _ in chunks])
    # Each lost copy was sent once, by the first owner holding it (not by every co-owner).
    repaired = sum(n.service.metrics.transferred["repair"] for n in cluster.nodes.values())
    assert repaired == sum(len(d) for _, d in lost)


async def test_down_owner_counts_each_chunk_once(cluster: InCluster) -> None:
    chunks = make_chunks(80)
    await cluster.put(chunks)
    await cluster.quiesce()
    cluster.alive.discard("n3")
    await cluster.publish()
    short = sum("n3" in cluster.owners(h) for h, _ in chunks)
    assert short > 0
    assert await cluster.passes() == short
    statuses = [
        await cluster.stub(n).NodeStatus(block_pb2.NodeStatusRequest(), metadata=NODE_MD)
        for n in sorted(cluster.alive)
    ]
    assert sum(s.under_replicated for s in statuses) == short
    assert all(s.last_pass_at > 0 for s in statuses)


async def test_hints_are_delivered_then_the_handoff_copy_dropped(cluster: InCluster) -> None:
    cluster.alive.discard("n2")
    await cluster.publish()
    chunks = make_chunks(40)
    await cluster.put(chunks)
    await cluster.quiesce()
    hinted = [h for h, _ in chunks if "n2" in cluster.owners(h)]
    assert hinted and not any(cluster.nodes["n2"].holds(h) for h in hinted)
    backlog = sum(n.store.store.hint_count() for n in cluster.nodes.values())
    assert backlog == len(hinted)
    for h in hinted:
        assert len(cluster.copies(h)) == RF  # two owners and a stand-in
    cluster.alive.add("n2")
    await cluster.publish()
    await cluster.passes()
    assert sum(n.store.store.hint_count() for n in cluster.nodes.values()) == 0
    assert_placed(cluster, [h for h, _ in chunks])
    handoff = sum(n.service.metrics.transferred["handoff"] for n in cluster.nodes.values())
    assert handoff == sum(len(d) for h, d in chunks if h in hinted)


async def test_join_moves_chunks_to_the_new_node_then_drops_old_copies(
    cluster: InCluster,
) -> None:
    chunks = make_chunks(150)
    hashes = [h for h, _ in chunks]
    await cluster.put(chunks)
    await cluster.quiesce()
    await cluster.passes()  # as running nodes do: each has seen the ring before the join
    await cluster.add("n5", "zone-c")
    await cluster.publish()
    moving = [h for h in hashes if "n5" in cluster.owners(h)]
    assert moving
    lowest = RF
    for _ in range(2):
        for n in sorted(cluster.alive):
            await cluster.nodes[n].replicator.run_pass()
            lowest = min(lowest, *(len(cluster.copies(h)) for h in hashes))
    assert lowest >= RF  # never fewer copies than RF while moving (W is 2)
    assert_placed(cluster, hashes)
    rebalanced = sum(n.service.metrics.transferred["rebalance"] for n in cluster.nodes.values())
    assert rebalanced == sum(len(d) for h, d in chunks if h in moving)
    assert sum(n.service.metrics.dropped._value.get() for n in cluster.nodes.values()) > 0


async def test_decommission_rereplicates_to_rf(cluster: InCluster) -> None:
    chunks = make_chunks(100)
    hashes = [h for h, _ in chunks]
    await cluster.put(chunks)
    await cluster.quiesce()
    gone = cluster.nodes["n2"]
    cluster.alive.discard("n2")
    cluster.members.remove("n2")
    await cluster.publish()
    assert await cluster.passes() == 0
    for h in hashes:
        assert cluster.copies(h) - {"n2"} == set(cluster.owners(h))
    assert "n2" not in {o for h in hashes for o in cluster.owners(h)}
    assert gone.store.store.count() > 0  # the dead node's data is simply not used


async def test_stale_primary_copy_is_dropped_once_owners_hold_it(cluster: InCluster) -> None:
    chunks = make_chunks(30)
    outsider = next(
        n for n in sorted(cluster.nodes) if any(n not in cluster.owners(h) for h, _ in chunks)
    )
    mine = [(h, d) for h, d in chunks if outsider not in cluster.owners(h)]
    await cluster.put(mine, via=outsider)  # a client with a stale ring
    await cluster.quiesce()
    assert all(cluster.nodes[outsider].holds(h) for h, _ in mine)
    await cluster.passes()
    assert_placed(cluster, [h for h, _ in mine])


async def test_collected_chunk_is_not_brought_back(cluster: InCluster) -> None:
    chunks = make_chunks(20)
    await cluster.put(chunks)
    await cluster.quiesce()
    h, d = next((h, d) for h, d in chunks if any(n not in cluster.owners(h) for n in cluster.nodes))
    stray = next(n for n in sorted(cluster.nodes) if n not in cluster.owners(h))
    await cluster.nodes[stray].store.put(h, d)  # e.g. a copy awaiting rebalance
    for owner in cluster.owners(h):  # the metanode's GC deletes on every owner
        await cluster.stub(owner).DeleteChunks(
            block_pb2.DeleteChunksRequest(hashes=[h]), metadata=NODE_MD
        )
    await cluster.passes()
    assert cluster.copies(h) == set()


async def test_scrubber_repairs_a_corrupt_copy_and_it_is_never_spread(
    cluster: InCluster,
) -> None:
    chunks = make_chunks(10)
    await cluster.put(chunks)
    await cluster.quiesce()
    h, d = chunks[0]
    owner = cluster.nodes[cluster.owners(h)[0]]
    owner.store.store.write([(h, b"rotten" + d[6:])])  # bit rot under the same key
    other = cluster.nodes[cluster.owners(h)[1]]
    other.store.store.delete_many([h])  # and a copy lost elsewhere
    await owner.replicator.run_pass()  # the first owner must not send its bad copy
    assert not other.holds(h)
    checked, repaired = await owner.scrubber.scrub_pass()
    assert (checked, repaired) == (len([c for c in chunks if owner.holds(c[0])]), 1)
    assert owner.store.store.get(h) == d
    await cluster.passes()
    assert other.store.store.get(h) == d
    assert owner.service.metrics.corrupt_seen >= 1


async def test_range_digests_need_the_same_placement(cluster: InCluster) -> None:
    stub = cluster.stub("n0")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.RangeDigests(
            block_pb2.RangeDigestsRequest(buckets=64, shared_with="n1", placement=b"x" * 32),
            metadata=NODE_MD,
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.NodeStatus(block_pb2.NodeStatusRequest(), metadata=USER_MD)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_sdk_put_fails_clearly_and_a_retry_sends_only_the_rest(
    cluster: InCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = await cluster.stub("n0").GetRing(block_pb2.GetRingRequest(), metadata=USER_MD)
    pool = BlockPool(
        ring_from_pb(info), SIGNER.issue_token("u1", ttl=600)[0], max_message_bytes=8 << 20
    )
    try:
        chunks = [Chunk(0, h, d) for h, d in make_chunks(20)]
        assert len(await pool.put(chunks[:10])) == 10 and pool.sent_chunks == 10
        real = pool._put_to

        async def unavailable(node: str, part: list[Chunk], receipts: dict) -> None:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down"
            )

        monkeypatch.setattr(pool, "_put_to", unavailable)
        with pytest.raises(UnavailableError, match="10 of 20|no block node left"):
            await pool.put(chunks)
        monkeypatch.setattr(pool, "_put_to", real)
        pool._suspects.clear()  # the nodes are fine again
        receipts = await pool.put(chunks)
        assert [r.hash for r in receipts] == [c.hash for c in chunks]
        assert pool.sent_chunks == 20  # the first ten were not sent again
    finally:
        await pool.close()
