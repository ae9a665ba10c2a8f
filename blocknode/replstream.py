"""Replica copies of clients' puts over one long-lived ``ReplicateStream`` per peer.

A ``Replicate`` call per chunk costs a stream set-up, a round of HTTP/2 headers and a task on
both sides. Here the primary keeps one bidirectional stream open per peer: each copy is a
request with a sequence number, and the peer answers each with a ``ReplicateAck`` once it is
durable. Copies of many upload streams share it; gRPC's flow control paces it.

A stream that fails (peer gone, connection reset, an ack overdue) fails every copy still waiting
on it and is replaced on the next copy. A peer that does not know ``ReplicateStream`` (an older
node during a rolling upgrade) is sent ``Replicate`` calls instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from tessera.errors import Unavailable
from tessera.pb import block_pb2, block_pb2_grpc

log = logging.getLogger(__name__)


class StreamBroken(Unavailable):
    """The replication stream to a peer failed before this copy was acknowledged."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        super().__init__(message)
        self.status = code


class ReplicaStream:
    """One open ``ReplicateStream`` call to a peer.

    Args:
        stub: The peer's stub.
        metadata: This node's credentials.
        address: The peer address it was opened to (a changed address means a new stream).
    """

    def __init__(
        self, stub: block_pb2_grpc.BlockStub, metadata: tuple[tuple[str, str], ...], address: str
    ) -> None:
        self.address = address
        self.broken: StreamBroken | None = None
        self._outbox: asyncio.Queue[block_pb2.ReplicateRequest | None] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._seq = 0
        self._call = stub.ReplicateStream(self._requests(), metadata=metadata)
        self._reader = asyncio.create_task(self._read(), name=f"replicate-stream-{address}")

    async def _requests(self) -> AsyncIterator[block_pb2.ReplicateRequest]:
        while (request := await self._outbox.get()) is not None:
            yield request

    async def _read(self) -> None:
        error = StreamBroken("the replication stream ended")
        try:
            async for ack in self._call:
                future = self._pending.pop(ack.seq, None)
                if future is None or future.done():
                    continue
                if ack.ok:
                    future.set_result(None)
                else:
                    future.set_exception(StreamBroken(ack.error or "not stored"))
        except grpc.aio.AioRpcError as e:
            error = StreamBroken(f"{e.code().name} {e.details()}", e.code())
        except asyncio.CancelledError:
            error = StreamBroken("the replication stream was closed")
        finally:
            self._fail(error)

    def _fail(self, error: StreamBroken) -> None:
        if self.broken is None:
            self.broken = error
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self.broken)
        self._pending.clear()

    async def send(self, chunk_hash: bytes, data: bytes, hint_for: str, timeout: float) -> None:
        """Send one copy and wait until the peer has it durably.

        Raises:
            StreamBroken: The peer refused it, the stream failed, or no ack came in ``timeout``
                (the stream is then given up: the peer may be stuck).
        """
        if self.broken is not None:
            raise self.broken
        self._seq += 1
        seq = self._seq
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        self._outbox.put_nowait(
            block_pb2.ReplicateRequest(hash=chunk_hash, data=data, hint_for=hint_for, seq=seq)
        )
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self._pending.pop(seq, None)
            self.close(StreamBroken(f"no acknowledgement in {timeout:.0f} s"))
            raise self.broken from None  # type: ignore[misc]

    def close(self, reason: StreamBroken | None = None) -> None:
        """End the stream; copies still waiting fail."""
        self._fail(reason or StreamBroken("the replication stream was closed"))
        self._outbox.put_nowait(None)
        self._call.cancel()
        self._reader.cancel()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
