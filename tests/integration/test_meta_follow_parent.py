"""A commit or mkdir that names its parent folder by id follows that folder when it was moved
meanwhile (issue 9, failure 6: a move and a concurrent add converge), on the real cluster."""

from __future__ import annotations

import grpc
import pytest

from client import Client
from tessera.pb import common_pb2, meta_pb2, meta_pb2_grpc
from tests.integration.helpers import new_user
from tests.integration.meta_util import md

pytestmark = pytest.mark.cluster


async def test_commit_and_mkdir_follow_a_moved_parent_folder(cluster) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with (
        await Client.connect(cluster.meta_address, token=token) as c,
        grpc.aio.insecure_channel(cluster.meta_address) as ch,
    ):
        stub = meta_pb2_grpc.MetadataStub(ch)
        folder = await c.make_folder("a/sub")
        await c.move("a/sub", "b/renamed")

        def commit(path: str, parent: str) -> meta_pb2.CommitRequest:
            return meta_pb2.CommitRequest(
                path=path, blocklist=common_pb2.Blocklist(), parent_folder_id=parent
            )

        one = await stub.Commit(commit("a/sub/new.txt", folder.file_id), metadata=md(token))
        assert one.entry.path == "b/renamed/new.txt"
        batch = await stub.CommitBatch(
            meta_pb2.CommitBatchRequest(commits=[commit("a/sub/x.txt", folder.file_id)]),
            metadata=md(token),
        )
        assert batch.results[0].entry.path == "b/renamed/x.txt"
        made = await stub.MakeFolder(
            meta_pb2.MakeFolderRequest(path="a/sub/inner", parent_folder_id=folder.file_id),
            metadata=md(token),
        )
        assert made.entry.path == "b/renamed/inner"
        # Without the id, the path is taken as it is (a new a/sub comes to be).
        plain = await stub.Commit(commit("a/sub/plain.txt", ""), metadata=md(token))
        assert plain.entry.path == "a/sub/plain.txt"
        # A deleted parent folder is not followed: the add recreates the path it named.
        await c.delete("b/renamed")
        back = await stub.Commit(commit("b/renamed/late.txt", folder.file_id), metadata=md(token))
        assert back.entry.path == "b/renamed/late.txt"
        # A bad id is a precise INVALID_ARGUMENT.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Commit(commit("z.txt", "not-an-id"), metadata=md(token))
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "parent folder" in (info.value.details() or "")
