"""A client that walks away from a stream leaves no error in the node's log.

The server is made to sit in the middle of sending (the client reads nothing of a large
``GetChunks`` answer, so flow control holds the write) when the client cancels: the stream's
generator is then closed later, from another context, which used to log a ``ContextVar ...
was created in a different Context`` error from the auth interceptor.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from client import Client
from tessera.pb import block_pb2, block_pb2_grpc, meta_pb2, sync_pb2, sync_pb2_grpc
from tessera.rpc import auth_metadata, open_channel
from tests.integration.helpers import new_user, random_file

pytestmark = pytest.mark.cluster


def _log_size(cluster, name: str) -> int:  # type: ignore[no-untyped-def]
    return (cluster.logs_dir / f"{name}.log").stat().st_size


def _new_log(cluster, name: str, offset: int) -> str:  # type: ignore[no-untyped-def]
    with (cluster.logs_dir / f"{name}.log").open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


async def test_cancelled_streams_log_no_error(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    md = auth_metadata(token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        await c.put_file(random_file(tmp_path / "big.bin", 12 * 1024 * 1024), "big.bin")
        got = await c._meta.GetFile(meta_pb2.GetFileRequest(path="big.bin"), metadata=md)
        sync_address = await c._sync_address()
    names = [f"block-{i}" for i in range(len(cluster.block_addresses))] + ["sync-0"]
    offsets = {n: _log_size(cluster, n) for n in names}

    for _ in range(3):
        async with open_channel(cluster.block_addresses[0], max_message_bytes=64 << 20) as ch:
            call = block_pb2_grpc.BlockStub(ch).GetChunks(
                block_pb2.GetChunksRequest(ticket=got.ticket, hashes=list(got.ticket.hashes)),
                metadata=md,
            )
            await asyncio.sleep(0.5)  # the node is writing, the client reads nothing
            call.cancel()
        async with open_channel(sync_address) as ch:
            stream = sync_pb2_grpc.SyncStub(ch).Subscribe(sync_pb2.SubscribeRequest(), metadata=md)
            await asyncio.wait_for(stream.read(), 20)
            stream.cancel()
    await asyncio.sleep(1.0)  # closing abandoned generators happens on the node's loop

    for name in names:
        text = _new_log(cluster, name, offsets[name])
        # (grpc itself logs ExecuteBatchError for a write the client cancelled: not ours.)
        for bad in ("different Context", "was never retrieved", "tessera/"):
            assert bad not in text, f"{name}:\n{text}"
