"""The Block gRPC service: chunk puts with replication, ticketed reads with repair, node calls.

A put is handled by whichever node the client chose as primary. The chunk's replica set is
``ring.live_owners(chunk_position(hash), replicas)``; the primary always keeps a copy (a client
with a stale ring may pick a non-owner), forwards to the other live owners with the node-only
``Replicate`` call, and acknowledges once ``min(write_quorum, live owners)`` owner copies are
durable. The remaining copies finish in the background.

A read re-hashes every chunk; a chunk missing or corrupt here is fetched from another live
owner (node callers read any chunk without a ticket, local copies only) and repaired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge

from blocknode.store import HASH_LEN, AsyncChunkStore, verify
from tessera.auth import Principal, Signer
from tessera.chunking import MAX_CHUNK
from tessera.config import BlockConfig
from tessera.errors import InvalidArgument, NotFound, PermissionDenied, TesseraError, Unavailable
from tessera.membership import View
from tessera.pb import block_pb2, block_pb2_grpc, common_pb2
from tessera.ring import DEFAULT_VNODES, Member, Ring, build_ring, chunk_position
from tessera.rpc import auth_metadata, channel_options, current_principal

log = logging.getLogger(__name__)

SERVICE_NAME = "tessera.v1.Block"
NODE_METHODS = tuple(
    f"/{SERVICE_NAME}/{m}"
    for m in ("HasChunks", "Replicate", "DeleteChunks", "RangeDigests", "ListRange")
)
PUT_WINDOW = 8  # chunks of one PutChunks stream in flight at once
GET_WINDOW = 4  # chunks of one GetChunks stream read ahead
MAX_HASHES = 10_000  # hashes in one HasChunks / DeleteChunks / GetChunks call
PEER_TIMEOUT = 30.0  # seconds for one node-to-node call
MAX_BACKGROUND = 256  # replica writes left running after acks; past this, puts wait for all


class Unimplemented(TesseraError):
    """A call this node does not serve yet."""

    code = grpc.StatusCode.UNIMPLEMENTED


def _hex(chunk_hash: bytes) -> str:
    return chunk_hash.hex()[:16]


def _check_hashes(hashes: Sequence[bytes]) -> None:
    if len(hashes) > MAX_HASHES:
        raise InvalidArgument(f"at most {MAX_HASHES} hashes per call, got {len(hashes)}")
    for h in hashes:
        if len(h) != HASH_LEN:
            raise InvalidArgument(f"a chunk hash is 32 bytes (SHA-256), got {len(h)}")


class Peers:
    """One grpc.aio channel per peer node, redialled when its address changes."""

    def __init__(self, cfg: BlockConfig, signer: Signer, node_id: str) -> None:
        self._options = channel_options(cfg.max_message_bytes)
        self._creds: grpc.ChannelCredentials | None = None
        if cfg.tls_ca or cfg.tls_cert:
            ca = Path(cfg.tls_ca).read_bytes() if cfg.tls_ca else None
            self._creds = grpc.ssl_channel_credentials(root_certificates=ca)
        self._metadata = auth_metadata(signer.node_token(node_id))
        self._channels: dict[str, tuple[str, grpc.aio.Channel, block_pb2_grpc.BlockStub]] = {}
        self._retired: list[grpc.aio.Channel] = []

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Node credentials for calls to peers."""
        return self._metadata

    def stub(self, member: Member) -> block_pb2_grpc.BlockStub:
        """The stub for a peer, dialling (or redialling) its advertised address."""
        known = self._channels.get(member.node_id)
        if known and known[0] == member.address:
            return known[2]
        if known:
            self._retired.append(known[1])
        if self._creds is not None:
            channel = grpc.aio.secure_channel(member.address, self._creds, options=self._options)
        else:
            channel = grpc.aio.insecure_channel(member.address, options=self._options)
        stub = block_pb2_grpc.BlockStub(channel)
        self._channels[member.node_id] = (member.address, channel, stub)
        return stub

    async def close(self) -> None:
        """Close every channel."""
        channels = [c for _, c, _ in self._channels.values()] + self._retired
        self._channels.clear()
        self._retired.clear()
        for channel in channels:
            with contextlib.suppress(Exception):
                await channel.close(grace=1.0)


