"""Bad input to the metadata service: each a precise status, and nothing changes."""

from __future__ import annotations

import os
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from client import Client, ConflictError, Cursor
from tessera.auth import Signer
from tessera.chunking import Chunk, chunk_hash
from tessera.pb import block_pb2, block_pb2_grpc, common_pb2, meta_pb2, meta_pb2_grpc
from tests.integration.helpers import new_user
from tests.integration.meta_util import error_of, md, put_bytes, status_of

pytestmark = pytest.mark.cluster

BAD_PATHS = {
    "dot-dot": "a/../b",
    "dot": "a/./b",
    "nul": "a/b\x00c",
    "empty segment": "a//b",
    "over-long segment": "a/" + "x" * 256,
    "over-long in UTF-8": "é" * 128,
    "windows device": "docs/CON.txt",
    "windows device, other case": "docs/lpt1",
    "windows forbidden char": "a:b",
    "trailing dot": "name.",
    "trailing space": "name ",
    "backslash": "a\\b",
    "control char": "a\x07b",
}


async def _state(c: Client) -> tuple[int, list[str]]:
    _, cursor, _, _ = await c.list_changes(Cursor(c.root_namespace_id, 0))
    return cursor.seq, [e.name for e in await c.list("")]


def _calls(
    stub: meta_pb2_grpc.MetadataStub, token: str, bad: str, good: str, rev: str
) -> list[Callable[[], Awaitable[Any]]]:
    m = md(token)
    return [
        lambda: stub.Commit(
            meta_pb2.CommitRequest(path=bad, blocklist=common_pb2.Blocklist()), metadata=m
        ),
        lambda: stub.CommitBatch(
            meta_pb2.CommitBatchRequest(commits=[meta_pb2.CommitRequest(path=bad)]), metadata=m
        ),
        lambda: stub.MakeFolder(meta_pb2.MakeFolderRequest(path=bad), metadata=m),
        lambda: stub.Stat(meta_pb2.StatRequest(path=bad), metadata=m),
        lambda: stub.List(meta_pb2.ListRequest(path=bad), metadata=m),
        lambda: stub.GetFile(meta_pb2.GetFileRequest(path=bad), metadata=m),
        lambda: stub.History(meta_pb2.HistoryRequest(path=bad), metadata=m),
        lambda: stub.Delete(meta_pb2.DeleteRequest(path=bad), metadata=m),
        lambda: stub.Move(meta_pb2.MoveRequest(from_path=good, to_path=bad), metadata=m),
        lambda: stub.Move(meta_pb2.MoveRequest(from_path=bad, to_path="elsewhere"), metadata=m),
        lambda: stub.Restore(meta_pb2.RestoreRequest(path=bad, revision_id=rev), metadata=m),
        lambda: stub.Share(
            meta_pb2.ShareRequest(path=bad, user_name="someone", role=meta_pb2.ROLE_EDITOR),
            metadata=m,
        ),
        lambda: stub.Unshare(meta_pb2.UnshareRequest(path=bad, user_name="someone"), metadata=m),
        lambda: stub.ListMembers(meta_pb2.ListMembersRequest(path=bad), metadata=m),
    ]


async def test_bad_paths_are_invalid_argument_everywhere_and_change_nothing(
    cluster, tmp_path: Path
) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with (
        await Client.connect(cluster.meta_address, token=token) as c,
        grpc.aio.insecure_channel(cluster.meta_address) as ch,
    ):
        v = await put_bytes(c, tmp_path, "good.txt", b"ok")
        stub = meta_pb2_grpc.MetadataStub(ch)
        before = await _state(c)
        for label, bad in BAD_PATHS.items():
            for i, call in enumerate(_calls(stub, token, bad, "good.txt", v.entry.revision)):
                if i == 1:  # a batch reports per entry
                    resp = await call()
                    assert resp.results[0].code == grpc.StatusCode.INVALID_ARGUMENT.value[0], label
                    continue
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call()
                assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, (
                    label,
                    i,
                    info.value.details(),
                )
                assert "\n" not in (info.value.details() or "")
        assert await _state(c) == before


