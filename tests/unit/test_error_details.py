"""Typed error details on the wire: a real gRPC server with the ErrorInterceptor, a real channel.

What clients act on (ring moves, chunks to upload again, revision conflicts) travels as
``tessera/v1/errors.proto`` messages in the call's ``google.rpc.Status``, and the SDK reads them
from there, whatever the status message says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from client._errors import ConflictError, from_rpc_error
from tessera.errors import Conflict, FailedPrecondition, NotFound, TesseraError, error_detail
from tessera.pb import errors_pb2
from tessera.rpc import ErrorInterceptor

METHOD = "/tests.Errors/Fail"


async def _failing_call(error: TesseraError, *, streaming: bool = False) -> grpc.aio.AioRpcError:
    """Serve one method that raises ``error``, call it, and return what the caller got."""

    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise error

    async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"first"
        raise error

    handler = (
        grpc.unary_stream_rpc_method_handler(stream)
        if streaming
        else grpc.unary_unary_rpc_method_handler(unary)
    )
    server = grpc.aio.server(interceptors=[ErrorInterceptor()])
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("tests.Errors", {"Fail": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                if streaming:
                    call = channel.unary_stream(METHOD)(b"", timeout=10)
                    assert [m async for m in call] == [b"first"]
                else:
                    await channel.unary_unary(METHOD)(b"", timeout=10)
            return info.value
    finally:
        await server.stop(None)


async def test_ring_moved_ends_a_stream_as_a_typed_detail() -> None:
    e = await _failing_call(
        FailedPrecondition("anything at all", details=(errors_pb2.RingMoved(ring="sync"),)),
        streaming=True,
    )
    assert e.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert error_detail(e, errors_pb2.RingMoved) == errors_pb2.RingMoved(ring="sync")
    assert error_detail(e, errors_pb2.ReuploadChunks) is None


async def test_reupload_hashes_travel_as_bytes() -> None:
    hashes = [bytes(range(32)), bytes(32)]
    e = await _failing_call(
        FailedPrecondition("garbage-collected", details=(errors_pb2.ReuploadChunks(hashes=hashes),))
    )
    detail = error_detail(e, errors_pb2.ReuploadChunks)
    assert detail is not None and list(detail.hashes) == hashes


async def test_conflict_carries_the_head_revision_to_the_sdk_error() -> None:
    e = await _failing_call(Conflict("not the head", head_revision="rev-7"))
    assert e.code() is grpc.StatusCode.ABORTED
    error = from_rpc_error(e)
    assert isinstance(error, ConflictError) and error.head_revision == "rev-7"


async def test_plain_errors_have_no_details() -> None:
    e = await _failing_call(NotFound("x: no such file or folder"))
    assert e.details() == "x: no such file or folder"
    assert error_detail(e, errors_pb2.RingMoved) is None
