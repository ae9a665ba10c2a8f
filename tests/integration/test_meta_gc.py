"""Garbage collection on the real cluster: referenced chunks survive, unreferenced ones go after
the grace period, an upload not yet committed survives it, and nothing committed breaks."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
import pytest

from client import Client, InvalidRequestError
from tessera.auth import Signer
from tessera.chunking import Chunk, chunk_hash
from tessera.errors import error_detail
from tessera.pb import block_pb2, block_pb2_grpc, common_pb2, errors_pb2, meta_pb2
from tests.integration.helpers import new_user
from tests.integration.meta_util import error_of, get_bytes, md, put_bytes, status_of

pytestmark = pytest.mark.cluster

GRACE = 3


async def _holders(cluster, h: bytes) -> int:  # type: ignore[no-untyped-def]
    """How many block nodes hold the chunk."""
    token = Signer(cluster.secret).node_token("gc-test")
    n = 0
    for address in cluster.block_addresses:
        async with grpc.aio.insecure_channel(address) as ch:
            resp = await block_pb2_grpc.BlockStub(ch).HasChunks(
                block_pb2.HasChunksRequest(hashes=[h]), metadata=md(token)
            )
            n += resp.present[0]
    return n


def _blob(tag: bytes) -> bytes:
    return tag + os.urandom(100_000)  # below the minimum chunk size: one chunk


async def _upload_only(c: Client, data: bytes) -> tuple[Chunk, common_pb2.Receipt]:
    """What a client does before its commit: ask, then upload."""
    chunk = Chunk(0, chunk_hash(data), data)
    assert await c.need_chunks([chunk.hash]) == {chunk.hash}
    (receipt,) = await (await c._block_pool()).put([chunk])
    return chunk, receipt


async def _commit(
    c: Client, path: str, chunk: Chunk, receipt: common_pb2.Receipt
) -> meta_pb2.CommitResponse:
    req = meta_pb2.CommitRequest(
        path=path,
        blocklist=common_pb2.Blocklist(
            chunks=[common_pb2.ChunkRef(hash=chunk.hash, size=chunk.size)]
        ),
        receipts=[receipt],
    )
    return await c._meta.Commit(req, metadata=c._md, timeout=30)


async def test_gc_keeps_referenced_and_in_flight_chunks_and_deletes_garbage(
    cluster, tmp_path: Path
) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with (
        await Client.connect(cluster.meta_address, token=token) as c,
        await Client.connect(cluster.meta_address, token=cluster.admin_token) as admin,
    ):
        keep, old, new, gone = _blob(b"keep"), _blob(b"old"), _blob(b"new"), _blob(b"gone")
        await put_bytes(c, tmp_path, "keep.bin", keep)
        v_old = await put_bytes(c, tmp_path, "drop.bin", old)
        await put_bytes(
            c, tmp_path, "drop.bin", new
        )  # the old version is referenced only by an old revision
        await put_bytes(c, tmp_path, "gone.bin", gone)
        await c.delete("gone.bin")
        stale_chunk, stale_receipt = await _upload_only(
            c, _blob(b"stale")
        )  # uploaded long before its commit
        h = {
            name: chunk_hash(data)
            for name, data in (("keep", keep), ("old", old), ("new", new), ("gone", gone))
        }
        for x in h.values():
            assert await _holders(cluster, x) >= 2

        # Retention 0 for this user's namespace: old revisions go, their chunks become candidates,
        # but nothing is deleted inside the grace period.
        first = await admin.run_gc(
            retention_seconds=0, grace_seconds=GRACE, namespace_id=c.root_namespace_id
        )
        assert first.revisions_pruned == 2  # drop.bin's first version and gone.bin's content
        for x in (*h.values(), stale_chunk.hash):
            assert await _holders(cluster, x) >= 2
        await asyncio.sleep(GRACE * 2 / 3)
        fresh_chunk, fresh_receipt = await _upload_only(c, _blob(b"fresh"))  # an upload in flight
        await asyncio.sleep(GRACE * 2 / 3)

        second = await admin.run_gc(grace_seconds=GRACE)
        assert second.chunks_deleted >= 3 and second.chunks_failed == 0
        assert await _holders(cluster, h["old"]) == 0
        assert await _holders(cluster, h["gone"]) == 0
        assert (
            await _holders(cluster, stale_chunk.hash) == 0
        )  # an upload never committed, past grace
        assert await _holders(cluster, h["keep"]) >= 2
        assert await _holders(cluster, h["new"]) >= 2
        assert await _holders(cluster, fresh_chunk.hash) >= 2  # inside its grace period

        # Committed files are intact; the pruned revision is gone from history.
        assert await get_bytes(c, tmp_path, "keep.bin") == keep
        assert await get_bytes(c, tmp_path, "drop.bin") == new
        assert len(await c.history("drop.bin")) == 1
        assert (
            await status_of(c.get_file("drop.bin", tmp_path / "x", revision=v_old.entry.revision))
            is grpc.StatusCode.NOT_FOUND
        )

        # The in-flight upload commits fine; the stale one is refused with a clear error.
        await _commit(c, "fresh.bin", fresh_chunk, fresh_receipt)
        assert await get_bytes(c, tmp_path, "fresh.bin") == fresh_chunk.data
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _commit(c, "stale.bin", stale_chunk, stale_receipt)
        assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "garbage-collected" in (info.value.details() or "")
        trailers = dict(info.value.trailing_metadata() or ())
        assert trailers["tessera-reupload"] == stale_chunk.hash.hex()
        reupload = error_detail(info.value, errors_pb2.ReuploadChunks)
        assert reupload is not None and list(reupload.hashes) == [stale_chunk.hash]
        assert await status_of(c.stat("stale.bin")) is grpc.StatusCode.NOT_FOUND

        # Content that was collected can be uploaded and committed again (by a client that
        # does not hold a receipt of its earlier upload: the SDK keeps those for a while).
        async with await Client.connect(cluster.meta_address, token=token) as fresh:
            again = await put_bytes(fresh, tmp_path, "old-again.bin", old)
            assert again.stats.chunks_sent == 1
            assert await get_bytes(fresh, tmp_path, "old-again.bin") == old
        # This client still holds the receipt of its own earlier upload of gone.bin's bytes: the
        # metanode asks it to upload them again, and put_file does so by itself.
        back = await put_bytes(c, tmp_path, "gone-again.bin", gone)
        assert back.stats.chunks_sent == 1
        assert await get_bytes(c, tmp_path, "gone-again.bin") == gone
        assert await _holders(cluster, h["gone"]) >= 2
        third = await admin.run_gc(grace_seconds=0)
        assert (
            await _holders(cluster, h["old"]) >= 2
            and await _holders(cluster, fresh_chunk.hash) >= 2
        )
        assert third.chunks_failed == 0


async def test_only_admins_run_gc_and_bad_overrides_are_refused(cluster) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with (
        await Client.connect(cluster.meta_address, token=token) as c,
        await Client.connect(cluster.meta_address, token=cluster.admin_token) as admin,
    ):
        assert await status_of(c.run_gc()) is grpc.StatusCode.PERMISSION_DENIED
        err = await error_of(admin.run_gc(grace_seconds=-1))
        assert isinstance(err, InvalidRequestError)
