"""Delta puts, signatures, delta and compressed reads on a real block node (issue 12)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import grpc
import pytest

from tessera import delta
from tessera.pb import block_pb2
from tests.integration.blockprocs import (
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
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from running_cluster(tmp_path_factory, "delta", 1)


def _edited(base: bytes) -> tuple[bytes, bytes]:
    new = base[:1000] + b"inserted" + base[1000:] + os.urandom(4096)
    return hashlib.sha256(new).digest(), new


async def _signature(stub, base_hash: bytes, md=USER_MD) -> block_pb2.ChunkSignature:  # type: ignore[no-untyped-def]
    req = block_pb2.GetSignatureRequest(ticket=ticket([base_hash]), hash=base_hash)
    return await stub.GetSignature(req, metadata=md)


def _sig(msg: block_pb2.ChunkSignature) -> delta.Signature:
    return delta.Signature(tuple(msg.sizes), tuple(bytes(d) for d in msg.strong))


async def test_delta_put_rebuilds_stores_and_returns_the_usual_receipt(node: Cluster) -> None:
    base_hash, base = make_chunk(300_000)
    new_hash, new = _edited(base)
    async with block_stub(node.nodes[0]) as stub:
        await put(stub, [(base_hash, base)])
        sig = await _signature(stub, base_hash)
        assert sum(sig.sizes) == len(base) and len(sig.strong) == len(sig.sizes)
        # The narrow ticket names only the base and is genuine.
        t = sig.base_ticket
        assert list(t.hashes) == [base_hash] and t.user_id == USER
        assert SIGNER.check_ticket(USER, [base_hash], t.expires_at, t.signature)
        d = delta.encode(new, _sig(sig))
        assert len(d) < 20_000 < len(new)
        req = block_pb2.PutChunkRequest(hash=new_hash, base_hash=base_hash, delta=d, base_ticket=t)
        [result] = await alist(stub.PutChunks(iter([req]), metadata=USER_MD))
        assert result.hash == new_hash and result.receipt.size == len(new)
        assert SIGNER.check_receipt(
            new_hash, len(new), USER, result.receipt.expires_at, result.receipt.signature
        )
        [got] = await get(stub, [new_hash])
        assert got.data == new


async def test_delta_against_a_chunk_the_user_cannot_read_is_refused(node: Cluster) -> None:
    secret_hash, secret = make_chunk(100_000)
    absent_hash, _ = make_chunk(100_000)
    new_hash, new = _edited(secret)
    async with block_stub(node.nodes[0]) as stub:
        await put(stub, [(secret_hash, secret)])  # stored by USER
        d = delta.encode(new, delta.signature(secret))
        # Another user, with no ticket / a ticket of USER's / a ticket naming another chunk:
        # the same PERMISSION_DENIED whether or not the base exists (no existence oracle).
        answers: dict[bytes, list[str]] = {}
        for base in (secret_hash, absent_hash):
            for t in (None, ticket([base]), ticket([new_hash], user="another-user")):
                req = block_pb2.PutChunkRequest(
                    hash=new_hash, base_hash=base, delta=d, base_ticket=t
                )
                err = await expect_code(
                    grpc.StatusCode.PERMISSION_DENIED,
                    alist(stub.PutChunks(iter([req]), metadata=OTHER_MD)),
                )
                answers.setdefault(base, []).append(err.details().replace(base.hex()[:16], "X"))
            sig_req = block_pb2.GetSignatureRequest(ticket=ticket([base]), hash=base)
            err = await expect_code(
                grpc.StatusCode.PERMISSION_DENIED, stub.GetSignature(sig_req, metadata=OTHER_MD)
            )
            answers[base].append(err.details().replace(base.hex()[:16], "X"))
        assert answers[secret_hash] == answers[absent_hash]
        assert await has(stub, [new_hash]) == [False]


async def test_corrupt_or_malicious_delta_is_refused_and_nothing_stored(node: Cluster) -> None:
    base_hash, base = make_chunk(200_000)
    new_hash, new = _edited(base)
    async with block_stub(node.nodes[0]) as stub:
        await put(stub, [(base_hash, base)])
        t = (await _signature(stub, base_hash)).base_ticket
        good = delta.encode(new, delta.signature(base))
        flipped = bytearray(good)
        flipped[-1] ^= 0xFF  # a literal byte: parses, rebuilds other bytes
        bomb = delta.compress(bytes(64 * 1024 * 1024), delta.MAGIC)
        outside = delta.MAGIC + bytes([0, 0]) + delta._varint(len(base)) + delta._varint(10)
        cases = {
            bytes(flipped): "bad delta|does not match",
            bomb: "past",
            outside: "outside",
            b"garbage": "bad delta",
        }
        for bad, why in cases.items():
            req = block_pb2.PutChunkRequest(
                hash=new_hash, base_hash=base_hash, delta=bad, base_ticket=t
            )
            err = await expect_code(
                grpc.StatusCode.INVALID_ARGUMENT,
                alist(stub.PutChunks(iter([req]), metadata=USER_MD)),
            )
            assert any(w in err.details() for w in why.split("|")), err.details()
        # The right delta under a wrong hash: rebuilt, hash checked, refused.
        wrong = hashlib.sha256(b"not it").digest()
        req = block_pb2.PutChunkRequest(hash=wrong, base_hash=base_hash, delta=good, base_ticket=t)
        err = await expect_code(
            grpc.StatusCode.INVALID_ARGUMENT, alist(stub.PutChunks(iter([req]), metadata=USER_MD))
        )
        assert "does not match its hash" in err.details()
        assert await has(stub, [new_hash, wrong]) == [False, False]


async def test_delta_against_a_collected_base_is_not_found(node: Cluster) -> None:
    base_hash, base = make_chunk(100_000)
    new_hash, new = _edited(base)
    async with block_stub(node.nodes[0]) as stub:
        d = delta.encode(new, delta.signature(base))  # the base was never stored here
        req = block_pb2.PutChunkRequest(
            hash=new_hash, base_hash=base_hash, delta=d, base_ticket=ticket([base_hash])
        )
        err = await expect_code(
            grpc.StatusCode.NOT_FOUND, alist(stub.PutChunks(iter([req]), metadata=USER_MD))
        )
        assert "send the whole chunk" in err.details()


async def test_compressed_put_and_reads_as_delta_or_zstd(node: Cluster) -> None:
    text = b"a compressible line of text\n" * 20_000
    text_hash = hashlib.sha256(text).digest()
    base_hash, base = make_chunk(300_000)
    new_hash, new = _edited(base)
    async with block_stub(node.nodes[0]) as stub:
        packed = delta.compress(text)
        req = block_pb2.PutChunkRequest(hash=text_hash, zstd_data=packed)
        [r] = await alist(stub.PutChunks(iter([req]), metadata=USER_MD))
        assert r.receipt.size == len(text)
        await put(stub, [(new_hash, new)])
        sig = delta.signature(base)  # the caller's own bytes: the node never sees this base
        msg = block_pb2.GetChunksRequest(
            ticket=ticket([text_hash, new_hash]),
            hashes=[text_hash, new_hash],
            accept_zstd=True,
            bases=[
                block_pb2.DeltaBase(
                    target=new_hash,
                    signature=block_pb2.ChunkSignature(strong=sig.digests, sizes=sig.sizes),
                )
            ],
        )
        got = {m.hash: m async for m in stub.GetChunks(msg, metadata=USER_MD)}
        assert not got[text_hash].data and len(got[text_hash].zstd_data) < len(text) // 10
        assert delta.decompress(got[text_hash].zstd_data, len(text)) == text
        assert not got[new_hash].data and len(got[new_hash].delta) < 20_000
        assert delta.apply(base, got[new_hash].delta, len(new)) == new
        # A base for a chunk not asked for, or a malformed signature: INVALID_ARGUMENT.
        bad = block_pb2.GetChunksRequest(
            ticket=ticket([new_hash]),
            hashes=[new_hash],
            bases=[
                block_pb2.DeltaBase(target=new_hash, signature=block_pb2.ChunkSignature(sizes=[5]))
            ],
        )
        await expect_code(
            grpc.StatusCode.INVALID_ARGUMENT, alist(stub.GetChunks(bad, metadata=USER_MD))
        )
