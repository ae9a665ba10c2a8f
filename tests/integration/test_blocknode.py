"""One block node as a real process (``python -m blocknode``) on a real etcd, over real gRPC."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tessera.chunking import MAX_CHUNK
from tessera.pb import block_pb2
from tessera.rpc import auth_metadata
from tests.integration.blockprocs import (
    NODE_MD,
    OTHER_MD,
    SIGNER,
    USER,
    USER_MD,
    Cluster,
    alist,
    block_stub,
    expect_code,
    get,
    has,
    make_chunk,
    put,
    running_cluster,
    ticket,
)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from running_cluster(tmp_path_factory, "single", 1)


# -- one node -------------------------------------------------------------------------------


async def test_put_then_get_roundtrip(single: Cluster) -> None:
    chunks = [make_chunk(n) for n in (0, 1, 1000, 64 * 1024, 1024 * 1024, MAX_CHUNK)]
    async with block_stub(single.nodes[0]) as stub:
        results = await put(stub, chunks)
        assert [r.hash for r in results] == [h for h, _ in chunks]
        for r, (h, d) in zip(results, chunks, strict=True):
            assert r.replicas == 1
            assert r.receipt.user_id == USER and r.receipt.size == len(d) and r.receipt.hash == h
            assert SIGNER.check_receipt(h, len(d), USER, r.receipt.expires_at, r.receipt.signature)
        got = await get(stub, [h for h, _ in chunks])
        assert [(c.hash, c.data) for c in got] == chunks
        # The ticket may name more than the call asks for; an empty hash list reads them all.
        hashes = [h for h, _ in chunks]
        got = await get(stub, hashes[2:4], ticket(hashes))
        assert [c.hash for c in got] == hashes[2:4]
        got = await get(stub, [], ticket(hashes[:2]))
        assert [c.hash for c in got] == hashes[:2]


async def test_many_chunks_in_one_stream(single: Cluster) -> None:
    chunks = [make_chunk(256 * 1024) for _ in range(40)]
    async with block_stub(single.nodes[0]) as stub:
        results = await put(stub, chunks)
        assert [r.hash for r in results] == [h for h, _ in chunks]
        assert all(await has(stub, [h for h, _ in chunks]))


async def test_mismatched_hash_is_rejected_and_not_stored(single: Cluster) -> None:
    good = make_chunk(5000)
    _, data = make_chunk(5000)
    claimed = hashlib.sha256(b"something else").digest()
    async with block_stub(single.nodes[0]) as stub:
        error = await expect_code(
            grpc.StatusCode.INVALID_ARGUMENT, put(stub, [good, (claimed, data)])
        )
        assert "does not match its hash" in error.details()
        assert await has(stub, [claimed, hashlib.sha256(data).digest()]) == [False, False]
        await expect_code(grpc.StatusCode.INVALID_ARGUMENT, put(stub, [(b"short", b"x")]))


async def test_bad_chunk_mid_stream_reports_invalid_argument(single: Cluster) -> None:
    # The client is still writing when the bad chunk is found; the node reads the rest before
    # failing, so the client sees INVALID_ARGUMENT rather than grpcio's INTERNAL (#36066).
    async with block_stub(single.nodes[0]) as stub:
        for _ in range(5):
            chunks = [make_chunk(200_000) for _ in range(30)]
            bad_hash = hashlib.sha256(b"not it").digest()
            chunks[2] = (bad_hash, chunks[2][1])
            await expect_code(grpc.StatusCode.INVALID_ARGUMENT, put(stub, chunks))
            assert await has(stub, [bad_hash]) == [False]


async def test_chunk_over_max_size_is_rejected(single: Cluster) -> None:
    big = make_chunk(MAX_CHUNK + 1)
    async with block_stub(single.nodes[0]) as stub:
        await expect_code(grpc.StatusCode.INVALID_ARGUMENT, put(stub, [big]))
        assert await has(stub, [big[0]]) == [False]


async def test_message_over_limit_is_resource_exhausted(single: Cluster) -> None:
    huge = make_chunk(7 * 1024 * 1024)
    async with block_stub(single.nodes[0]) as stub:
        # A request of one message (the client cannot race the status with further writes).
        too_many = [
            hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(7 * 1024 * 1024 // 32)
        ]
        await expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED, get(stub, too_many, ticket([])))
        # A 7 MiB chunk on a put stream: the transport refuses it. grpcio's asyncio client
        # may report its own write failing instead (INTERNAL, grpc/grpc#36066).
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await put(stub, [huge])
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED or (
            info.value.code() == grpc.StatusCode.INTERNAL
            and info.value.details() == "Internal error from Core"
        )
        assert await has(stub, [huge[0]]) == [False]


async def status_without_writing(call: grpc.aio.Call) -> grpc.StatusCode:
    """The status of a client-streaming call the client never writes to: the node decides on
    the headers alone (authentication), and no write can race that status (grpc/grpc#36066)."""
    return await call.code()


async def test_missing_or_bad_token_is_unauthenticated(single: Cluster) -> None:
    chunk = make_chunk(10)
    expired = auth_metadata(SIGNER.issue_token(USER, ttl=-10)[0])
    forged = auth_metadata("tsr1.forged.token")
    async with block_stub(single.nodes[0]) as stub:
        for md in ((), forged, expired):
            code = await status_without_writing(stub.PutChunks(metadata=md))
            assert code == grpc.StatusCode.UNAUTHENTICATED
            await expect_code(grpc.StatusCode.UNAUTHENTICATED, get(stub, [chunk[0]], md=md))
        await expect_code(grpc.StatusCode.UNAUTHENTICATED, stub.GetRing(block_pb2.GetRingRequest()))
        await expect_code(
            grpc.StatusCode.UNAUTHENTICATED,
            stub.HasChunks(block_pb2.HasChunksRequest(hashes=[chunk[0]])),
        )


async def test_node_only_calls_refuse_users(single: Cluster) -> None:
    h, d = make_chunk(10)
    async with block_stub(single.nodes[0]) as stub:
        await expect_code(
            grpc.StatusCode.PERMISSION_DENIED,
            stub.HasChunks(block_pb2.HasChunksRequest(hashes=[h]), metadata=USER_MD),
        )
        await expect_code(
            grpc.StatusCode.PERMISSION_DENIED,
            stub.DeleteChunks(block_pb2.DeleteChunksRequest(hashes=[h]), metadata=USER_MD),
        )
        code = await status_without_writing(stub.Replicate(metadata=USER_MD))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        code = await status_without_writing(stub.ReplicateStream(metadata=USER_MD))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert await has(stub, [h]) == [False]


async def test_bad_tickets_are_permission_denied(single: Cluster) -> None:
    (h, d), (other, _) = make_chunk(100), make_chunk(100)
    async with block_stub(single.nodes[0]) as stub:
        await put(stub, [(h, d)])
        forged = ticket([h])
        forged.signature = bytes(32)
        expired = ticket([h], ttl=-10)
        for bad in (forged, expired):
            await expect_code(grpc.StatusCode.PERMISSION_DENIED, get(stub, [h], bad))
        error = await expect_code(
            grpc.StatusCode.PERMISSION_DENIED, get(stub, [h, other], ticket([h]))
        )
        assert "not named by the read ticket" in error.details()
        # A genuine ticket of another user is no good to this one, and tickets are not tokens.
        await expect_code(
            grpc.StatusCode.PERMISSION_DENIED, get(stub, [h], ticket([h], user="another-user"))
        )
        await expect_code(
            grpc.StatusCode.PERMISSION_DENIED, get(stub, [h], ticket([h]), md=OTHER_MD)
        )
        # Extending a ticket's hash list breaks its signature.
        widened = ticket([h])
        widened.hashes.append(other)
        await expect_code(grpc.StatusCode.PERMISSION_DENIED, get(stub, [other], widened))


async def test_missing_chunk_is_not_found(single: Cluster) -> None:
    h, _ = make_chunk(100)
    async with block_stub(single.nodes[0]) as stub:
        await expect_code(grpc.StatusCode.NOT_FOUND, get(stub, [h]))


async def test_delete_chunks(single: Cluster) -> None:
    chunks = [make_chunk(2000) for _ in range(3)]
    hashes = [h for h, _ in chunks]
    async with block_stub(single.nodes[0]) as stub:
        await put(stub, chunks)
        reply = await stub.DeleteChunks(
            block_pb2.DeleteChunksRequest(hashes=hashes[:2]), metadata=NODE_MD
        )
        assert reply.deleted == 2
        assert await has(stub, hashes) == [False, False, True]
        await expect_code(grpc.StatusCode.NOT_FOUND, get(stub, hashes[:1]))


async def test_replicate_with_hint_and_checks(single: Cluster) -> None:
    h, d = make_chunk(3000)
    async with block_stub(single.nodes[0]) as stub:
        bad = stub.Replicate(
            iter([block_pb2.ReplicateRequest(hash=h, data=d + b"!")]), metadata=NODE_MD
        )
        await expect_code(grpc.StatusCode.INVALID_ARGUMENT, bad)
        assert await has(stub, [h]) == [False]
        reply = await stub.Replicate(
            iter([block_pb2.ReplicateRequest(hash=h, data=d, hint_for="node-elsewhere")]),
            metadata=NODE_MD,
        )
        assert reply.stored == 1
        assert await has(stub, [h]) == [True]


async def test_replicate_stream_acks_each_copy_once_durable(single: Cluster) -> None:
    chunks = [make_chunk(n) for n in (10, 70_000, 1024 * 1024)]
    hint = make_chunk(500)
    requests = [
        block_pb2.ReplicateRequest(hash=h, data=d, seq=i + 1) for i, (h, d) in enumerate(chunks)
    ]
    requests.append(block_pb2.ReplicateRequest(hash=b"short", data=b"x", seq=7))
    requests.append(block_pb2.ReplicateRequest(hash=hint[0], data=hint[1], seq=9, hint_for="nx"))
    async with block_stub(single.nodes[0]) as stub:
        acks = await alist(stub.ReplicateStream(iter(requests), metadata=NODE_MD))
        by_seq = {a.seq: a for a in acks}
        assert sorted(by_seq) == [1, 2, 3, 7, 9]  # one ack per copy, refusals included
        assert all(by_seq[s].ok for s in (1, 2, 3, 9))
        assert not by_seq[7].ok and "32-byte hash" in by_seq[7].error
        assert await has(stub, [h for h, _ in chunks] + [hint[0]]) == [True] * 4
        got = await get(stub, [h for h, _ in chunks])
        assert [(c.hash, c.data) for c in got] == chunks


async def test_range_digests_and_list_range(single: Cluster) -> None:
    chunks = [make_chunk(100) for _ in range(20)]
    async with block_stub(single.nodes[0]) as stub:
        await put(stub, chunks)
        buckets = 4
        digests = await stub.RangeDigests(
            block_pb2.RangeDigestsRequest(buckets=buckets), metadata=NODE_MD
        )
        assert len(digests.digests) == buckets
        held: list[bytes] = []
        for b in range(buckets):
            listed = await stub.ListRange(
                block_pb2.ListRangeRequest(buckets=buckets, bucket=b), metadata=NODE_MD
            )
            hashes = list(listed.hashes)
            assert hashes == sorted(hashes)
            assert all((int.from_bytes(h[:8], "big") * buckets) >> 64 == b for h in hashes)
            expected = hashlib.sha256(b"".join(hashes)).digest() if hashes else b""
            assert digests.digests[b] == expected
            held += hashes
        assert {h for h, _ in chunks} <= set(held)
        assert len(held) == len(set(held))
        await expect_code(
            grpc.StatusCode.INVALID_ARGUMENT,
            stub.RangeDigests(block_pb2.RangeDigestsRequest(buckets=0), metadata=NODE_MD),
        )
        await expect_code(
            grpc.StatusCode.INVALID_ARGUMENT,
            stub.ListRange(block_pb2.ListRangeRequest(buckets=2, bucket=2), metadata=NODE_MD),
        )
        await expect_code(
            grpc.StatusCode.PERMISSION_DENIED,
            stub.ListRange(block_pb2.ListRangeRequest(buckets=2, bucket=0), metadata=USER_MD),
        )


async def test_get_ring_single(single: Cluster) -> None:
    async with block_stub(single.nodes[0]) as stub:
        ring = await stub.GetRing(block_pb2.GetRingRequest(), metadata=USER_MD)
    assert ring.revision > 0
    assert [(n.id, n.address, n.up, n.kind) for n in ring.nodes] == [
        (single.nodes[0].node_id, single.nodes[0].address, True, "block")
    ]
    assert (ring.replicas, ring.write_quorum) == (3, 2)
    assert ring.vnodes > 0


def test_config_error_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TESSERA_CLUSTER_SECRET"}
    out = subprocess.run(
        [sys.executable, "-m", "blocknode", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--cluster-secret" in out.stderr
