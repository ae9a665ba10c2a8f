"""The metanode's client of the block service.

Chunks are located on the block ring as the block nodes place them: the ring and the cluster's
RF come from the same etcd view (``tessera.membership``) the block nodes follow.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import grpc

from tessera.channels import ChannelPool
from tessera.membership import Watcher
from tessera.pb import block_pb2, block_pb2_grpc
from tessera.ring import chunk_position
from tessera.rpc import PLAINTEXT, ChannelSecurity, auth_metadata

log = logging.getLogger(__name__)

MAX_HASHES_PER_CALL = 10_000


class BlockClient:
    """The metanode's calls to block nodes: delete chunks on their ring owners (GC), ask who
    holds them (commits of collected chunks), and each node's status (``GetStatus``)."""

    def __init__(
        self,
        watch: Watcher | None,
        node_token: str,
        *,
        timeout: float = 10.0,
        security: ChannelSecurity = PLAINTEXT,
    ) -> None:
        self._watch = watch
        self._md = auth_metadata(node_token)
        self._timeout = timeout
        self._pool = ChannelPool(security)

    def _stub(self, address: str) -> block_pb2_grpc.BlockStub:
        return self._pool.stub(address, block_pb2_grpc.BlockStub)

    def _by_owner(self, hashes: list[bytes]) -> tuple[dict[str, list[bytes]], dict[str, str]]:
        if self._watch is None:
            return {}, {}
        view = self._watch.view  # the ring and RF as the cluster publishes them in etcd
        ring, replicas = view.ring(), view.cluster_params.replicas
        if len(ring) == 0:
            return {}, {}
        groups: dict[str, list[bytes]] = defaultdict(list)
        for h in hashes:
            for node in ring.owners(chunk_position(h), replicas):
                groups[node].append(h)
        return groups, {node: ring.member(node).address for node in groups}

    async def delete(self, hashes: list[bytes]) -> set[bytes]:
        """Delete on every ring owner; returns the hashes every owner confirmed."""
        groups, addresses = self._by_owner(hashes)
        if not groups:
            return set()
        failed: set[bytes] = set()

        async def one(node: str, part: list[bytes]) -> None:
            try:
                for i in range(0, len(part), MAX_HASHES_PER_CALL):
                    req = block_pb2.DeleteChunksRequest(hashes=part[i : i + MAX_HASHES_PER_CALL])
                    await self._stub(addresses[node]).DeleteChunks(
                        req, metadata=self._md, timeout=self._timeout
                    )
            except grpc.aio.AioRpcError as e:
                log.warning(
                    "gc: delete on %s failed (%s): %d chunks retried next pass",
                    node,
                    e.code().name,
                    len(part),
                )
                failed.update(part)

        await asyncio.gather(*(one(n, p) for n, p in groups.items()))
        return {h for h in hashes if h not in failed}

    async def present(self, hashes: list[bytes]) -> set[bytes]:
        """The hashes at least one ring owner holds (unreachable owners count as not holding)."""
        groups, addresses = self._by_owner(hashes)
        found: set[bytes] = set()

        async def one(node: str, part: list[bytes]) -> None:
            try:
                for i in range(0, len(part), MAX_HASHES_PER_CALL):
                    batch = part[i : i + MAX_HASHES_PER_CALL]
                    resp = await self._stub(addresses[node]).HasChunks(
                        block_pb2.HasChunksRequest(hashes=batch),
                        metadata=self._md,
                        timeout=self._timeout,
                    )
                    found.update(h for h, ok in zip(batch, resp.present, strict=False) if ok)
            except grpc.aio.AioRpcError as e:
                log.info("gc: HasChunks on %s failed: %s", node, e.code().name)

        await asyncio.gather(*(one(n, p) for n, p in groups.items()))
        return found

    async def node_statuses(self) -> list[block_pb2.NodeStatusResponse]:
        """``NodeStatus`` of every up block node (unreachable ones are left out)."""
        if self._watch is None:
            return []
        view = self._watch.view

        async def one(address: str) -> block_pb2.NodeStatusResponse | None:
            try:
                return await self._stub(address).NodeStatus(
                    block_pb2.NodeStatusRequest(), metadata=self._md, timeout=self._timeout
                )
            except grpc.aio.AioRpcError as e:
                log.info("status: NodeStatus on %s failed: %s", address, e.code().name)
                return None

        up = [n.address for n in view.nodes.values() if n.node_id in view.alive]
        return [r for r in await asyncio.gather(*(one(a) for a in up)) if r is not None]

    async def close(self) -> None:
        await self._pool.close()
