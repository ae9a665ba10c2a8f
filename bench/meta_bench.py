"""Metadata-service throughput: commits per second with p50/p99 latency for 1, 10 and 100
concurrent users, and 2,000 small files committed as one batch versus one by one.

    .venv/bin/python bench/meta_bench.py [--seconds 5] [--users 1 10 100] [--files 2000] [--fast]
                                         [--base-users 100 --base-files 200]

Starts a local cluster of its own (etcd, PostgreSQL, one metanode; one block node and no sync node:
only metadata is measured) and commits through the real metanode over gRPC. Every commit is a
new small file of one new chunk with its upload receipt (signed with the cluster secret, as a
block node would), so each one claims a chunk, writes a revision, moves a head and appends to
the journal. ``--fast`` turns fsync off in PostgreSQL (as the tests do); the default is durable.
Users are created straight in the database with an unusable password (a login would cost a
slow KDF each) and get tokens minted with the cluster secret. Not a test: figures depend on
the machine. On PostgreSQL, serializable isolation tracks reads by index page, so on a nearly
empty database concurrent users conflict (and retry) far more than on one in use:
``--base-users`` fills it first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import grpc

from devcluster import LocalCluster
from metanode import users
from metanode.db import Database
from tessera.auth import Signer
from tessera.pb import common_pb2, meta_pb2, meta_pb2_grpc
from tessera.rpc import auth_metadata, channel_options


class Bench:
    """A cluster, a database handle for creating users, and helpers to commit."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.signer = Signer(cluster.secret)
        self.db = Database(cluster.db_dsn, min_size=1, max_size=4)

    async def make_users(self, n: int) -> list[tuple[str, str]]:
        """n fresh users: (user id, token) each."""
        out = []
        for _ in range(n):
            name = f"bench{uuid.uuid4().hex[:10]}"
            user = await self.db.run(
                lambda conn, name=name: users.create_user(conn, name, "!unusable", is_admin=False)
            )
            out.append((str(user.user_id), self.signer.issue_token(str(user.user_id), ttl=3600)[0]))
        return out

    def request(self, user_id: str, path: str) -> meta_pb2.CommitRequest:
        """A commit of a new 4 KiB file made of one new chunk, with its receipt."""
        h, size = os.urandom(32), 4096
        expires_at, sig = self.signer.sign_receipt(h, size, user_id, 3600)
        return meta_pb2.CommitRequest(
            path=path,
            blocklist=common_pb2.Blocklist(chunks=[common_pb2.ChunkRef(hash=h, size=size)]),
            receipts=[
                common_pb2.Receipt(
                    hash=h, size=size, user_id=user_id, expires_at=expires_at, signature=sig
                )
            ],
            device_id="bench",
            operation_id=uuid.uuid4().hex,
        )


async def concurrent_commits(
    bench: Bench, n_users: int, seconds: float
) -> tuple[int, float, list[float]]:
    """Each of ``n_users`` commits new files back to back for ``seconds``; (commits, elapsed, latencies)."""
    accounts = await bench.make_users(n_users)
    channels = [
        grpc.aio.insecure_channel(bench.cluster.meta_address, options=channel_options(8 << 20))
        for _ in range(min(n_users, 16))
    ]
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def user(i: int, user_id: str, token: str) -> None:
        stub = meta_pb2_grpc.MetadataStub(channels[i % len(channels)])
        md = auth_metadata(token)
        k = 0
        while time.perf_counter() < stop:
            req = bench.request(user_id, f"bench/{k // 100}/f{k}.txt")
            t = time.perf_counter()
            await stub.Commit(req, metadata=md, timeout=60)
            latencies.append(time.perf_counter() - t)
            k += 1

    start = time.perf_counter()
    await asyncio.gather(*(user(i, uid, tok) for i, (uid, tok) in enumerate(accounts)))
    elapsed = time.perf_counter() - start
    for ch in channels:
        await ch.close()
    return len(latencies), elapsed, latencies