class BlockMetrics:
    """The block node's Prometheus metrics, registered on the node's registry."""

    def __init__(self, registry: CollectorRegistry, store: AsyncChunkStore) -> None:
        self.chunks_stored = Gauge(
            "tessera_block_chunks_stored", "Chunks held by this node", registry=registry
        )
        self.chunks_stored.set_function(store.store.count)
        self.hints = Gauge(
            "tessera_block_handoff_backlog",
            "Hinted-handoff chunks held for down nodes",
            registry=registry,
        )
        self.hints.set_function(store.store.hint_count)
        self.bytes_in = Counter(
            "tessera_block_bytes_in", "Chunk bytes received", ["source"], registry=registry
        )
        self.bytes_out = Counter(
            "tessera_block_bytes_out", "Chunk bytes sent", ["dest"], registry=registry
        )
        self.puts = Counter(
            "tessera_block_chunk_puts", "Chunks stored, by source", ["source"], registry=registry
        )
        self.gets = Counter(
            "tessera_block_chunk_gets",
            "Chunks served, by where they came from",
            ["source"],
            registry=registry,
        )
        self.replication_failures = Counter(
            "tessera_block_replication_failures",
            "Replica writes to peers that failed",
            registry=registry,
        )
        self.replication_queue = Gauge(
            "tessera_block_replication_queue",
            "Replica writes still running after the put was acknowledged",
            registry=registry,
        )
        self.corrupt = Counter(
            "tessera_block_corrupt_chunks",
            "Chunks that failed their hash check when read",
            registry=registry,
        )
        self.repairs = Counter(
            "tessera_block_repairs",
            "Chunks re-fetched from a replica and rewritten here",
            registry=registry,
        )


