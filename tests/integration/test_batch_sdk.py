"""The SDK's pipelines on the real cluster: a pipelined put_file, GetFiles and get_files."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from client import Client, NotFoundError, PermissionDeniedError, SyncError
from client._batch import RemoteFile
from tessera.pb import meta_pb2, meta_pb2_grpc
from tessera.rpc import auth_metadata
from tests.integration.helpers import new_user, random_file, same_bytes

pytestmark = pytest.mark.cluster

MiB = 1024 * 1024


async def test_pipelined_put_file_keeps_order_and_dedups(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        # Many batches (one every 16 chunks): the blocklist stays in file order while up to
        # three batches are in flight.
        src = random_file(tmp_path / "data.bin", 40 * MiB)
        first = await c.put_file(src, "pipe/data.bin")
        assert first.stats.chunks > 16 and first.stats.chunks_sent == first.stats.chunks
        out = tmp_path / "out.bin"
        await c.get_file("pipe/data.bin", out)
        assert same_bytes(src, out)
        again = await c.put_file(src, "pipe/copy.bin")  # every chunk already stored
        assert again.stats.chunks_sent == 0
        assert again.entry.content_hash == first.entry.content_hash


async def test_get_files_downloads_many_with_per_file_errors(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        sources = {}
        for i in range(30):
            p = tmp_path / "src" / f"f{i}.bin"
            p.parent.mkdir(exist_ok=True)
            data = os.urandom(8192) if i % 10 else b""  # empty files too
            p.write_bytes(data)
            sources[f"many/d{i % 3}/f{i}.bin"] = p
        sources["many/dup.bin"] = sources["many/d1/f1.bin"]  # the same chunk in two files
        big = random_file(tmp_path / "big.bin", 3 * MiB)
        sources["many/big.bin"] = big
        for remote, p in sources.items():
            await c.put_file(p, remote)
        await c.make_folder("many/folder")

        files, ticket = await c.file_versions(["many/d1/f1.bin", "missing.bin", "many/folder"])
        assert isinstance(files[0], RemoteFile) and files[0].size == 8192
        assert isinstance(files[1], NotFoundError)
        assert isinstance(files[2], SyncError) and "folder" in str(files[2])
        assert list(ticket.hashes) == [h for h, _ in files[0].chunks]

        out = tmp_path / "out"
        items = [(r, out / r) for r in sources] + [("many/nope.bin", out / "nope.bin")]
        got = await c.get_files(items)
        assert isinstance(got[-1], NotFoundError)
        assert not (out / "nope.bin").exists()
        for (remote, local), entry in zip(items[:-1], got, strict=False):
            assert not isinstance(entry, SyncError), entry
            assert entry.path == remote
            assert same_bytes(sources[remote], local)
        assert not list(out.rglob(".tessera-*"))  # no temporary left behind

    _, other = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=other) as c:
        [denied], _ = await c.file_versions(["many/d1/f1.bin"])  # another user's path: not theirs
        assert isinstance(denied, (NotFoundError, PermissionDeniedError))


async def test_get_files_refuses_too_many(cluster) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with grpc.aio.insecure_channel(cluster.meta_address) as ch:
        stub = meta_pb2_grpc.MetadataStub(ch)
        req = meta_pb2.GetFilesRequest(
            files=[meta_pb2.GetFileRequest(path=f"f{i}") for i in range(1001)]
        )
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.GetFiles(req, metadata=auth_metadata(token))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 1000 files" in (e.value.details() or "")
