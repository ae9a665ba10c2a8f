"""Chunk transfer to and from block nodes, routed by the block ring.

Uploads fail over: a chunk goes to its first live owner; when that node fails (crashed, its
lease not yet lapsed) the chunks it had not acknowledged go to the next node of their
preference list, and the ring is asked again from any node that answers. Receipts already
received are kept (also across calls, until they near expiry), so a retry after a failure
sends only the chunks not yet stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc

from client._delta import DeltaBase, prepare_deltas
from client._errors import NotFoundError, SyncError, UnavailableError, from_rpc_error
from tessera import delta
from tessera.channels import ChannelPool
from tessera.chunking import MAX_CHUNK, Chunk
from tessera.pb import block_pb2, block_pb2_grpc, common_pb2
from tessera.retry import RetryPolicy
from tessera.ring import Member, Ring, build_ring, chunk_position
from tessera.rpc import PLAINTEXT, ChannelSecurity, auth_metadata

log = logging.getLogger(__name__)

_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}
# A put may go to another node on these too: grpcio's asyncio client can report a stream the
# server ended (or a server that died) as INTERNAL while it is still writing (grpc/grpc#36066),
# and storing a chunk twice is harmless (content-addressed).
_PUT_RETRYABLE = _RETRYABLE | {grpc.StatusCode.INTERNAL}
# A put carrying deltas or compressed chunks that fails with one of these is sent again whole
# (base collected, ticket expired, a node without delta support): deltas are an optimisation.
_PLAIN_AGAIN = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.FAILED_PRECONDITION,
}
RECEIPT_MARGIN = 300  # seconds: a cached receipt this close to expiry is not reused
RECEIPT_CACHE = 100_000  # receipts kept for retries
PUT_ROUNDS = 6  # failover rounds per put
PUT_BACKOFF = RetryPolicy(base=0.1, cap=2.0, attempts=PUT_ROUNDS, retry_on=_PUT_RETRYABLE)
SUSPECT_SECONDS = 10.0  # a node that failed a put is passed over this long (until its lease
# lapses, the ring still shows a crashed node up)


def ring_from_pb(info: common_pb2.RingInfo) -> Ring:
    members = [
        Member(n.id, n.address, n.zone or "default", n.weight or 1.0, n.up) for n in info.nodes
    ]
    kwargs = {"vnodes": info.vnodes} if info.vnodes else {}
    return build_ring(members, revision=info.revision, **kwargs)


class BlockPool:
    """One channel per block node; picks replicas from the ring, fails over to the next."""

    def __init__(
        self,
        ring: Ring,
        token: str,
        *,
        max_message_bytes: int,
        replicas: int = 3,
        security: ChannelSecurity = PLAINTEXT,
    ) -> None:
        self.ring = ring
        self.replicas = replicas
        self._md = self.metadata = auth_metadata(token)
        self._max_message_bytes = max_message_bytes
        self._security = security
        self._pool = ChannelPool(security, max_message_bytes=max_message_bytes)
        self._receipts: OrderedDict[bytes, common_pb2.Receipt] = OrderedDict()
        self.sent_chunks = 0  # chunks streamed to block nodes (retries included)
        self.sent_bytes = 0  # chunk bytes those stood for
        # Serialized message bytes to and from block nodes (+5 B of gRPC framing each):
        # chunks, deltas, compressed chunks and signature calls.
        self.wire_sent = 0
        self.wire_received = 0
        self.delta_chunks_sent = 0  # chunks sent as deltas
        self.delta_chunks_received = 0
        self.compression = True  # send compressible chunks zstd-compressed, accept them so
        # Chunks of the puts under way that go as deltas or compressed, by hash.
        self._packed: dict[bytes, block_pb2.PutChunkRequest] = {}
        self.failovers = 0  # nodes given up on during puts
        self._suspects: dict[str, float] = {}  # node id -> monotonic time it failed a put

    def stub(self, node_id: str) -> block_pb2_grpc.BlockStub:
        return self._pool.stub(self.ring.member(node_id).address, block_pb2_grpc.BlockStub)

    def candidates(self, chunk_hash: bytes) -> list[str]:
        """Live replicas first, then the rest of the preference list."""
        pos = chunk_position(chunk_hash)
        live = self.ring.live_owners(pos, self.replicas)
        rest = [n for n in self.ring.preference_list(pos) if n not in live]
        return live + rest

    async def put(
        self, chunks: list[Chunk], *, base: DeltaBase | None = None
    ) -> list[common_pb2.Receipt]:
        """Store chunks (each on its primary, failing over), returning one receipt per chunk.

        With ``base`` (the file's previous version), a chunk goes as a delta against the chunk
        at its place there when that is smaller; compressible chunks go zstd-compressed.

        Raises:
            UnavailableError: Some chunks could not be stored after failing over; the message
                says how many. Calling again sends only those.
            SyncError: A non-retryable failure (bad chunk, bad token).
        """
        receipts: dict[bytes, common_pb2.Receipt] = {}
        now = time.time()
        for c in chunks:
            cached = self._receipts.get(c.hash)
            if cached is not None and cached.expires_at > now + RECEIPT_MARGIN:
                receipts[c.hash] = cached
        pending = {c.hash: c for c in chunks if c.hash not in receipts}
        packed: dict[bytes, block_pb2.PutChunkRequest] = {}
        if base is not None and pending:
            packed = await prepare_deltas(self, list(pending.values()), base)
        if self.compression:
            for c in pending.values():
                if c.hash not in packed:
                    z = await asyncio.to_thread(delta.compress_if_worth, c.data)
                    if z is not None:
                        packed[c.hash] = block_pb2.PutChunkRequest(hash=c.hash, zstd_data=z)
        self._packed.update(packed)
        try:
            return await self._put_rounds(chunks, pending, receipts)
        finally:
            for h in packed:
                self._packed.pop(h, None)

    async def _put_rounds(
        self,
        chunks: list[Chunk],
        pending: dict[bytes, Chunk],
        receipts: dict[bytes, common_pb2.Receipt],
    ) -> list[common_pb2.Receipt]:
        """Send ``pending`` (failing over between rounds); one receipt per chunk."""
        clock = time.monotonic()
        suspects = {n for n, at in self._suspects.items() if clock - at < SUSPECT_SECONDS}
        bad: set[str] = set()
        failure: BaseException | None = None
        for round_no in range(PUT_ROUNDS):
            if not pending:
                break
            groups: dict[str, list[Chunk]] = defaultdict(list)
            for c in pending.values():
                candidates = [n for n in self.candidates(c.hash) if n not in bad]
                # Recently failed nodes last: they get chunks only when nothing else is left.
                candidates.sort(key=lambda n: n in suspects)
                if not candidates:
                    raise UnavailableError(
                        f"no block node left to store {len(pending)} chunks "
                        f"({len(receipts)} of {len(chunks)} stored); retry later"
                    )
                groups[candidates[0]].append(c)
            results = await asyncio.gather(
                *(self._put_to(node, group, receipts) for node, group in groups.items()),
                return_exceptions=True,
            )
            for node, result in zip(groups, results, strict=True):
                if isinstance(result, BaseException):
                    if (
                        isinstance(result, grpc.aio.AioRpcError)
                        and result.code() in _PLAIN_AGAIN
                        and any(c.hash in self._packed for c in groups[node])
                    ):
                        log.info("a delta put failed (%s); sending whole chunks", result.details())
                        for c in groups[node]:
                            self._packed.pop(c.hash, None)
                        continue
                    if not (
                        isinstance(result, grpc.aio.AioRpcError) and result.code() in _PUT_RETRYABLE
                    ):
                        raise (
                            from_rpc_error(result)
                            if isinstance(result, grpc.aio.AioRpcError)
                            else result
                        )
                    log.info("block node %s failed a put (%s); failing over", node, result.code())
                    failure = result
                    bad.add(node)
                    self._suspects[node] = time.monotonic()
                    self.failovers += 1
            for h in list(pending):
                if h in receipts:
                    del pending[h]
            if pending:
                await self._refresh_ring(bad)
                await asyncio.sleep(PUT_BACKOFF.delay(round_no))
        if pending:
            detail = failure.details() if isinstance(failure, grpc.aio.AioRpcError) else ""
            raise UnavailableError(
                f"{len(pending)} of {len(chunks)} chunks could not be stored ({detail}); "
                "a retry sends only those"
            )
        return [receipts[c.hash] for c in chunks]

    async def _put_to(
        self,
        node_id: str,
        chunks: list[Chunk],
        receipts: dict[bytes, common_pb2.Receipt],
    ) -> None:
        """Stream chunks to one node (as deltas or compressed when ``put`` prepared them),
        keeping each receipt as it arrives."""

        async def requests() -> AsyncIterator[block_pb2.PutChunkRequest]:
            for c in chunks:
                self.sent_chunks += 1
                self.sent_bytes += len(c.data)
                req = self._packed.get(c.hash) or block_pb2.PutChunkRequest(
                    hash=c.hash, data=c.data
                )
                self.delta_chunks_sent += bool(req.delta)
                self.wire_sent += req.ByteSize() + 5
                yield req

        call = self.stub(node_id).PutChunks(requests(), metadata=self._md, timeout=300)
        async for r in call:
            self.wire_received += r.ByteSize() + 5
            h = bytes(r.hash)
            receipts[h] = r.receipt
            self._receipts[h] = r.receipt
            self._receipts.move_to_end(h)
            if len(self._receipts) > RECEIPT_CACHE:
                self._receipts.popitem(last=False)

    async def _refresh_ring(self, avoid: set[str]) -> None:
        """Ask any node that answers for the current ring (clients never watch etcd)."""
        for member in self.ring.members:
            if member.node_id in avoid or not member.up:
                continue
            try:
                info = await self.stub(member.node_id).GetRing(
                    block_pb2.GetRingRequest(), metadata=self._md, timeout=5
                )
            except grpc.aio.AioRpcError:
                continue
            if info.nodes and info.revision >= self.ring.revision:
                self.ring = ring_from_pb(info)
                self.replicas = info.replicas or self.replicas  # the cluster's RF, from etcd
            return

    async def get(
        self,
        ticket: common_pb2.ReadTicket,
        hashes: Iterable[bytes],
        *,
        bases: dict[bytes, bytes] | None = None,
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        """Yield (hash, data) for each hash (order not kept), verified, failing over between replicas.

        ``bases`` maps some hashes to bytes this client holds (an older chunk at the same
        place): those may arrive as deltas against them (their signatures go with the request).
        """
        sigs: dict[bytes, block_pb2.ChunkSignature] = {}
        for h, b in (bases or {}).items():
            s = await asyncio.to_thread(delta.signature, b)
            sigs[h] = block_pb2.ChunkSignature(strong=s.digests, sizes=s.sizes)
        by_node: dict[str, list[bytes]] = defaultdict(list)
        clock = time.monotonic()
        suspects = {n for n, at in self._suspects.items() if clock - at < SUSPECT_SECONDS}
        for h in dict.fromkeys(hashes):
            candidates = sorted(self.candidates(h), key=lambda n: n in suspects)
            by_node[(candidates or [""])[0]].append(h)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=8)

        async def fetch(node: str, wanted: list[bytes]) -> None:
            remaining = list(wanted)
            tried = 0
            while remaining:
                try:
                    if not node:
                        raise UnavailableError("no block node is up")
                    req = block_pb2.GetChunksRequest(
                        ticket=ticket,
                        hashes=remaining,
                        accept_zstd=self.compression,
                        bases=[
                            block_pb2.DeltaBase(target=h, signature=sigs[h])
                            for h in remaining
                            if h in sigs and not tried  # a retry asks for whole chunks
                        ],
                    )
                    self.wire_sent += req.ByteSize() + 5
                    async for msg in self.stub(node).GetChunks(req, metadata=self._md, timeout=300):
                        self.wire_received += msg.ByteSize() + 5
                        data = await asyncio.to_thread(self._unpack, msg, bases or {})
                        if hashlib.sha256(data).digest() != msg.hash:
                            raise SyncError(f"chunk {bytes(msg.hash).hex()[:16]} arrived corrupt")
                        await queue.put((bytes(msg.hash), data))
                        remaining.remove(bytes(msg.hash))
                    if remaining:
                        raise NotFoundError(f"{len(remaining)} chunks missing on {node}")
                except (grpc.aio.AioRpcError, SyncError) as e:
                    tried += 1
                    code = e.code() if isinstance(e, grpc.aio.AioRpcError) else None
                    # A node that refused our delta bases (or has no delta support) is asked
                    # again for whole chunks: the retry sends no bases.
                    plain_again = tried == 1 and sigs and code in _PLAIN_AGAIN
                    if tried > self.replicas or (
                        code is not None
                        and code not in _RETRYABLE
                        and code is not grpc.StatusCode.NOT_FOUND
                        and not plain_again
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

    def _unpack(self, msg: block_pb2.ChunkData, bases: dict[bytes, bytes]) -> bytes:
        """A chunk's bytes from a whole, compressed or delta answer (not yet verified)."""
        try:
            if msg.delta:
                base = bases.get(bytes(msg.hash))
                if base is None:
                    raise SyncError(f"chunk {bytes(msg.hash).hex()[:16]} came as an unasked delta")
                self.delta_chunks_received += 1
                return delta.apply(base, bytes(msg.delta), MAX_CHUNK)
            if msg.zstd_data:
                return delta.decompress(bytes(msg.zstd_data), MAX_CHUNK)
        except delta.DeltaError as e:
            raise SyncError(f"chunk {bytes(msg.hash).hex()[:16]} arrived corrupt: {e}") from None
        return bytes(msg.data)

    def forget(self, hashes: Iterable[bytes]) -> None:
        """Drop cached receipts (the metanode said those chunks are gone): upload them again."""
        for h in hashes:
            self._receipts.pop(h, None)

    async def close(self) -> None:
        await self._pool.close()
