"""Three block nodes as real processes on a real etcd: ring, replication, read repair, a
killed node."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tessera.pb import block_pb2, common_pb2
from tessera.ring import Member, Ring, build_ring, chunk_position
from tests.integration.blockprocs import (
    LEASE_TTL,
    NODE_MD,
    USER_MD,
    Cluster,
    Node,
    block_stub,
    expect_code,
    get,
    has,
    make_chunk,
    put,
    running_cluster,
    stop_process,
)


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from running_cluster(tmp_path_factory, "trio", 3)


# -- three nodes ----------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_get_ring_lists_all_nodes(trio: Cluster) -> None:
    async with block_stub(trio.nodes[2]) as stub:
        ring = await stub.GetRing(block_pb2.GetRingRequest(), metadata=USER_MD)
    assert sorted((n.id, n.address, n.up) for n in ring.nodes) == sorted(
        (n.node_id, n.address, True) for n in trio.nodes
    )
    assert all(n.zone == "default" and n.weight == 1.0 and n.metrics_address for n in ring.nodes)


async def test_put_reaches_all_three_replicas(trio: Cluster) -> None:
    chunks = [make_chunk(512 * 1024) for _ in range(6)]
    hashes = [h for h, _ in chunks]
    async with contextlib.AsyncExitStack() as stack:
        stubs = [await stack.enter_async_context(block_stub(n)) for n in trio.nodes]
        results = await put(stubs[0], chunks)
        assert all(r.replicas >= 2 for r in results)

        async def everywhere() -> bool:
            return all([all(await has(s, hashes)) for s in stubs])

        await wait_until(everywhere, within=10)
        for s in stubs:
            assert [c.data for c in await get(s, hashes)] == [d for _, d in chunks]


async def test_read_repairs_a_missing_copy(trio: Cluster) -> None:
    h, d = make_chunk(100_000)
    async with contextlib.AsyncExitStack() as stack:
        stubs = [await stack.enter_async_context(block_stub(n)) for n in trio.nodes]
        await put(stubs[1], [(h, d)])

        async def on_all() -> bool:
            return all([(await has(s, [h]))[0] for s in stubs])

        await wait_until(on_all)
        await stubs[0].DeleteChunks(block_pb2.DeleteChunksRequest(hashes=[h]), metadata=NODE_MD)
        assert await has(stubs[0], [h]) == [False]
        assert [c.data for c in await get(stubs[0], [h])] == [d]
        await wait_until(on_all)  # repaired in the background
        # Nodes read each other's local copies only: a node caller sees NOT_FOUND, no recursion.
        await stubs[2].DeleteChunks(block_pb2.DeleteChunksRequest(hashes=[h]), metadata=NODE_MD)
        await expect_code(grpc.StatusCode.NOT_FOUND, get(stubs[2], [h], md=NODE_MD))


def client_ring(info: common_pb2.RingInfo) -> Ring:
    """The ring a client builds from GetRing."""
    members = [Member(n.id, n.address, n.zone, n.weight, n.up) for n in info.nodes]
    return build_ring(members, vnodes=info.vnodes, revision=info.revision)


def metric(node: Node, name: str) -> float:
    with urllib.request.urlopen(f"http://{node.info['metrics']}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


async def test_non_owner_stores_and_forwards_to_owner(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, replicas=1, write_quorum=1)
    try:
        cluster.add(2)
        first, second = cluster.nodes
        async with block_stub(first) as stub0, block_stub(second) as stub1:
            ring = client_ring(await stub0.GetRing(block_pb2.GetRingRequest(), metadata=USER_MD))
            assert len(ring) == 2
            # A chunk the ring gives to the second node, sent to the first (a stale client).
            h, d = next(
                c
                for c in (make_chunk(2000) for _ in range(1000))
                if ring.owners(chunk_position(c[0]), 1) == [second.node_id]
            )
            [result] = await put(stub0, [(h, d)])
            assert result.replicas >= 1
            assert await has(stub1, [h]) == [True]  # acknowledged: durable on the owner

            async def kept_here() -> bool:
                return (await has(stub0, [h]))[0]

            await wait_until(kept_here)
            assert [c.data for c in await get(stub1, [h])] == [d]
    finally:
        cluster.stop()


async def test_killed_node_shows_down_and_writes_go_on(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, replicas=2, write_quorum=2)
    try:
        cluster.add(3)
        victim = cluster.nodes[2]
        stop_process(victim.proc, signal.SIGKILL)
        async with block_stub(cluster.nodes[0]) as stub:

            async def victim_down() -> bool:
                ring = await stub.GetRing(block_pb2.GetRingRequest(), metadata=USER_MD)
                up = {n.id: n.up for n in ring.nodes}
                return up == {
                    cluster.nodes[0].node_id: True,
                    cluster.nodes[1].node_id: True,
                    victim.node_id: False,
                }

            started = time.monotonic()
            await wait_until(victim_down, within=4 * LEASE_TTL + 5)
            assert time.monotonic() - started < 4 * LEASE_TTL + 5
            # RF=2, W=2 with one owner down: the other live node stands in, with a hint.
            ring = client_ring(await stub.GetRing(block_pb2.GetRingRequest(), metadata=USER_MD))
            chunks = [make_chunk(70_000) for _ in range(12)]
            hinted = sum(victim.node_id in ring.owners(chunk_position(h), 2) for h, _ in chunks)
            assert hinted > 0
            results = await put(stub, chunks)
            assert all(r.replicas == 2 for r in results)
            assert [c.data for c in await get(stub, [h for h, _ in chunks])] == [
                d for _, d in chunks
            ]
            backlog = sum(metric(n, "tessera_block_handoff_backlog") for n in cluster.nodes[:2])
            assert backlog == hinted

        # A restarted node keeps its id (data_dir/NODE_ID) and its chunks, and is up again.
        back = cluster.start_node("node2")
        assert back.node_id == victim.node_id
        async with block_stub(cluster.nodes[0]) as stub:
            ring_info = await stub.GetRing(block_pb2.GetRingRequest(), metadata=USER_MD)
            assert all(n.up for n in ring_info.nodes) and len(ring_info.nodes) == 3
    finally:
        cluster.stop()
