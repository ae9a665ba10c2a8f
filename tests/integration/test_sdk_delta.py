"""Deltas end to end through the SDK on the real cluster (issue 12): ``put_file`` sends a small
edit as a delta, ``get_file`` over an older local copy fetches only a delta, a base the cluster
no longer holds falls back to whole chunks, and every result is byte-identical."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import grpc
import pytest

from client import Client
from client import _delta as client_delta
from client._delta import write_version
from client._errors import SyncError
from tessera import delta
from tessera.chunking import MAX_CHUNK, chunk_file
from tessera.pb import block_pb2, block_pb2_grpc, meta_pb2
from tessera.rpc import auth_metadata
from tests.conftest import ClusterEnv
from tests.integration.helpers import new_user, random_file, same_bytes

pytestmark = pytest.mark.cluster

MiB = 1024 * 1024


async def _user(env: ClusterEnv) -> Client:
    _, token = await new_user(env.meta, env.admin_token, prefix="delta")
    return await Client.connect(env.meta, token=token)


async def test_small_edits_send_and_fetch_well_under_a_chunk(
    cluster_env: ClusterEnv, tmp_path: Path
) -> None:
    a, b = await _user(cluster_env), None
    try:
        b = await Client.connect(cluster_env.meta, token=a._token)
        src = random_file(tmp_path / "a.bin", 12 * MiB)
        dst = tmp_path / "b" / "a.bin"
        await a.put_file(src, "big.bin")
        await b.get_file("big.bin", dst)
        pool_a, pool_b = await a._block_pool(), await b._block_pool()
        edits = {
            "append 4 KiB": lambda f: (f.seek(0, os.SEEK_END), f.write(os.urandom(4096))),
            "overwrite 100 B": lambda f: (f.seek(5 * MiB + 12_345), f.write(os.urandom(100))),
        }
        for what, edit in edits.items():
            with src.open("r+b") as f:
                edit(f)
            sent0, deltas0 = pool_a.wire_sent, pool_a.delta_chunks_sent
            version = await a.put_file(src, "big.bin")
            sent = pool_a.wire_sent - sent0
            # A chunk is 256 KiB to 4 MiB; the edit goes as a delta of a few KiB.
            assert version.stats.chunks_sent >= 1, what
            assert pool_a.delta_chunks_sent > deltas0, what
            assert sent < 32 * 1024, (what, sent)
            got0, bdeltas0 = pool_b.wire_received, pool_b.delta_chunks_received
            await b.get_file("big.bin", dst)
            assert same_bytes(src, dst), what
            assert pool_b.delta_chunks_received > bdeltas0, what
            assert pool_b.wire_received - got0 < 32 * 1024, what
    finally:
        await a.close()
        if b is not None:
            await b.close()


async def test_a_base_gone_from_the_cluster_falls_back_to_whole_chunks(
    cluster_env: ClusterEnv, tmp_path: Path
) -> None:
    async with await _user(cluster_env) as a:
        src = random_file(tmp_path / "f.bin", 3 * MiB)
        await a.put_file(src, "f.bin")
        old = [c.hash for c in chunk_file(src)]
        with src.open("ab") as f:
            f.write(os.urandom(4096))
        new = [c.hash for c in chunk_file(src)]
        assert old[:-1] == new[:-1] and old[-1] != new[-1]
        # The base (the old last chunk, which no version references any more once this one
        # commits) vanishes from every block node, as if collected, after the metanode
        # handed out the previous version.
        old = old[-1:]
        md = auth_metadata(cluster_env.node_token())
        for address in cluster_env.block:
            async with grpc.aio.insecure_channel(address) as ch:
                await block_pb2_grpc.BlockStub(ch).DeleteChunks(
                    block_pb2.DeleteChunksRequest(hashes=old), metadata=md
                )
        pool = await a._block_pool()
        deltas0 = pool.delta_chunks_sent
        version = await a.put_file(src, "f.bin")
        assert pool.delta_chunks_sent == deltas0  # no base to delta against
        assert version.stats.chunks_sent >= 1
        out = tmp_path / "out.bin"
        await a.get_file("f.bin", out)
        assert same_bytes(src, out)


async def test_write_version_verifies_what_it_takes_from_the_old_file(
    cluster_env: ClusterEnv, tmp_path: Path
) -> None:
    async with await _user(cluster_env) as a:
        src = random_file(tmp_path / "v.bin", 4 * MiB)
        await a.put_file(src, "v.bin")
        old = tmp_path / "old.bin"
        old.write_bytes(src.read_bytes())
        layout = [(c.offset, c.hash, c.size) for c in chunk_file(old)]
        # The old file changed after its layout was read (a stale index): its bytes no longer
        # match, and the layout's claim must not end up in the new file.
        with old.open("r+b") as f:
            f.seek(layout[0][2] // 2)
            f.write(b"stale!")
        resp = await a._meta.GetFile(
            meta_pb2.GetFileRequest(path="v.bin"), metadata=a._md, timeout=30
        )
        new = [(bytes(c.hash), c.size) for c in resp.blocklist.chunks]
        pool = await a._block_pool()
        out = tmp_path / "out.bin"
        with old.open("rb") as o, out.open("wb") as w:  # write-only, as SafeFS makes them
            stats = await write_version(pool, resp.ticket, new, w.fileno(), o.fileno(), layout)
        assert same_bytes(src, out)
        assert stats.copied_bytes + stats.kept_bytes >= src.stat().st_size - MAX_CHUNK
        assert stats.fetched_chunks == 1  # the stale chunk, fetched whole after the check


async def test_compressible_chunks_travel_compressed(
    cluster_env: ClusterEnv, tmp_path: Path
) -> None:
    async with await _user(cluster_env) as a:
        text = tmp_path / "log.txt"
        text.write_bytes(
            b"".join(b"line %08d of a very ordinary log file\n" % i for i in range(60_000))
        )
        pool = await a._block_pool()
        sent0 = pool.wire_sent
        await a.put_file(text, "log.txt")
        assert pool.wire_sent - sent0 < text.stat().st_size // 4
        got0 = pool.wire_received
        out = tmp_path / "copy.txt"
        await a.get_file("log.txt", out)
        assert same_bytes(text, out)
        assert pool.wire_received - got0 < text.stat().st_size // 4
        assert text.stat().st_size < MAX_CHUNK  # one chunk, so this is per-chunk negotiation


async def test_get_file_can_narrow_its_ticket_to_some_chunks(
    cluster_env: ClusterEnv, tmp_path: Path
) -> None:
    async with await _user(cluster_env) as a:
        src = random_file(tmp_path / "n.bin", 3 * MiB)
        await a.put_file(src, "n.bin")
        hashes = [c.hash for c in chunk_file(src)]
        stranger = os.urandom(32)  # not a chunk of this file: never named
        req = meta_pb2.GetFileRequest(path="n.bin", ticket_for=[hashes[-1], stranger])
        resp = await a._meta.GetFile(req, metadata=a._md, timeout=30)
        assert list(resp.ticket.hashes) == [hashes[-1]]
        assert len(resp.blocklist.chunks) == len(hashes)
        # The narrow ticket reads that chunk and nothing else.
        pool = await a._block_pool()
        got = [h async for h, _ in pool.get(resp.ticket, [hashes[-1]])]
        assert got == [hashes[-1]]
        with pytest.raises(SyncError):
            _ = [h async for h, _ in pool.get(resp.ticket, [hashes[0]])]


async def test_with_a_clone_only_the_changed_chunks_are_written(
    cluster_env: ClusterEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This machine's ext4 has no reflink: stand in for FICLONE with a plain copy, to check
    # what write_version does after a successful clone.
    def clone(src: int, dst: int) -> bool:
        size = os.fstat(src).st_size
        os.pwrite(dst, os.pread(src, size, 0), 0)
        return True

    monkeypatch.setattr(client_delta, "_clone", clone)
    async with await _user(cluster_env) as a:
        src = random_file(tmp_path / "c.bin", 6 * MiB)
        old = tmp_path / "old.bin"
        old.write_bytes(src.read_bytes())
        await a.put_file(src, "c.bin")
        with src.open("ab") as f:
            f.write(os.urandom(4096))
        await a.put_file(src, "c.bin")
        resp = await a._meta.GetFile(
            meta_pb2.GetFileRequest(path="c.bin"), metadata=a._md, timeout=30
        )
        new = [(bytes(c.hash), c.size) for c in resp.blocklist.chunks]
        layout = [(c.offset, c.hash, c.size) for c in chunk_file(old)]
        out = tmp_path / "out.bin"
        with old.open("rb") as o, out.open("w+b") as w:
            stats = await write_version(
                await a._block_pool(), resp.ticket, new, w.fileno(), o.fileno(), layout
            )
        assert same_bytes(src, out)
        assert stats.cloned and stats.copied_bytes == 0
        assert stats.kept_bytes == sum(size for _, size in new[:-1])
        # Over the clone only the pages that differ are written: the 4 KiB appended and the
        # page it straddles.
        assert stats.delta_chunks == 1 and 4096 <= stats.written_bytes <= 2 * 4096


async def test_chunks_found_elsewhere_on_the_device_are_used_and_checked(
    cluster_env: ClusterEnv, tmp_path: Path
) -> None:
    async with await _user(cluster_env) as a:
        src = random_file(tmp_path / "e.bin", 2 * MAX_CHUNK + 1)  # 3 chunks or more
        await a.put_file(src, "e.bin")
        chunks = list(chunk_file(src))
        assert len(chunks) >= 3
        elsewhere = {
            chunks[0].hash: chunks[0].data,  # a good copy
            chunks[1].hash: os.urandom(chunks[1].size),  # a copy that changed since indexed
        }
        resp = await a._meta.GetFile(
            meta_pb2.GetFileRequest(path="e.bin"), metadata=a._md, timeout=30
        )
        new = [(bytes(c.hash), c.size) for c in resp.blocklist.chunks]
        out = tmp_path / "out.bin"
        with out.open("wb") as w:
            stats = await write_version(
                await a._block_pool(), resp.ticket, new, w.fileno(), local_chunk=elsewhere.get
            )
        assert same_bytes(src, out)
        assert stats.copied_bytes == chunks[0].size + chunks[1].size
        assert stats.fetched_chunks == len(chunks) - 1  # the bad copy was fetched again


async def test_another_users_chunk_cannot_be_a_delta_base(
    cluster_env: ClusterEnv, tmp_path: Path
) -> None:
    async with await _user(cluster_env) as alice, await _user(cluster_env) as bob:
        secret = random_file(tmp_path / "secret.bin", 1 * MiB)
        await alice.put_file(secret, "secret.bin")
        target = [c.hash for c in chunk_file(secret)][0]
        mine = random_file(tmp_path / "mine.bin", 1 * MiB)
        await bob.put_file(mine, "mine.bin")
        # Bob's own ticket, even asked to name Alice's chunk, names only his file's chunks.
        req = meta_pb2.GetFileRequest(path="mine.bin", ticket_for=[target])
        resp = await bob._meta.GetFile(req, metadata=bob._md, timeout=30)
        assert target not in resp.ticket.hashes
        edited = secret.read_bytes() + b"appended by bob"
        d = delta.encode(edited, delta.signature(secret.read_bytes()))
        pool = await bob._block_pool()
        node = pool.stub(pool.candidates(target)[0])
        put = block_pb2.PutChunkRequest(
            hash=hashlib.sha256(edited).digest(), base_hash=target, delta=d, base_ticket=resp.ticket
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [r async for r in node.PutChunks(iter([put]), metadata=bob._md)]
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        sig = block_pb2.GetSignatureRequest(ticket=resp.ticket, hash=target)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await node.GetSignature(sig, metadata=bob._md)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
