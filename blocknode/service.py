"""The Block gRPC service: chunk puts with replication, ticketed reads with repair, node calls.

A put is handled by whichever node the client chose as primary. The chunk's replica set is
``ring.live_owners(chunk_position(hash), replicas)``; the primary always keeps a copy (a client
with a stale ring may pick a non-owner), forwards to the other live owners with the node-only
``Replicate`` call (a stand-in for a down owner gets a hint naming it), and acknowledges once
``min(write_quorum, live owners)`` owner copies are durable. The remaining copies finish in the
background.

A read re-hashes every chunk; a chunk missing or corrupt here is fetched from another live
node (node callers read any chunk without a ticket, local copies only) and repaired.

Background copies (``Replicate`` with ``repair``) of a chunk deleted here by the garbage
collector in the last ten minutes are refused (``gcguard``), so that a stale copy on another
node (a hint, a copy awaiting rebalance) does not bring a collected chunk back.

This module and ``peers`` (the outgoing calls) are the block node's only users of the
generated protobuf code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

import grpc
from prometheus_client import CollectorRegistry

from blocknode.asyncstore import AsyncChunkStore, Copy
from blocknode.deltas import DeltaCalls
from blocknode.gcguard import RecentDeletes
from blocknode.metrics import BlockMetrics
from blocknode.peers import PeerClient, PeerError
from blocknode.placement import RingTracker
from blocknode.ranges import OwnerIndex, bucket_bounds, digests, placement_fingerprint
from blocknode.recount import node_figures
from blocknode.replica_rpcs import ReplicaRpcs
from blocknode.store import HASH_LEN, verify
from tessera.auth import Principal, Signer
from tessera.chunking import MAX_CHUNK
from tessera.config import BlockConfig
from tessera.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TesseraError,
    Unavailable,
)
from tessera.membership import DEFAULT_PARAMS, View
from tessera.pb import block_pb2, block_pb2_grpc, common_pb2
from tessera.ring import Member
from tessera.rpc import current_principal

__all__ = ["NODE_METHODS", "SERVICE_NAME", "BlockService", "add_to_server", "bucket_bounds"]

log = logging.getLogger(__name__)

SERVICE_NAME = "tessera.v1.Block"
NODE_METHODS = tuple(
    f"/{SERVICE_NAME}/{m}"
    for m in (
        "HasChunks",
        "Replicate",
        "ReplicateStream",
        "DeleteChunks",
        "RangeDigests",
        "ListRange",
        "NodeStatus",
    )
)
PUT_WINDOW = 8  # chunks of one PutChunks stream in flight at once
GET_WINDOW = 4  # chunks of one GetChunks stream read ahead
MAX_HASHES = 10_000  # hashes in one HasChunks / DeleteChunks / GetChunks call
MAX_BUCKETS = 65_536  # RangeDigests / ListRange
MAX_BACKGROUND = 256  # replica writes left running after acks; past this, puts wait for all
DRAIN_SECONDS = 2.0  # after a bad chunk, read the rest of the stream this long before failing
DRAIN_BYTES = 64 * 1024 * 1024  # ... or this many bytes


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


class BlockService(DeltaCalls, ReplicaRpcs, block_pb2_grpc.BlockServicer):
    """The Block servicer of one node.

    Args:
        cfg: The node's config (replicas, write quorum, receipt TTL, message limit, TLS).
        node_id: This node's id on the ring.
        store: The chunk store, already open.
        signer: Signs receipts and node tokens, checks read tickets.
        registry: Where the node's Prometheus metrics are registered.
    """

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
        self.peers = PeerClient(cfg, signer, node_id)
        cache = store.cache
        self.metrics = BlockMetrics(
            registry,
            chunk_count=store.store.count,
            hint_count=store.store.hint_count,
            cache_stats=lambda: (cache.hits, cache.misses, cache.size),
        )
        self.rings = RingTracker(
            node_id, DEFAULT_PARAMS.with_overrides(cfg.replicas, cfg.write_quorum, cfg.vnodes)
        )
        self._background: set[asyncio.Task[None]] = set()
        self._recent_deletes = RecentDeletes()
        self._index: OwnerIndex | None = None

    def update_view(self, view: View) -> None:
        """Adopt a newer membership view (the etcd watcher's callback)."""
        self.rings.update(view)

    def _owner_index(self) -> OwnerIndex:
        """Owners on the current ring (cached while membership stays the same)."""
        ring = self.rings.ring
        index = self._index
        if index is None or index.placement != placement_fingerprint(ring, self.rings.replicas):
            index = self._index = OwnerIndex(ring, self.rings.replicas)
        return index

    # -- background work --------------------------------------------------------------------
    def _spawn(self, aw: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(aw)
        task.set_name(name)
        self._background.add(task)
        self.metrics.replication_queue.inc()
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        self.metrics.replication_queue.dec()
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s failed: %s", task.get_name(), task.exception())

    async def close(self, grace: float = 5.0) -> None:
        """Give background copies ``grace`` seconds, then cancel them; close channels."""
        self.rings.close()
        if self._background:
            _, pending = await asyncio.wait(list(self._background), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self.peers.close()

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
        failed = asyncio.Event()

        async def read() -> None:
            drained = 0
            try:
                async for request in request_iterator:
                    if failed.is_set():
                        drained += len(request.data)
                        if drained > DRAIN_BYTES:
                            return
                        continue
                    started.put_nowait(asyncio.create_task(self._put_request(request, principal)))
                    await window.acquire()  # at most PUT_WINDOW chunks unanswered
            finally:
                started.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await started.get()) is not None:
                try:
                    result = await task
                except TesseraError:
                    # Read (and drop) what the client is still sending before the status goes
                    # out: grpcio's asyncio client reports a write that meets an ended call as
                    # INTERNAL, hiding our status (grpc/grpc#36066).
                    failed.set()
                    for _ in range(PUT_WINDOW):
                        window.release()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(reader), DRAIN_SECONDS)
                    raise
                window.release()
                yield result
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()
            while not started.empty():
                leftover = started.get_nowait()
                if leftover is not None:
                    leftover.cancel()
                    if leftover.done() and not leftover.cancelled():
                        leftover.exception()  # retrieved: no "never retrieved" warning

    async def _put_request(
        self, request: block_pb2.PutChunkRequest, principal: Principal
    ) -> block_pb2.PutChunkResult:
        chunk_hash = request.hash
        if len(chunk_hash) != HASH_LEN:
            raise InvalidArgument(f"a chunk hash is 32 bytes (SHA-256), got {len(chunk_hash)}")
        data, wire = await self._incoming_data(request, principal)  # whole, delta or zstd
        if len(data) > MAX_CHUNK:
            raise InvalidArgument(
                f"chunk {_hex(chunk_hash)} is {len(data)} bytes, over the {MAX_CHUNK} limit"
            )
        if not await asyncio.to_thread(verify, chunk_hash, data):
            raise InvalidArgument(f"chunk {chunk_hash.hex()} does not match its hash")
        self.metrics.bytes_in.labels("client").inc(wire)
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
        replicas = self.rings.placement(chunk_hash)
        local_hint = next((r.hint_for for r in replicas if r.member.node_id == self._node_id), None)
        # Without any live owner in view (no ring yet) the local copy is the only one we can get.
        need = min(self.rings.write_quorum, len(replicas)) if replicas else 1
        counted: dict[asyncio.Task[None], bool] = {}
        local = asyncio.create_task(self._store_local(chunk_hash, data, "client", local_hint or ""))
        counted[local] = local_hint is not None or not replicas
        for r in replicas:
            if r.member.node_id != self._node_id:
                task = asyncio.create_task(
                    self._replicate_to(r.member, chunk_hash, data, r.hint_for)
                )
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
                            str(task.exception()) if not task.cancelled() else "cancelled"
                        )
                        continue
                    copies += 1
                    acked += counted[task]
        finally:
            # Copies still on their way finish in the background (also when the caller left).
            for task in pending:
                self._spawn(task, f"copy of {_hex(chunk_hash)}")
        if acked < need:
            raise Unavailable(
                f"chunk {_hex(chunk_hash)} is durable on {acked} of the {need} replicas needed: "
                + "; ".join(failures)
            )
        return copies

    async def _store_local(
        self, chunk_hash: bytes, data: bytes, source: str, hint_for: str = ""
    ) -> None:
        if source != "repair":
            self._recent_deletes.forget(chunk_hash)  # a client stored it again
        await self._store.put(chunk_hash, data, hint_for=hint_for)
        self.metrics.puts.labels(source).inc()

    async def _replicate_to(
        self, member: Member, chunk_hash: bytes, data: bytes, hint_for: str = ""
    ) -> None:
        try:
            await self.peers.replicate(member, chunk_hash, data, hint_for)
        except PeerError as e:
            self.metrics.replication_failures.inc()
            raise Unavailable(f"replica {e}") from None
        self.metrics.bytes_out.labels("replica").inc(len(data))

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
        """Stream chunks out, re-hashed as read (all the ticket names when no hash is given).

        Node callers need no ticket but get this node's copies only (no fetch from peers).
        """
        principal = current_principal()
        hashes = list(request.hashes) or list(request.ticket.hashes)
        _check_hashes(hashes)
        if not principal.is_node:
            self._check_ticket(request.ticket, principal, hashes)
        dest = "node" if principal.is_node else "client"
        bases = self._delta_bases(request)
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
                out = await self._outgoing(
                    chunk_hash, data, bases.get(chunk_hash), request.accept_zstd
                )
                self.metrics.bytes_out.labels(dest).inc(out.ByteSize())
                yield out
        finally:
            for _, task in reads:
                task.cancel()

    async def _read(self, chunk_hash: bytes, *, local_only: bool) -> bytes:
        state, data = await self._store.read(chunk_hash)
        if state is Copy.OK:
            assert data is not None
            self.metrics.gets.labels("local").inc()
            return data
        corrupt = state is Copy.CORRUPT
        if corrupt:
            self.metrics.found_corrupt()
            log.error("chunk %s is corrupt here; fetching a good replica", chunk_hash.hex())
        if local_only:
            raise NotFound(f"chunk {chunk_hash.hex()} is not held by this node")
        data = await self._fetch_from_peers(chunk_hash)
        self.metrics.gets.labels("peer").inc()
        if corrupt or self.rings.is_owner(chunk_hash):
            self._spawn(self._repair(chunk_hash, data), f"repair of {_hex(chunk_hash)}")
        return data

    async def _repair(self, chunk_hash: bytes, data: bytes) -> None:
        await self._store_local(chunk_hash, data, "repair")
        self.metrics.repairs.inc()
        self.metrics.transfer_in("repair", len(data))
        log.info("repaired chunk %s from a replica", chunk_hash.hex())

    async def _fetch_from_peers(self, chunk_hash: bytes) -> bytes:
        """A verified copy from the first live node, in preference order, that has one."""
        errors: list[str] = []
        for member in self.rings.read_sources(chunk_hash, self.rings.replicas + 2):
            try:
                data = await self.peers.fetch(member, chunk_hash)
            except PeerError as e:
                errors.append(str(e))
                continue
            if data is not None:
                self.metrics.bytes_in.labels("peer").inc(len(data))
                return data
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
        self._recent_deletes.add(hashes)
        return block_pb2.DeleteChunksResponse(deleted=await self._store.delete_many(hashes))

    def _shared_filter(self, shared_with: str, placement: bytes) -> Callable[[bytes], bool]:
        """Keeps the chunks owned by both this node and ``shared_with`` (all when unset)."""
        if not shared_with:
            return lambda _h: True
        index = self._owner_index()
        if placement != index.placement:
            raise FailedPrecondition(
                "this node's ring differs from the caller's (membership changing): retry later"
            )
        me = self._node_id

        def keep(h: bytes) -> bool:
            owners = index.owners(h)
            return me in owners and shared_with in owners

        return keep

    async def RangeDigests(
        self, request: block_pb2.RangeDigestsRequest, context: grpc.aio.ServicerContext
    ) -> block_pb2.RangeDigestsResponse:
        """Node-only: per bucket of the ring's position space, SHA-256 of the sorted hashes held
        there (empty bytes for an empty bucket); only those shared with ``shared_with`` when
        it is set."""
        buckets = request.buckets
        if not 1 <= buckets <= MAX_BUCKETS:
            raise InvalidArgument(f"buckets must be 1..{MAX_BUCKETS}, got {buckets}")
        await self.rings.sync()
        keep = self._shared_filter(request.shared_with, request.placement)
        store = self._store.store

        def compute() -> list[bytes]:
            return digests(filter(keep, store.scan()), buckets)

        return block_pb2.RangeDigestsResponse(digests=await asyncio.to_thread(compute))

    async def ListRange(
        self, request: block_pb2.ListRangeRequest, context: grpc.aio.ServicerContext
    ) -> block_pb2.ListRangeResponse:
        """Node-only: the hashes this node holds in one bucket (as in RangeDigests), sorted."""
        if not 1 <= request.buckets <= MAX_BUCKETS or request.bucket >= request.buckets:
            raise InvalidArgument(f"need 1 <= buckets <= {MAX_BUCKETS} and bucket < buckets")
        start, end = bucket_bounds(request.buckets, request.bucket)
        limit = (self._cfg.max_message_bytes - 1024) // (HASH_LEN + 2)
        await self.rings.sync()
        keep = self._shared_filter(request.shared_with, request.placement)
        hashes = await self._store.run_read(
            lambda: [h for h in self._store.store.scan(start, end) if keep(h)]
        )
        if len(hashes) > limit:
            raise ResourceExhausted(f"{len(hashes)} hashes in this bucket: ask with more buckets")
        return block_pb2.ListRangeResponse(hashes=hashes)

    async def GetRing(
        self, request: block_pb2.GetRingRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.RingInfo:
        """The block ring as this node sees it in etcd."""
        view = self.rings.view
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
            vnodes=self.rings.vnodes,
            replicas=self.rings.replicas,
            write_quorum=self.rings.write_quorum,
        )

    async def NodeStatus(
        self, request: block_pb2.NodeStatusRequest, context: grpc.aio.ServicerContext
    ) -> block_pb2.NodeStatusResponse:
        """Node-only: this node's replication figures (see block.proto)."""
        store = self._store.store
        counts = await self._store.run_read(lambda: (store.count(), store.hint_count()))
        under, last_pass_at = self.metrics.under_replicated, self.metrics.last_pass_at
        moved = self.metrics.transferred
        extra = await node_figures(self, request)
        return block_pb2.NodeStatusResponse(
            **extra,
            node_id=self._node_id,
            chunks=counts[0],
            handoff_backlog=counts[1],
            replication_queue=len(self._background),
            under_replicated=under,
            last_pass_at=int(last_pass_at),
            repair_bytes=moved["repair"],
            rebalance_bytes=moved["rebalance"],
            handoff_bytes=moved["handoff"],
            ring_revision=self.rings.ring.revision,
            scrubbed_chunks=self.metrics.scrubbed,
            corrupt_chunks=self.metrics.corrupt_seen,
        )


def add_to_server(service: BlockService, server: grpc.aio.Server) -> None:
    """Register the Block service on a server."""
    block_pb2_grpc.add_BlockServicer_to_server(service, server)
