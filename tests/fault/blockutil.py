"""Helpers for block-cluster fault tests: talk to every block node of a LocalCluster.

Chunks go in through ``PutChunks`` with a user token and come back through ``GetChunks`` with a
ticket signed by the cluster secret (what the metanode would issue); where copies sit is read
with the node-only ``HasChunks`` and ``NodeStatus``, and the ring with ``GetRing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from tessera.auth import Signer
from tessera.pb import block_pb2, block_pb2_grpc, common_pb2
from tessera.ring import Member, Ring, build_ring, chunk_position
from tessera.rpc import auth_metadata, channel_options

if TYPE_CHECKING:
    from devcluster import LocalCluster

USER = "fault-test-user"
MiB = 1024 * 1024


def make_chunks(count: int, size: int) -> list[tuple[bytes, bytes]]:
    """Distinct random chunks of ``size`` bytes (cheap: one random block, varied prefix)."""
    block = os.urandom(size)
    tag = os.urandom(8)
    out = []
    for i in range(count):
        data = tag + i.to_bytes(8, "big") + block[16:]
        out.append((hashlib.sha256(data).digest(), data))
    return out


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], within: float, what: str, every: float = 0.2
) -> float:
    """Poll ``predicate`` until true; seconds it took. Fails with ``what`` after ``within``."""
    began = time.monotonic()
    while not await predicate():
        if time.monotonic() - began > within:
            raise AssertionError(f"not within {within:.0f} s: {what}")
        await asyncio.sleep(every)
    return time.monotonic() - began


class Blocks:
    """Channels to every block node of a cluster, with user and node credentials."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.signer = Signer(cluster.secret)
        self.user_md = auth_metadata(self.signer.issue_token(USER, ttl=3600)[0])
        self.node_md = auth_metadata(self.signer.node_token("fault-tests"))
        self._channels: dict[str, grpc.aio.Channel] = {}

    def stub(self, address: str) -> block_pb2_grpc.BlockStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(
                address, options=channel_options(16 * MiB)
            )
        return block_pb2_grpc.BlockStub(channel)

    def records(self) -> list[dict[str, Any]]:
        """cluster.json entries of the block nodes (running or not)."""
        return self.cluster.nodes("block")

    def running(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["pid"]]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    # -- ring -------------------------------------------------------------------------------
    async def ring_info(self) -> common_pb2.RingInfo:
        """GetRing from the first running node that answers."""
        last: Exception | None = None
        for rec in self.running():
            try:
                return await self.stub(rec["grpc"]).GetRing(
                    block_pb2.GetRingRequest(), metadata=self.user_md, timeout=10
                )
            except grpc.aio.AioRpcError as e:
                last = e
        raise AssertionError(f"no block node answers GetRing: {last}")

    async def all_see(self, predicate: Callable[[common_pb2.RingInfo], bool]) -> bool:
        """Whether the ring of every running node satisfies ``predicate``."""
        for rec in self.running():
            try:
                info = await self.stub(rec["grpc"]).GetRing(
                    block_pb2.GetRingRequest(), metadata=self.user_md, timeout=10
                )
            except grpc.aio.AioRpcError:
                return False
            if not predicate(info):
                return False
        return True

    async def ring(self) -> Ring:
        info = await self.ring_info()
        members = [Member(n.id, n.address, n.zone, n.weight, n.up) for n in info.nodes]
        return build_ring(members, vnodes=info.vnodes, revision=info.revision)

    # -- data -------------------------------------------------------------------------------
    async def put(
        self, address: str, chunks: Sequence[tuple[bytes, bytes]]
    ) -> list[block_pb2.PutChunkResult]:
        requests = [block_pb2.PutChunkRequest(hash=h, data=d) for h, d in chunks]
        call = self.stub(address).PutChunks(iter(requests), metadata=self.user_md, timeout=120)
        return [r async for r in call]

    async def put_routed(
        self, chunks: Sequence[tuple[bytes, bytes]], ring: Ring | None = None
    ) -> None:
        """Put each chunk on its first live owner (as the SDK does)."""
        ring = ring or await self.ring()
        groups: dict[str, list[tuple[bytes, bytes]]] = {}
        for h, d in chunks:
            primary = ring.live_owners(chunk_position(h), 3)[0]
            groups.setdefault(ring.member(primary).address, []).append((h, d))
        results = await asyncio.gather(*(self.put(a, part) for a, part in groups.items()))
        assert sum(len(r) for r in results) == len(chunks)

    def ticket(self, hashes: list[bytes]) -> common_pb2.ReadTicket:
        expires_at, signature = self.signer.sign_ticket(USER, hashes, 600)
        return common_pb2.ReadTicket(
            user_id=USER, hashes=hashes, expires_at=expires_at, signature=signature
        )

    async def get(self, address: str, hashes: list[bytes], *, as_node: bool = False) -> list[bytes]:
        """Chunk bytes from one node, in order (as a node: that node's own copies only)."""
        request = block_pb2.GetChunksRequest(
            ticket=common_pb2.ReadTicket() if as_node else self.ticket(hashes), hashes=hashes
        )
        md = self.node_md if as_node else self.user_md
        call = self.stub(address).GetChunks(request, metadata=md, timeout=120)
        return [bytes(c.data) async for c in call]

    # -- where copies are -------------------------------------------------------------------
    async def holdings(
        self, hashes: Sequence[bytes], records: Iterable[dict[str, Any]] | None = None
    ) -> dict[str, set[bytes]]:
        """node id -> the given chunks it holds, asking the nodes in the order given."""
        out: dict[str, set[bytes]] = {}
        for rec in records if records is not None else self.running():
            present: list[bool] = []
            for i in range(0, len(hashes), 5000):
                part = list(hashes[i : i + 5000])
                reply = await self.stub(rec["grpc"]).HasChunks(
                    block_pb2.HasChunksRequest(hashes=part), metadata=self.node_md, timeout=30
                )
                present += list(reply.present)
            out[rec["node_id"]] = {h for h, ok in zip(hashes, present, strict=True) if ok}
        return out

    async def status(self, address: str) -> block_pb2.NodeStatusResponse:
        return await self.stub(address).NodeStatus(
            block_pb2.NodeStatusRequest(), metadata=self.node_md, timeout=10
        )

    async def statuses(self) -> list[block_pb2.NodeStatusResponse]:
        return list(await asyncio.gather(*(self.status(r["grpc"]) for r in self.running())))


def misplacement(
    ring: Ring, holdings: dict[str, set[bytes]], hashes: Iterable[bytes], replicas: int = 3
) -> tuple[list[bytes], list[bytes]]:
    """(chunks missing on an owner, chunks held by a non-owner)."""
    missing, extra = [], []
    for h in hashes:
        owners = set(ring.owners(chunk_position(h), replicas))
        holders = {n for n, held in holdings.items() if h in held}
        if owners - holders:
            missing.append(h)
        if holders - owners:
            extra.append(h)
    return missing, extra


def metric(metrics_address: str, name: str) -> float:
    """One unlabelled sample from a node's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def alist(it: AsyncIterator[Any]) -> list[Any]:
    return [x async for x in it]


@contextlib.contextmanager
def block_cluster(
    base: Path, env: dict[str, str], *, block_nodes: int = 5
) -> Iterator[LocalCluster]:
    """A cluster of its own for destructive tests: ``block_nodes`` block nodes, no sync node."""
    from devcluster import LocalCluster

    c = LocalCluster.start(
        base, block_nodes=block_nodes, sync_nodes=0, meta_port=0, fast=True, env=env
    )
    try:
        yield c
    finally:
        c.stop()
