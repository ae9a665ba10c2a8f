"""The incoming half of replication: ``Replicate`` and ``ReplicateStream`` (node-only).

A mixin of ``BlockService``: both store what a peer sends through the service's
``_store_local`` (group-committed, durable before the answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from blocknode.gcguard import RecentDeletes
from blocknode.metrics import BlockMetrics
from blocknode.store import HASH_LEN, verify
from tessera.chunking import MAX_CHUNK
from tessera.errors import InvalidArgument
from tessera.pb import block_pb2

REPLICATE_WINDOW = 8  # chunks of one Replicate stream being stored at once


class ReplicaRpcs:
    """``Replicate`` (background and legacy copies) and ``ReplicateStream`` (put replicas)."""

    metrics: BlockMetrics
    _recent_deletes: RecentDeletes

    async def _store_local(
        self, chunk_hash: bytes, data: bytes, source: str, hint_for: str = ""
    ) -> None:
        raise NotImplementedError

    async def Replicate(
        self,
        request_iterator: AsyncIterator[block_pb2.ReplicateRequest],
        context: grpc.aio.ServicerContext,
    ) -> block_pb2.ReplicateResponse:
        """Node-only: store replicas, hinted-handoff copies and background copies from a peer.

        Up to ``REPLICATE_WINDOW`` chunks of the stream are stored at once (one group commit);
        the answer comes when every one is durable.
        """
        stored = 0
        refused: list[bytes] = []
        window = asyncio.Semaphore(REPLICATE_WINDOW)
        writes: list[asyncio.Task[None]] = []

        async def store(chunk_hash: bytes, data: bytes, source: str, hint_for: str) -> None:
            try:
                await self._store_local(chunk_hash, data, source, hint_for)
            finally:
                window.release()

        try:
            async for request in request_iterator:
                chunk_hash, data, hint_for = request.hash, request.data, request.hint_for
                if len(chunk_hash) != HASH_LEN or len(data) > MAX_CHUNK:
                    raise InvalidArgument("a replica needs a 32-byte hash and at most 4 MiB")
                if hint_for and (len(hint_for.encode()) > 255 or "\x00" in hint_for):
                    raise InvalidArgument("hint_for is not a node id")
                if not await asyncio.to_thread(verify, chunk_hash, data):
                    raise InvalidArgument(f"chunk {chunk_hash.hex()} does not match its hash")
                self.metrics.bytes_in.labels("replica").inc(len(data))
                if request.repair and chunk_hash in self._recent_deletes:
                    refused.append(chunk_hash)
                    continue
                if hint_for:
                    source = "hint"
                elif request.repair:
                    source = "repair"
                else:
                    source = "replica"
                await window.acquire()
                writes.append(asyncio.create_task(store(chunk_hash, data, source, hint_for)))
                stored += 1
            if writes:
                await asyncio.gather(*writes)
        finally:
            for task in writes:
                task.cancel()  # no-op for those done; the stream failed for the others
        return block_pb2.ReplicateResponse(stored=stored, refused=refused)

    async def ReplicateStream(
        self,
        request_iterator: AsyncIterator[block_pb2.ReplicateRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[block_pb2.ReplicateAck]:
        """Node-only: replica copies of clients' puts from a primary, each acked once durable.

        The bytes are not re-hashed: the primary (an authenticated node) verified them, and the
        scrubber re-hashes every stored copy later. Up to ``REPLICATE_WINDOW`` copies are stored
        at once; acks go out as copies become durable, in any order.
        """
        acks: asyncio.Queue[block_pb2.ReplicateAck | None] = asyncio.Queue()
        window = asyncio.Semaphore(REPLICATE_WINDOW)
        writes: set[asyncio.Task[None]] = set()

        async def store(request: block_pb2.ReplicateRequest) -> None:
            try:
                source = "hint" if request.hint_for else "replica"
                self.metrics.bytes_in.labels("replica").inc(len(request.data))
                await self._store_local(request.hash, request.data, source, request.hint_for)
                ack = block_pb2.ReplicateAck(seq=request.seq, ok=True)
            except Exception as e:
                ack = block_pb2.ReplicateAck(seq=request.seq, ok=False, error=str(e))
            finally:
                window.release()
            acks.put_nowait(ack)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    hint_for = request.hint_for
                    if len(request.hash) != HASH_LEN or len(request.data) > MAX_CHUNK:
                        error = "a replica needs a 32-byte hash and at most 4 MiB"
                    elif hint_for and (len(hint_for.encode()) > 255 or "\x00" in hint_for):
                        error = "hint_for is not a node id"
                    else:
                        await window.acquire()
                        task = asyncio.create_task(store(request))
                        writes.add(task)
                        task.add_done_callback(writes.discard)
                        continue
                    acks.put_nowait(block_pb2.ReplicateAck(seq=request.seq, error=error))
                while writes:
                    await asyncio.wait(set(writes))
            finally:
                acks.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (ack := await acks.get()) is not None:
                yield ack
            await reader  # surfaces a broken request stream
        finally:
            reader.cancel()  # copies being stored finish: a write is never torn off midway