async def batch_versus_single(bench: Bench, files: int) -> tuple[float, float, float]:
    """Seconds to commit ``files`` small files as one CommitBatch, then one Commit at a time,
    then to delete the latter one Delete at a time."""
    (uid_a, tok_a), (uid_b, tok_b) = await bench.make_users(2)
    async with grpc.aio.insecure_channel(
        bench.cluster.meta_address, options=channel_options(64 << 20)
    ) as ch:
        stub = meta_pb2_grpc.MetadataStub(ch)
        batch = meta_pb2.CommitBatchRequest(
            commits=[bench.request(uid_a, f"photos/{i // 200}/img{i}.jpg") for i in range(files)]
        )
        t = time.perf_counter()
        resp = await stub.CommitBatch(batch, metadata=auth_metadata(tok_a), timeout=600)
        batch_s = time.perf_counter() - t
        assert all(r.code == 0 for r in resp.results), [r.message for r in resp.results if r.code][
            :3
        ]
        singles = [bench.request(uid_b, f"photos/{i // 200}/img{i}.jpg") for i in range(files)]
        t = time.perf_counter()
        for req in singles:
            await stub.Commit(req, metadata=auth_metadata(tok_b), timeout=60)
        single_s = time.perf_counter() - t
        cpu0 = meta_cpu(bench.cluster)
        t = time.perf_counter()
        for i in range(files):  # one Delete RPC per file, as a device deleting them would
            req = meta_pb2.DeleteRequest(
                path=f"photos/{i // 200}/img{i}.jpg",
                device_id="bench",
                operation_id=uuid.uuid4().hex,
            )
            await stub.Delete(req, metadata=auth_metadata(tok_b), timeout=60)
        delete_s = time.perf_counter() - t
        print(f"metanode CPU per Delete: {_ms((meta_cpu(bench.cluster) - cpu0) / files)}")
    return batch_s, single_s, delete_s


async def populate(bench: Bench, n_users: int, files: int) -> float:
    """A database in use: ``n_users`` users with ``files`` small files each (one batch per user)."""
    t = time.perf_counter()
    accounts = await bench.make_users(n_users)
    async with grpc.aio.insecure_channel(
        bench.cluster.meta_address, options=channel_options(64 << 20)
    ) as ch:
        stub = meta_pb2_grpc.MetadataStub(ch)

        async def one(user_id: str, token: str) -> None:
            batch = meta_pb2.CommitBatchRequest(
                commits=[bench.request(user_id, f"docs/{i // 50}/f{i}.txt") for i in range(files)]
            )
            await stub.CommitBatch(batch, metadata=auth_metadata(token), timeout=600)

        for i in range(0, len(accounts), 4):
            await asyncio.gather(*(one(uid, tok) for uid, tok in accounts[i : i + 4]))
    return time.perf_counter() - t


def meta_cpu(cluster: LocalCluster) -> float:
    """CPU seconds the metanode processes have used so far (from /proc)."""
    total = 0
    for node in cluster.nodes("meta"):
        try:
            fields = Path(f"/proc/{node['pid']}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, KeyError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


async def run(args: argparse.Namespace, cluster: LocalCluster) -> None:
    bench = Bench(cluster)
    await bench.db.open()
    try:
        print(
            f"metadata bench: PostgreSQL {'without fsync (--fast)' if args.fast else 'durable'}, one metanode, {os.cpu_count()} CPUs"
        )
        if args.base_users:
            took = await populate(bench, args.base_users, args.base_files)
            print(
                f"database populated first: {args.base_users} users x {args.base_files} files in {took:.0f} s"
            )
        print(
            f"{'users':>6} {'commits':>8} {'commits/s':>10} {'p50':>10} {'p99':>10} {'metanode CPU/commit':>20}"
        )
        for n in args.users:
            cpu0 = meta_cpu(cluster)
            count, elapsed, lat = await concurrent_commits(bench, n, args.seconds)
            cpu = (meta_cpu(cluster) - cpu0) / max(count, 1)
            q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [lat[0]] * 99
            print(
                f"{n:>6} {count:>8} {count / elapsed:>10.0f} {_ms(q[49]):>10} {_ms(q[98]):>10} {_ms(cpu):>20}"
            )
        batch_s, single_s, delete_s = await batch_versus_single(bench, args.files)
        print(
            f"{args.files} small files: one CommitBatch {batch_s:.2f} s ({args.files / batch_s:.0f} files/s), "
            f"one Commit each {single_s:.2f} s ({args.files / single_s:.0f} files/s), batch {single_s / batch_s:.1f}x faster"
        )
        print(
            f"{args.files} deletes, one Delete each: {delete_s:.2f} s ({args.files / delete_s:.0f} files/s)"
        )
    finally:
        await bench.db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="duration of each concurrency level"
    )
    parser.add_argument("--users", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--fast", action="store_true", help="PostgreSQL without fsync")
    parser.add_argument(
        "--base-users", type=int, default=0, help="populate the database first: this many users..."
    )
    parser.add_argument("--base-files", type=int, default=200, help="...with this many files each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meta-bench-") as tmp:
        cluster = LocalCluster.start(
            Path(tmp), block_nodes=1, sync_nodes=0, meta_port=0, fast=args.fast
        )
        try:
            asyncio.run(run(args, cluster))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
