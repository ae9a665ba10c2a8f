"""Block cluster under faults: real node processes on a real etcd, killed with SIGKILL.

One cluster for the module (5 block nodes in zones a, b, c, a, b; RF=3, W=2), with a short
lease (2 s) and a long down grace (nothing is decommissioned here; see
``test_block_node_loss``). The tests run in order and each leaves every node running:

1. a primary is killed in the middle of a 256 MiB upload through the SDK;
2. a replica is down while chunks are written: hints, then delivery once it is back;
3. bytes flipped in a chunk's blob file: reads stay right, the scrubber repairs the copy;
4. a sixth node joins the loaded cluster: chunks move to it, never below W copies, and end on
   exactly their RF ring owners.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from client import Client
from client._blocks import BlockPool
from devcluster import LocalCluster
from tessera.chunking import Chunk
from tessera.ring import chunk_position
from tests.fault.blockutil import Blocks, MiB, block_cluster, make_chunks, misplacement, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RF, W = 3, 2
ENV = {
    "TESSERA_LEASE_TTL": "2",
    "TESSERA_DOWN_GRACE": "600",
    "TESSERA_REPAIR_INTERVAL": "1",
    "TESSERA_SCRUB_INTERVAL": "1",
    "TESSERA_SCRUB_RATE_MB": "200",
    "TESSERA_REBALANCE_RATE_MB": "100",
    "TESSERA_GRACE_STOP": "1",
}
UPLOAD = 256 * MiB


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with block_cluster(tmp_path_factory.mktemp("blockfaults"), ENV) as c:
        yield c


@pytest.fixture
async def blocks(cluster: LocalCluster) -> AsyncIterator[Blocks]:
    b = Blocks(cluster)
    await all_up(b)
    try:
        yield b
    finally:
        await b.close()


def index_of(node_id: str) -> int:
    """LocalCluster names block nodes block-0, block-1, ..."""
    return int(node_id.rsplit("-", 1)[1])


async def all_up(b: Blocks) -> None:
    """Restart any block node that is not running, and wait until the ring shows all up."""
    for i, rec in enumerate(b.records()):
        if not rec["pid"]:
            await asyncio.to_thread(b.cluster.restart, "block", i)

    async def up() -> bool:
        return await b.all_see(
            lambda info: len(info.nodes) == len(b.records()) and all(n.up for n in info.nodes)
        )

    await wait_until(up, 30, "every block node up in every node's ring")


async def test_primary_killed_mid_upload(
    blocks: Blocks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "big.bin"
    with source.open("wb") as f:
        for _ in range(UPLOAD // (8 * MiB)):
            f.write(os.urandom(8 * MiB))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()

    acked = 0
    victim = ""
    real_put = BlockPool.put

    async def put(pool: BlockPool, chunks: list[Chunk]) -> list[object]:
        """The SDK's put, plus: once 96 MiB are acknowledged, SIGKILL the primary of the next
        batch while the batch streams."""
        nonlocal acked, victim
        killer = None
        if not victim and acked >= 96 * MiB:
            victim = pool.candidates(chunks[0].hash)[0]
            killer = asyncio.create_task(
                asyncio.to_thread(blocks.cluster.kill, "block", index_of(victim))
            )
        receipts = await real_put(pool, chunks)
        if killer is not None:
            await killer
        acked += sum(c.size for c in chunks)
        return receipts

    monkeypatch.setattr(BlockPool, "put", put)
    async with await Client.connect(
        blocks.cluster.meta_address, token=blocks.cluster.admin_token
    ) as client:
        began = time.monotonic()
        version = await client.put_file(source, "fault/big.bin")
        seconds = time.monotonic() - began
        pool = await client._block_pool()
        assert victim, "the upload ended before the kill"
        assert version.entry.size == UPLOAD
        # Only chunks not yet stored were sent again: at most the batch in flight at the kill.
        resent = pool.sent_bytes - UPLOAD
        print(
            f"\n256 MiB upload with {victim} killed at 96 MiB: {seconds:.1f} s "
            f"({UPLOAD / seconds / 1e6:.1f} MB/s), {pool.failovers} failovers, "
            f"{resent / MiB:.1f} MiB sent twice"
        )
        assert 0 <= resent <= 24 * MiB
        # Every acknowledged chunk reads back right, with the victim still dead.
        target = tmp_path / "back.bin"
        await client.get_file("fault/big.bin", target)
        assert hashlib.sha256(target.read_bytes()).hexdigest() == digest


async def test_write_with_replica_down_then_hint_delivered(blocks: Blocks) -> None:
    down = "block-3"
    await asyncio.to_thread(blocks.cluster.kill, "block", index_of(down))

    async def seen_down() -> bool:  # by every node: primaries write hints only then
        return await blocks.all_see(lambda info: any(n.id == down and not n.up for n in info.nodes))

    await wait_until(seen_down, 15, f"{down} down in every node's ring")
    ring = await blocks.ring()
    chunks = make_chunks(40, 128 * 1024)
    hashes = [h for h, _ in chunks]
    hinted = {h for h in hashes if down in ring.owners(chunk_position(h), RF)}
    assert hinted
    await blocks.put_routed(chunks, ring)

    async def handed_off() -> bool:
        # Each copy meant for the down node sits on a stand-in instead (the last of the
        # three copies is written after the put is acknowledged).
        held = await blocks.holdings(sorted(hinted))
        return all(sum(h in s for s in held.values()) == RF for h in hinted)

    await wait_until(handed_off, 15, "RF copies of every chunk, a stand-in for the down node")
    assert sum(s.handoff_backlog for s in await blocks.statuses()) >= len(hinted)

    await asyncio.to_thread(blocks.cluster.restart, "block", index_of(down))
    ring = await blocks.ring()

    async def delivered() -> bool:
        if sum(s.handoff_backlog for s in await blocks.statuses()):
            return False
        missing, extra = misplacement(ring, await blocks.holdings(hashes), hashes, RF)
        return not missing and not extra

    took = await wait_until(delivered, 30, "hints delivered and handoff copies dropped")
    print(f"\n{len(hinted)} hints delivered and handoff copies dropped {took:.1f} s after restart")


def flip_on_disk(data_dir: Path, data: bytes) -> int:
    """Flip one bit inside every on-disk copy of a chunk's bytes (an old, not yet compacted
    segment may hold one too); returns how many copies were hit."""
    piece, hits = data[:100], 0  # starts with the chunk's own tag and index: unique
    for blob in data_dir.glob("segstore/segments/*.seg"):
        raw = bytearray(blob.read_bytes())
        at = raw.find(piece)
        while at >= 0:
            raw[at + 60] ^= 0x10
            hits += 1
            at = raw.find(piece, at + 1)
        if hits:
            with blob.open("r+b") as f:  # in place, under the running node
                f.write(raw)
    return hits


async def test_flipped_byte_read_right_and_scrubbed(blocks: Blocks) -> None:
    ring = await blocks.ring()
    chunks = make_chunks(12, 256 * 1024)
    await blocks.put_routed(chunks, ring)
    node = "block-1"
    mine = [(h, d) for h, d in chunks if node in ring.owners(chunk_position(h), RF)]
    assert len(mine) >= 2
    hashes = [h for h, _ in chunks]

    async def placed() -> bool:  # the last copies land after the puts are acknowledged
        return misplacement(ring, await blocks.holdings(hashes), hashes, RF) == ([], [])

    await wait_until(placed, 15, "every chunk on its owners before the restart")
    # A restart: nothing of these chunks in the node's hot-chunk cache.
    await asyncio.to_thread(blocks.cluster.restart, "block", index_of(node))
    await all_up(blocks)
    record = blocks.records()[index_of(node)]
    data_dir = Path(record["data_dir"])
    (read_h, read_d), (scrub_h, scrub_d) = mine[:2]
    for _, d in mine[:2]:
        assert flip_on_disk(data_dir, d) >= 1  # bit rot under a running node
    # A read through that node still returns the right bytes (from another replica).
    assert await blocks.get(record["grpc"], [read_h]) == [read_d]

    async def repaired() -> bool:
        try:  # as a node: this node's own copies only (NOT_FOUND while one is bad)
            local = await blocks.get(record["grpc"], [scrub_h, read_h], as_node=True)
        except grpc.aio.AioRpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e
            return False
        return local == [scrub_d, read_d]

    took = await wait_until(repaired, 30, "the corrupt copies repaired on the node")
    status = await blocks.status(record["grpc"])
    assert status.corrupt_chunks >= 2 and status.scrubbed_chunks > 0
    print(f"\nscrubber repaired the flipped copy within {took:.1f} s")


async def test_join_moves_chunks_never_below_w(blocks: Blocks) -> None:
    ring = await blocks.ring()
    chunks = make_chunks(400, 256 * 1024)
    hashes = [h for h, _ in chunks]
    await blocks.put_routed(chunks, ring)
    old = blocks.records()
    before = sum(s.rebalance_bytes for s in await blocks.statuses())

    joined = await asyncio.to_thread(blocks.cluster.add_block_node)
    began = time.monotonic()
    await wait_until(
        lambda: blocks.all_see(lambda info: len(info.nodes) == len(old) + 1),
        15,
        "every node sees the new member",
    )
    new_ring = await blocks.ring()
    moving = [h for h in hashes if joined["node_id"] in new_ring.owners(chunk_position(h), RF)]
    assert moving
    lowest = RF

    async def settled() -> bool:
        nonlocal lowest
        # Old nodes first, the new one last: a copy is deleted only after the new owner
        # holds it, so asking in this order can never miss a chunk in transit.
        held = await blocks.holdings(hashes, [*old, joined])
        counts = [sum(h in s for s in held.values()) for h in hashes]
        lowest = min(lowest, *counts)
        missing, extra = misplacement(new_ring, held, hashes, RF)
        return not missing and not extra

    await wait_until(settled, 90, "every chunk on exactly its RF ring owners", every=0.1)
    seconds = time.monotonic() - began
    moved = sum(s.rebalance_bytes for s in await blocks.statuses()) - before
    print(
        f"\njoin of {joined['node_id']}: {len(moving)} of {len(hashes)} chunks moved, "
        f"{moved / MiB:.1f} MiB in {seconds:.1f} s ({moved / seconds / 1e6:.1f} MB/s, "
        f"limit {ENV['TESSERA_REBALANCE_RATE_MB']} MB/s); fewest copies seen: {lowest}"
    )
    assert lowest >= W
    assert moved >= sum(len(d) for h, d in chunks if h in moving)
