"""Calls to the other block nodes: one grpc.aio channel per peer, with node credentials.

``PeerClient`` is the outgoing half of the node-to-node protocol (``service`` is the incoming
half), so, like ``service``, it speaks protobuf; the background loops (``replicator``,
``scrubber``) use its typed methods and never see a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc

from blocknode.ratelimit import RateLimiter
from blocknode.replstream import ReplicaStream, StreamBroken
from blocknode.store import verify
from tessera.auth import Signer
from tessera.channels import ChannelPool
from tessera.config import BlockConfig
from tessera.errors import Unavailable
from tessera.pb import block_pb2, block_pb2_grpc
from tessera.ring import Member
from tessera.rpc import ChannelSecurity, auth_metadata

log = logging.getLogger(__name__)

PEER_TIMEOUT = 30.0  # seconds for one small node-to-node call
PUSH_TIMEOUT = 600.0  # seconds for one background push stream (rate-limited)
# A peer that was down is redialled soon after it is back (gRPC's default backoff grows to
# minutes); ``reset`` redials at once when the ring shows it up again.
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class PeerError(Unavailable):
    """A call to another node failed; ``code`` is its gRPC status (``status`` here)."""

    def __init__(self, member: Member, e: grpc.aio.AioRpcError | StreamBroken) -> None:
        if isinstance(e, StreamBroken):
            super().__init__(f"{member.node_id}: {e.status.name} {e}")
            self.status = e.status
            return
        super().__init__(f"{member.node_id}: {e.code().name} {e.details()}")
        self.status = e.code()


@dataclass
class PushResult:
    """What a background push achieved.

    Attributes:
        stored: Chunks the peer now holds durably.
        refused: Chunks the peer refused (garbage-collected there recently).
        skipped: Chunks not sent: missing or corrupt here.
        bytes: Chunk bytes sent.
    """

    stored: list[bytes] = field(default_factory=list)
    refused: list[bytes] = field(default_factory=list)
    skipped: list[bytes] = field(default_factory=list)
    bytes: int = 0


class PeerClient:
    """One channel per peer node, redialled when the peer's advertised address changes.

    Args:
        cfg: The node's config (message limit, TLS).
        signer: Makes this node's credentials.
        node_id: This node.
    """

    def __init__(self, cfg: BlockConfig, signer: Signer, node_id: str) -> None:
        self._pool = ChannelPool(
            ChannelSecurity.for_node(cfg),
            max_message_bytes=cfg.max_message_bytes,
            options=RECONNECT_OPTIONS,
        )
        self.metadata = auth_metadata(signer.node_token(node_id))
        self._addresses: dict[str, str] = {}  # node id -> the address last dialled
        self._streams: dict[str, ReplicaStream] = {}
        self._legacy: set[str] = set()  # peers without ReplicateStream (older nodes)

    def stub(self, member: Member) -> block_pb2_grpc.BlockStub:
        """The stub for a peer, dialling (or redialling) its advertised address."""
        # A moved peer gets a channel to its new address; the old one stays open for calls
        # in flight on it and is closed at stop.
        self._addresses[member.node_id] = member.address
        return self._pool.stub(member.address, block_pb2_grpc.BlockStub)

    def reset(self, node_id: str) -> None:
        """Redial a peer on its next call (it just came back: skip the reconnect backoff)."""
        stream = self._streams.pop(node_id, None)
        if stream is not None:
            stream.close()
        self._legacy.discard(node_id)  # it may have been upgraded
        address = self._addresses.pop(node_id, None)
        if address is not None:  # calls in flight on it may finish first
            self._pool.discard(address, grace=PEER_TIMEOUT)

    async def replicate(
        self, member: Member, chunk_hash: bytes, data: bytes, hint_for: str = ""
    ) -> None:
        """Store one chunk of a client's put on a replica (durable when this returns).

        Sent on the peer's long-lived ``ReplicateStream`` (opened on first use, replaced when it
        fails); a peer that does not know that call gets a ``Replicate`` call of its own.

        Raises:
            PeerError: The replica did not store it.
        """
        if member.node_id not in self._legacy:
            stream = self._streams.get(member.node_id)
            if stream is None or stream.broken is not None or stream.address != member.address:
                if stream is not None:
                    stream.close()
                stream = ReplicaStream(self.stub(member), self.metadata, member.address)
                self._streams[member.node_id] = stream
            try:
                await stream.send(chunk_hash, data, hint_for, PEER_TIMEOUT)
                return
            except StreamBroken as e:
                if e.status != grpc.StatusCode.UNIMPLEMENTED:
                    raise PeerError(member, e) from None
                log.info("%s has no ReplicateStream: one Replicate call per copy", member.node_id)
                self._legacy.add(member.node_id)
        request = block_pb2.ReplicateRequest(hash=chunk_hash, data=data, hint_for=hint_for)
        try:
            await self.stub(member).Replicate(
                iter([request]), metadata=self.metadata, timeout=PEER_TIMEOUT
            )
        except grpc.aio.AioRpcError as e:
            raise PeerError(member, e) from None

    async def push(
        self,
        member: Member,
        hashes: Sequence[bytes],
        read: Callable[[bytes], Awaitable[bytes | None]],
        limiter: RateLimiter,
    ) -> PushResult:
        """Copy chunks held here to a peer as background copies, at the limiter's rate.

        Args:
            member: The peer.
            hashes: The chunks.
            read: Returns a chunk's verified bytes here, or None to skip it.
            limiter: Shared rate limit of background transfers.

        Raises:
            PeerError: The stream failed (any chunk may or may not be stored).
        """
        result = PushResult()
        sent: list[bytes] = []

        async def requests() -> AsyncIterator[block_pb2.ReplicateRequest]:
            for h in hashes:
                data = await read(h)
                if data is None:
                    result.skipped.append(h)
                    continue
                await limiter.take(len(data))
                sent.append(h)
                result.bytes += len(data)
                yield block_pb2.ReplicateRequest(hash=h, data=data, repair=True)

        try:
            reply = await self.stub(member).Replicate(
                requests(), metadata=self.metadata, timeout=PUSH_TIMEOUT
            )
        except grpc.aio.AioRpcError as e:
            raise PeerError(member, e) from None
        refused = {bytes(h) for h in reply.refused}
        result.refused = [h for h in sent if h in refused]
        result.stored = [h for h in sent if h not in refused]
        return result

    async def has(self, member: Member, hashes: Sequence[bytes]) -> list[bool]:
        """Which of these chunks the peer holds.

        Raises:
            PeerError: The call failed.
        """
        try:
            reply = await self.stub(member).HasChunks(
                block_pb2.HasChunksRequest(hashes=list(hashes)),
                metadata=self.metadata,
                timeout=PEER_TIMEOUT,
            )
        except grpc.aio.AioRpcError as e:
            raise PeerError(member, e) from None
        return list(reply.present)

    async def range_digests(
        self, member: Member, buckets: int, shared_with: str, placement: bytes
    ) -> list[bytes]:
        """The peer's digests of the chunks it shares with ``shared_with``, per bucket.

        Raises:
            PeerError: The call failed (FAILED_PRECONDITION: the peer's ring differs).
        """
        request = block_pb2.RangeDigestsRequest(
            buckets=buckets, shared_with=shared_with, placement=placement
        )
        try:
            reply = await self.stub(member).RangeDigests(
                request, metadata=self.metadata, timeout=PEER_TIMEOUT * 4
            )
        except grpc.aio.AioRpcError as e:
            raise PeerError(member, e) from None
        return [bytes(d) for d in reply.digests]

    async def list_range(
        self, member: Member, buckets: int, bucket: int, shared_with: str, placement: bytes
    ) -> list[bytes]:
        """The chunks the peer holds in one bucket that it shares with ``shared_with``.

        Raises:
            PeerError: The call failed.
        """
        request = block_pb2.ListRangeRequest(
            buckets=buckets, bucket=bucket, shared_with=shared_with, placement=placement
        )
        try:
            reply = await self.stub(member).ListRange(
                request, metadata=self.metadata, timeout=PEER_TIMEOUT
            )
        except grpc.aio.AioRpcError as e:
            raise PeerError(member, e) from None
        return [bytes(h) for h in reply.hashes]

    async def fetch(self, member: Member, chunk_hash: bytes) -> bytes | None:
        """The peer's own copy of a chunk, verified; None when it has none (or a bad one).

        Raises:
            PeerError: The call failed other than with NOT_FOUND.
        """
        request = block_pb2.GetChunksRequest(hashes=[chunk_hash])
        try:
            call = self.stub(member).GetChunks(
                request, metadata=self.metadata, timeout=PEER_TIMEOUT
            )
            async for reply in call:
                data = bytes(reply.data)
                if reply.hash == chunk_hash and await asyncio.to_thread(verify, chunk_hash, data):
                    return data
                return None
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise PeerError(member, e) from None
        return None

    async def close(self) -> None:
        """Close every replication stream and channel."""
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            stream.close()
            await stream.wait_closed()
        await self._pool.close(grace=1.0)