class BlockService(block_pb2_grpc.BlockServicer):
    """The Block servicer of one node."""

    def __init__(
        self,
        cfg: BlockConfig,
        node_id: str,
        store: AsyncChunkStore,
        signer: Signer,
        registry: CollectorRegistry,
    ) -> None:
        self._cfg = cfg
        self._node_id = node_id
        self._store = store
        self._signer = signer
        self._peers = Peers(cfg, signer, node_id)
        self._metrics = BlockMetrics(registry, store)
        self._view = View("block", 0)
        self._ring: Ring | None = None
        self._rebuild: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # -- ring -------------------------------------------------------------------------------
    def update_view(self, view: View) -> None:
        """Adopt a newer membership view (the etcd watcher's callback); the ring follows."""
        if view.revision < self._view.revision:
            return
        self._view = view
        if self._rebuild is None or self._rebuild.done():
            self._rebuild = asyncio.create_task(self._rebuild_ring(), name="ring-rebuild")

    async def sync_ring(self) -> Ring:
        """Wait until the ring reflects the latest view, and return it."""
        while self._rebuild is not None and not self._rebuild.done():
            await asyncio.shield(self._rebuild)
        return self.ring

    async def _rebuild_ring(self) -> None:
        while True:
            view = self._view
            ring = await self._build_ring(view)
            if self._ring is None or ring.revision >= self._ring.revision:
                self._ring = ring
            if self._view is view:
                return

    async def _build_ring(self, view: View) -> Ring:
        """The ring for a view; when only liveness or addresses changed, the old points stay."""
        members = sorted(
            (
                Member(n.node_id, n.address, n.zone, n.weight, n.node_id in view.alive)
                for n in view.nodes.values()
            ),
            key=lambda m: m.node_id,
        )
        vnodes = self._cfg.vnodes or DEFAULT_VNODES
        old = self._ring
        if (
            old is not None
            and old.vnodes == vnodes
            and [(m.node_id, m.weight) for m in old.members]
            == [(m.node_id, m.weight) for m in members]
        ):
            return Ring(
                revision=view.revision, members=tuple(members), points=old.points, vnodes=vnodes
            )
        # Hashing thousands of points per node takes a while: keep the event loop free.
        return await asyncio.to_thread(build_ring, members, vnodes, view.revision)

    @property
    def ring(self) -> Ring:
        """The current ring (empty until the first view arrives)."""
        if self._ring is None:
            return build_ring([], revision=0)
        return self._ring

    def _placement(self, chunk_hash: bytes) -> list[tuple[Member, str]]:
        """The chunk's live replica set, each with the down owner it stands in for ("" if none).

        ``live_owners`` skips down owners and takes the next nodes of the preference list; a
        stand-in's copy carries a hint naming the owner it belongs to (hinted handoff).
        """
        ring = self.ring
        position = chunk_position(chunk_hash)
        live = ring.live_owners(position, self._cfg.replicas)
        nominal = ring.owners(position, self._cfg.replicas)
        down = [n for n in nominal if n not in live]
        stand_ins = dict(zip([n for n in live if n not in nominal], down, strict=False))
        return [(ring.member(n), stand_ins.get(n, "")) for n in live]

    def _is_owner(self, chunk_hash: bytes) -> bool:
        return any(m.node_id == self._node_id for m, _ in self._placement(chunk_hash))

    # -- background work --------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        self._metrics.replication_queue.inc()
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        self._metrics.replication_queue.dec()
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s failed: %s", task.get_name(), task.exception())

    async def close(self, grace: float = 5.0) -> None:
        """Give background replication ``grace`` seconds, then cancel it; close channels."""
        if self._rebuild is not None:
            self._rebuild.cancel()
        if self._background:
            _, pending = await asyncio.wait(list(self._background), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self._peers.close()

    # -- puts -------------------------------------------------------------------------------
    async def PutChunks(
        self,
        request_iterator: AsyncIterator[block_pb2.PutChunkRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[block_pb2.PutChunkResult]:
        """Store each chunk on the write quorum and answer with a signed receipt, in order."""
        principal = current_principal()
        window = asyncio.Semaphore(PUT_WINDOW)
        started: asyncio.Queue[asyncio.Task[block_pb2.PutChunkResult] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    started.put_nowait(asyncio.create_task(self._put_request(request, principal)))
                    await window.acquire()  # at most PUT_WINDOW chunks unanswered
            finally:
                started.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await started.get()) is not None:
                result = await task
                window.release()
                yield result
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()
            while not started.empty():
                leftover = started.get_nowait()
                if leftover is not None:
                    leftover.cancel()

    async def _put_request(
        self, request: block_pb2.PutChunkRequest, principal: Principal
    ) -> block_pb2.PutChunkResult:
        chunk_hash, data = request.hash, request.data
        if request.delta or request.base_hash:
            raise Unimplemented(
                "delta uploads are not supported by this node yet; send the chunk's bytes"
            )
        if len(chunk_hash) != HASH_LEN:
            raise InvalidArgument(f"a chunk hash is 32 bytes (SHA-256), got {len(chunk_hash)}")
        if len(data) > MAX_CHUNK:
            raise InvalidArgument(
                f"chunk {_hex(chunk_hash)} is {len(data)} bytes, over the {MAX_CHUNK} limit"
            )
        if not await asyncio.to_thread(verify, chunk_hash, data):
            raise InvalidArgument(f"chunk {chunk_hash.hex()} does not match its hash")
        self._metrics.bytes_in.labels("client").inc(len(data))
        copies = await self._store_replicated(chunk_hash, data)
        expires_at, signature = self._signer.sign_receipt(
            chunk_hash, len(data), principal.user_id, self._cfg.receipt_ttl
        )
        receipt = common_pb2.Receipt(
            hash=chunk_hash,
            size=len(data),
            user_id=principal.user_id,
            expires_at=expires_at,
            signature=signature,
        )
        return block_pb2.PutChunkResult(hash=chunk_hash, receipt=receipt, replicas=copies)

    async def _store_replicated(self, chunk_hash: bytes, data: bytes) -> int:
        """Store here and on the live owners; return the durable copies once W owners have it."""
        placement = self._placement(chunk_hash)
        local_hint = next((hint for m, hint in placement if m.node_id == self._node_id), None)
        # Without any live owner in view (no ring yet) the local copy is the only one we can get.
        need = min(self._cfg.write_quorum, len(placement)) if placement else 1
        counted: dict[asyncio.Task[None], bool] = {}
        local = asyncio.create_task(self._store_local(chunk_hash, data, "client", local_hint or ""))
        counted[local] = local_hint is not None or not placement
        for member, hint_for in placement:
            if member.node_id != self._node_id:
                task = asyncio.create_task(self._replicate_to(member, chunk_hash, data, hint_for))
                counted[task] = True
        # Replicas lagging behind: wait for every copy rather than pile up work (backpressure).
        wait_all = len(self._background) >= MAX_BACKGROUND

        acked = copies = 0
        failures: list[str] = []
        pending = set(counted)
        try:
            while pending and (acked < need or wait_all):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.cancelled() or task.exception() is not None:
                        failures.append(
                            str(task.exception() if not task.cancelled() else "cancelled")
                        )
                        continue
                    copies += 1
                    acked += counted[task]
        finally:
            # Copies still on their way finish in the background (also when the caller left).
            for task in pending:
                self._spawn(task, f"replica of {_hex(chunk_hash)}")
        if acked < need:
            raise Unavailable(
                f"chunk {_hex(chunk_hash)} is durable on {acked} of {need} replicas needed: {'; '.join(failures)}"
            )
        return copies

    async def _store_local(
        self, chunk_hash: bytes, data: bytes, source: str, hint_for: str = ""
    ) -> None:
        await self._store.put(chunk_hash, data, hint_for=hint_for)
        self._metrics.puts.labels(source).inc()

    async def _replicate_to(
        self, member: Member, chunk_hash: bytes, data: bytes, hint_for: str = ""
    ) -> None:
        request = block_pb2.ReplicateRequest(hash=chunk_hash, data=data, hint_for=hint_for)
        try:
            await self._peers.stub(member).Replicate(
                iter([request]), metadata=self._peers.metadata, timeout=PEER_TIMEOUT
            )
        except grpc.aio.AioRpcError as e:
            self._metrics.replication_failures.inc()
            raise Unavailable(f"replica {member.node_id}: {e.code().name} {e.details()}") from None
        self._metrics.bytes_out.labels("replica").inc(len(data))

    async def Replicate(
        self,
        request_iterator: AsyncIterator[block_pb2.ReplicateRequest],
        context: grpc.aio.ServicerContext,
    ) -> block_pb2.ReplicateResponse:
        """Node-only: store replicas (and hinted-handoff copies) sent by a peer."""
        stored = 0
        async for request in request_iterator:
            chunk_hash, data, hint_for = request.hash, request.data, request.hint_for
            if len(chunk_hash) != HASH_LEN or len(data) > MAX_CHUNK:
                raise InvalidArgument(
                    "replica has a bad hash length or is over the chunk size limit"
                )
            if hint_for and (len(hint_for) > 256 or "\x00" in hint_for):
                raise InvalidArgument("hint_for is not a node id")
            if not await asyncio.to_thread(verify, chunk_hash, data):
                raise InvalidArgument(f"chunk {chunk_hash.hex()} does not match its hash")
            self._metrics.bytes_in.labels("replica").inc(len(data))
            await self._store_local(chunk_hash, data, "hint" if hint_for else "replica", hint_for)
            stored += 1
        return block_pb2.ReplicateResponse(stored=stored)

    # -- reads ------------------------------------------------------------------------------
    def _check_ticket(
        self, ticket: common_pb2.ReadTicket, principal: Principal, hashes: Iterable[bytes]
    ) -> None:
        if ticket.user_id != principal.user_id:
            raise PermissionDenied("the read ticket was issued to another user")
        named = list(ticket.hashes)
        if not self._signer.check_ticket(
            ticket.user_id, named, ticket.expires_at, ticket.signature
        ):
            raise PermissionDenied(
                "the read ticket is invalid or expired: ask the metadata service again"
            )
        allowed = set(named)
        for h in hashes:
            if h not in allowed:
                raise PermissionDenied(f"chunk {_hex(h)} is not named by the read ticket")

    async def GetChunks(
        self, request: block_pb2.GetChunksRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[block_pb2.ChunkData]:
        """Stream chunks out, re-hashed as read; node callers need no ticket but get local copies only."""
        principal = current_principal()
        hashes = list(request.hashes) or list(request.ticket.hashes)
        _check_hashes(hashes)
        if not principal.is_node:
            self._check_ticket(request.ticket, principal, hashes)
        dest = "node" if principal.is_node else "client"
        reads: deque[tuple[bytes, asyncio.Task[bytes]]] = deque()
        todo = iter(hashes)
        try:
            while True:
                while len(reads) < GET_WINDOW and (h := next(todo, None)) is not None:
                    reads.append(
                        (h, asyncio.create_task(self._read(h, local_only=principal.is_node)))
                    )
                if not reads:
                    return
                chunk_hash, task = reads.popleft()
                data = await task
                self._metrics.bytes_out.labels(dest).inc(len(data))
                yield block_pb2.ChunkData(hash=chunk_hash, data=data)
        finally:
            for _, task in reads:
                task.cancel()

    async def _read(self, chunk_hash: bytes, *, local_only: bool) -> bytes:
        data, intact = await self._store.get_verified(chunk_hash)
        if intact:
            assert data is not None
            self._metrics.gets.labels("local").inc()
            return data
        corrupt = data is not None
        if corrupt:
            self._metrics.corrupt.inc()
            log.error("chunk %s is corrupt here; fetching a good replica", chunk_hash.hex())
        if local_only:
            raise NotFound(f"chunk {chunk_hash.hex()} is not held by this node")
        data = await self._fetch_from_peers(chunk_hash)
        self._metrics.gets.labels("peer").inc()
        if corrupt or self._is_owner(chunk_hash):
            self._spawn(self._repair(chunk_hash, data), f"repair of {_hex(chunk_hash)}")
        return data

    async def _repair(self, chunk_hash: bytes, data: bytes) -> None:
        await self._store_local(chunk_hash, data, "repair")
        self._metrics.repairs.inc()
        log.info("repaired chunk %s from a replica", chunk_hash.hex())

    async def _fetch_from_peers(self, chunk_hash: bytes) -> bytes:
        """A verified copy from the first live owner (then other live nodes) that has it."""
        ring = self.ring
        candidates = [
            ring.member(n)
            for n in ring.preference_list(chunk_position(chunk_hash))
            if n != self._node_id
        ]
        candidates = [m for m in candidates if m.up]
        errors: list[str] = []
        for member in candidates[: self._cfg.replicas + 2]:
            request = block_pb2.GetChunksRequest(hashes=[chunk_hash])
            try:
                call = self._peers.stub(member).GetChunks(
                    request, metadata=self._peers.metadata, timeout=PEER_TIMEOUT
                )
                async for reply in call:
                    data = reply.data
                    if reply.hash == chunk_hash and await asyncio.to_thread(
                        verify, chunk_hash, data
                    ):
                        self._metrics.bytes_in.labels("peer").inc(len(data))
                        return data
                    log.warning(
                        "replica %s sent a bad copy of %s", member.node_id, chunk_hash.hex()
                    )
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    errors.append(f"{member.node_id}: {e.code().name}")
        if errors:
            raise Unavailable(
                f"chunk {chunk_hash.hex()} is not here and replicas failed: {', '.join(errors)}"
            )
        raise NotFound(f"chunk {chunk_hash.hex()} not found on any replica")

    # -- node calls -------------------------------------------------------------------------
    async def HasChunks(
        self, request: block_pb2.HasChunksRequest, context: grpc.aio.ServicerContext
    ) -> block_pb2.HasChunksResponse:
        """Node-only: which of these chunks this node holds."""
        hashes = list(request.hashes)
        _check_hashes(hashes)
        return block_pb2.HasChunksResponse(present=await self._store.contains_many(hashes))

    async def DeleteChunks(
        self, request: block_pb2.DeleteChunksRequest, context: grpc.aio.ServicerContext
    ) -> block_pb2.DeleteChunksResponse:
        """Node-only: remove chunks (garbage collection)."""
        hashes = list(request.hashes)
        _check_hashes(hashes)
        return block_pb2.DeleteChunksResponse(deleted=await self._store.delete_many(hashes))

    async def GetRing(
        self, request: block_pb2.GetRingRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.RingInfo:
        """The block ring as this node sees it in etcd."""
        view = self._view
        nodes = [
            common_pb2.NodeInfo(
                id=rec.node_id,
                kind="block",
                address=rec.address,
                zone=rec.zone,
                up=rec.node_id in view.alive,
                weight=rec.weight,
                metrics_address=rec.metrics_address,
            )
            for rec in sorted(view.nodes.values(), key=lambda r: r.node_id)
        ]
        return common_pb2.RingInfo(
            revision=view.revision,
            nodes=nodes,
            vnodes=self._cfg.vnodes or DEFAULT_VNODES,
            replicas=self._cfg.replicas,
            write_quorum=self._cfg.write_quorum,
        )

    async def RangeDigests(
        self, request: block_pb2.RangeDigestsRequest, context: grpc.aio.ServicerContext
    ) -> block_pb2.RangeDigestsResponse:
        """Not served yet (anti-entropy comes with the replicator)."""
        raise Unimplemented("RangeDigests is not implemented yet")

    async def ListRange(
        self, request: block_pb2.ListRangeRequest, context: grpc.aio.ServicerContext
    ) -> block_pb2.ListRangeResponse:
        """Not served yet (anti-entropy comes with the replicator)."""
        raise Unimplemented("ListRange is not implemented yet")

    async def GetSignature(
        self, request: block_pb2.GetSignatureRequest, context: grpc.aio.ServicerContext
    ) -> block_pb2.ChunkSignature:
        """Not served yet (delta transfer)."""
        raise Unimplemented("GetSignature is not implemented yet")


def add_to_server(service: BlockService, server: grpc.aio.Server) -> None:
    """Register the Block service on a server."""
    block_pb2_grpc.add_BlockServicer_to_server(service, server)
