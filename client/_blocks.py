"""Chunk transfer to and from block nodes, routed by the block ring."""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc

from client._errors import NotFoundError, SyncError, UnavailableError, from_rpc_error
from tessera.chunking import Chunk
from tessera.pb import block_pb2, block_pb2_grpc, common_pb2
from tessera.ring import Member, Ring, build_ring, chunk_position
from tessera.rpc import auth_metadata, channel_options

_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}


def ring_from_pb(info: common_pb2.RingInfo) -> Ring:
    members = [
        Member(n.id, n.address, n.zone or "default", n.weight or 1.0, n.up) for n in info.nodes
    ]
    kwargs = {"vnodes": info.vnodes} if info.vnodes else {}
    return build_ring(members, revision=info.revision, **kwargs)


class BlockPool:
    """One channel per block node; picks replicas from the ring, fails over to the next."""

    def __init__(
        self, ring: Ring, token: str, *, max_message_bytes: int, replicas: int = 3
    ) -> None:
        self.ring = ring
        self.replicas = replicas
        self._md = auth_metadata(token)
        self._options = channel_options(max_message_bytes)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def stub(self, node_id: str) -> block_pb2_grpc.BlockStub:
        address = self.ring.member(node_id).address
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(
                address, options=self._options
            )
        return block_pb2_grpc.BlockStub(channel)

    def candidates(self, chunk_hash: bytes) -> list[str]:
        """Live replicas first, then the rest of the preference list."""
        pos = chunk_position(chunk_hash)
        live = self.ring.live_owners(pos, self.replicas)
        rest = [n for n in self.ring.preference_list(pos) if n not in live]
        return live + rest

    async def put(self, chunks: list[Chunk]) -> list[common_pb2.Receipt]:
        """Store chunks (each on its primary, failing over), returning one receipt per chunk."""
        pending = {c.hash: c for c in chunks}
        receipts: dict[bytes, common_pb2.Receipt] = {}
        attempt = 0
        while pending:
            groups: dict[str, list[Chunk]] = defaultdict(list)
            for c in pending.values():
                candidates = self.candidates(c.hash)
                if not candidates:
                    raise UnavailableError("no block node is up")
                groups[candidates[min(attempt, len(candidates) - 1)]].append(c)
            results = await asyncio.gather(
                *(self._put_to(node, group) for node, group in groups.items()),
                return_exceptions=True,
            )
            failure: BaseException | None = None
            for result in results:
                if isinstance(result, BaseException):
                    failure = result
                    continue
                for r in result:
                    receipts[bytes(r.hash)] = r.receipt
                    pending.pop(bytes(r.hash), None)
            if failure is not None:
                if (
                    not isinstance(failure, grpc.aio.AioRpcError)
                    or failure.code() not in _RETRYABLE
                    or attempt >= self.replicas
                ):
                    raise (
                        from_rpc_error(failure)
                        if isinstance(failure, grpc.aio.AioRpcError)
                        else failure
                    )
                attempt += 1
                await asyncio.sleep(0.2 * attempt)
        return [receipts[c.hash] for c in chunks]

    async def _put_to(self, node_id: str, chunks: list[Chunk]) -> list[block_pb2.PutChunkResult]:
        async def requests() -> AsyncIterator[block_pb2.PutChunkRequest]:
            for c in chunks:
                yield block_pb2.PutChunkRequest(hash=c.hash, data=c.data)

        call = self.stub(node_id).PutChunks(requests(), metadata=self._md, timeout=300)
        return [r async for r in call]

    async def get(
        self, ticket: common_pb2.ReadTicket, hashes: Iterable[bytes]
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        """Yield (hash, data) for each hash (order not kept), verified, failing over between replicas."""
        by_node: dict[str, list[bytes]] = defaultdict(list)
        for h in dict.fromkeys(hashes):
            by_node[(self.candidates(h) or [""])[0]].append(h)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=8)

        async def fetch(node: str, wanted: list[bytes]) -> None:
            remaining = list(wanted)
            tried = 0
            while remaining:
                try:
                    if not node:
                        raise UnavailableError("no block node is up")
                    req = block_pb2.GetChunksRequest(ticket=ticket, hashes=remaining)
                    async for msg in self.stub(node).GetChunks(req, metadata=self._md, timeout=300):
                        data = bytes(msg.data)
                        if hashlib.sha256(data).digest() != msg.hash:
                            raise SyncError(f"chunk {bytes(msg.hash).hex()[:16]} arrived corrupt")
                        await queue.put((bytes(msg.hash), data))
                        remaining.remove(bytes(msg.hash))
                    if remaining:
                        raise NotFoundError(f"{len(remaining)} chunks missing on {node}")
                except (grpc.aio.AioRpcError, SyncError) as e:
                    tried += 1
                    code = e.code() if isinstance(e, grpc.aio.AioRpcError) else None
                    if tried > self.replicas or (
                        code is not None
                        and code not in _RETRYABLE
                        and code is not grpc.StatusCode.NOT_FOUND
                    ):
                        await queue.put(
                            from_rpc_error(e) if isinstance(e, grpc.aio.AioRpcError) else e
                        )
                        return
                    options = [n for n in self.candidates(remaining[0]) if n != node]
                    node = options[(tried - 1) % len(options)] if options else node
            await queue.put(None)

        tasks = [asyncio.create_task(fetch(n, hs)) for n, hs in by_node.items()]
        done = 0
        try:
            while done < len(tasks):
                item = await queue.get()
                if item is None:
                    done += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for t in tasks:
                t.cancel()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