async def test_case_and_unicode_twins_are_the_same_name(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        nfc = unicodedata.normalize("NFC", "Café/Résumé.txt")
        nfd = unicodedata.normalize("NFD", "CAFÉ/résumé.TXT")
        first = await put_bytes(c, tmp_path, nfc, b"1")
        err = await error_of(put_bytes(c, tmp_path, nfd, b"2", parent_revision=""))
        assert isinstance(err, ConflictError) and err.head_revision == first.entry.revision
        assert (await c.stat(nfd)).file_id == first.entry.file_id
        second = await put_bytes(
            c, tmp_path, nfd, b"2"
        )  # on top of the head: the same file, case kept
        assert second.entry.file_id == first.entry.file_id and second.entry.path == nfc
        assert [e.name for e in await c.list("")] == ["Café"]
        assert (await c.make_folder(unicodedata.normalize("NFD", "café"))).file_id == (
            await c.stat("Café")
        ).file_id
        await put_bytes(c, tmp_path, "other.txt", b"o")
        before = await _state(c)
        assert await status_of(c.move("other.txt", nfd)) is grpc.StatusCode.ALREADY_EXISTS
        assert await status_of(c.move("other.txt", "CAFÉ")) is grpc.StatusCode.ALREADY_EXISTS
        assert await _state(c) == before


async def test_unknown_and_malformed_ids(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with (
        await Client.connect(cluster.meta_address, token=token) as c,
        grpc.aio.insecure_channel(cluster.meta_address) as ch,
    ):
        await put_bytes(c, tmp_path, "f.txt", b"x")
        stub = meta_pb2_grpc.MetadataStub(ch)
        m = md(token)
        before = await _state(c)
        nf, ia = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT
        cases = [
            (
                stub.Restore(
                    meta_pb2.RestoreRequest(path="f.txt", revision_id=str(uuid.uuid4())), metadata=m
                ),
                nf,
            ),
            (
                stub.Restore(
                    meta_pb2.RestoreRequest(path="f.txt", revision_id="not-a-uuid"), metadata=m
                ),
                ia,
            ),
            (stub.Restore(meta_pb2.RestoreRequest(path="f.txt"), metadata=m), ia),
            (
                stub.GetFile(
                    meta_pb2.GetFileRequest(path="f.txt", revision_id=str(uuid.uuid4())), metadata=m
                ),
                nf,
            ),
            (
                stub.Stat(
                    meta_pb2.StatRequest(namespace_id=str(uuid.uuid4()), path="f.txt"), metadata=m
                ),
                nf,
            ),
            (stub.Stat(meta_pb2.StatRequest(namespace_id="zzz", path="f.txt"), metadata=m), ia),
            (
                stub.ListChanges(
                    meta_pb2.ListChangesRequest(
                        cursor=common_pb2.Cursor(namespace_id=str(uuid.uuid4()))
                    ),
                    metadata=m,
                ),
                nf,
            ),
            (
                stub.Commit(
                    meta_pb2.CommitRequest(
                        path="f.txt", parent_revision="bogus", blocklist=common_pb2.Blocklist()
                    ),
                    metadata=m,
                ),
                ia,
            ),
            (stub.Delete(meta_pb2.DeleteRequest(path="missing.txt"), metadata=m), nf),
            (
                stub.Share(
                    meta_pb2.ShareRequest(
                        path="f.txt", user_name="no-such-user-xyz", role=meta_pb2.ROLE_EDITOR
                    ),
                    metadata=m,
                ),
                nf,  # files can be shared now (issue 13): an unknown user is NOT_FOUND, as for folders
            ),
            (
                stub.Share(
                    meta_pb2.ShareRequest(path="nofolder", user_name="x", role=meta_pb2.ROLE_OWNER),
                    metadata=m,
                ),
                ia,
            ),
            (
                stub.Commit(
                    meta_pb2.CommitRequest(
                        path="g.txt",
                        blocklist=common_pb2.Blocklist(
                            chunks=[common_pb2.ChunkRef(hash=b"short", size=1)]
                        ),
                    ),
                    metadata=m,
                ),
                ia,
            ),
            (stub.NeedChunks(meta_pb2.NeedChunksRequest(hashes=[b"x" * 31]), metadata=m), ia),
        ]
        for call, expected in cases:
            assert await status_of(call) is expected
        assert await _state(c) == before


async def test_oversized_batches_are_refused_whole(cluster) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with (
        await Client.connect(cluster.meta_address, token=token) as c,
        grpc.aio.insecure_channel(cluster.meta_address) as ch,
    ):
        stub = meta_pb2_grpc.MetadataStub(ch)
        commits = [
            meta_pb2.CommitRequest(path=f"f{i}", blocklist=common_pb2.Blocklist())
            for i in range(5001)
        ]
        before = await _state(c)
        assert (
            await status_of(
                stub.CommitBatch(meta_pb2.CommitBatchRequest(commits=commits), metadata=md(token))
            )
            is grpc.StatusCode.INVALID_ARGUMENT
        )
        assert await _state(c) == before


async def test_forged_or_expired_receipts_and_tickets(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    signer = Signer(cluster.secret)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        data = os.urandom(5000)
        chunk = Chunk(0, chunk_hash(data), data)
        (receipt,) = await (await c._block_pool()).put([chunk])
        ref = common_pb2.ChunkRef(hash=chunk.hash, size=chunk.size)
        exp, sig = signer.sign_receipt(chunk.hash, chunk.size, c.user_id, ttl=-5)
        forged = [
            common_pb2.Receipt(
                hash=chunk.hash,
                size=chunk.size,
                user_id=c.user_id,
                expires_at=receipt.expires_at,
                signature=b"\x00" * 32,
            ),
            common_pb2.Receipt(
                hash=chunk.hash, size=chunk.size, user_id=c.user_id, expires_at=exp, signature=sig
            ),  # expired
            common_pb2.Receipt(
                hash=chunk.hash,
                size=chunk.size,
                user_id=str(uuid.uuid4()),
                expires_at=receipt.expires_at,
                signature=receipt.signature,
            ),
            common_pb2.Receipt(
                hash=chunk.hash,
                size=chunk.size + 1,
                user_id=c.user_id,
                expires_at=receipt.expires_at,
                signature=receipt.signature,
            ),
        ]
        before = await _state(c)
        for r in forged:
            req = meta_pb2.CommitRequest(
                path="r.bin", blocklist=common_pb2.Blocklist(chunks=[ref]), receipts=[r]
            )
            assert (
                await status_of(c._meta.Commit(req, metadata=c._md))
                is grpc.StatusCode.FAILED_PRECONDITION
            )
        assert await _state(c) == before
        assert await c.need_chunks([chunk.hash]) == {chunk.hash}  # nothing claimed either

        # Read tickets: forged, expired, for another user, or naming other chunks.
        v = await put_bytes(c, tmp_path, "t.bin", data)
        resp = await c._meta.GetFile(meta_pb2.GetFileRequest(path="t.bin"), metadata=c._md)
        t = resp.ticket
        exp, sig = signer.sign_ticket(c.user_id, [chunk.hash], ttl=-5)
        other = os.urandom(32)
        bad_tickets = [
            common_pb2.ReadTicket(
                user_id=t.user_id, hashes=t.hashes, expires_at=t.expires_at, signature=b"\x01" * 32
            ),
            common_pb2.ReadTicket(
                user_id=t.user_id,
                hashes=t.hashes,
                expires_at=t.expires_at + 3600,
                signature=t.signature,
            ),
            common_pb2.ReadTicket(
                user_id=c.user_id, hashes=[chunk.hash], expires_at=exp, signature=sig
            ),
            common_pb2.ReadTicket(
                user_id=t.user_id, hashes=[other], expires_at=t.expires_at, signature=t.signature
            ),
        ]
        assert v.entry.size == len(data)
        async with grpc.aio.insecure_channel(cluster.block_addresses[0]) as ch:
            stub = block_pb2_grpc.BlockStub(ch)
            for ticket in bad_tickets:
                call = stub.GetChunks(
                    block_pb2.GetChunksRequest(ticket=ticket, hashes=[chunk.hash]),
                    metadata=md(token),
                )
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    async for _ in call:
                        pass
                assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
            # Another user's genuine ticket is refused too.
            _, token2 = await new_user(cluster.meta_address, cluster.admin_token)
            call = stub.GetChunks(
                block_pb2.GetChunksRequest(ticket=t, hashes=[chunk.hash]), metadata=md(token2)
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in call:
                    pass
            assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
