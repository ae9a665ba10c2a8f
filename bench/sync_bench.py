"""Device-to-device sync figures on a real local cluster (etcd, PostgreSQL, node processes).

    .venv/bin/python bench/sync_bench.py [--trials 30] [--files 2000] [--big-mib 256] [--huge-mib 1024]

Starts a cluster in a temporary directory (or uses ``--endpoint`` with ``--token``), runs two
sync daemons (devices A and B) on separate folders in this process, and prints:

* latency from a small file closed on A to the file in place on B (p50, p95);
* the time to sync N files of 8 KiB from A to B;
* the bytes A sends after overwriting 1 MiB in the middle of a large file;
* MB/s for a very large file from A to B (A's close to B's rename).

Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client import Client  # noqa: E402
from syncd.daemon import Daemon, DaemonConfig  # noqa: E402

MiB = 1024 * 1024


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


async def _until(pred, timeout: float, step: float = 0.001) -> float:  # noqa: ANN001
    start = time.perf_counter()
    while not pred():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the other device did not get it in time")
        await asyncio.sleep(step)
    return time.perf_counter() - start


def _random_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(os.urandom(n))
            left -= n


async def _idle(*daemons: Daemon, timeout: float = 120) -> None:
    await _until(lambda: all(d.idle for d in daemons), timeout, 0.02)


async def bench(endpoint: str, token: str, work: Path, args: argparse.Namespace) -> None:
    """Run every measurement with two daemons of one user."""
    devs = []
    for name in ("A", "B"):
        folder = work / name / "folder"
        folder.mkdir(parents=True)
        cfg = DaemonConfig(
            folder=folder,
            state_dir=work / name / "state",
            endpoint=endpoint,
            token=token,
            device_name=name,
            settle=0.5,
            backoff_cap=2.0,
        )
        devs.append(Daemon(cfg))
    a, b = devs
    tasks = [asyncio.create_task(d.run()) for d in devs]
    try:
        await _idle(a, b)
        # 1. latency of one small file
        lat: list[float] = []
        for i in range(args.trials):
            data = os.urandom(2000)
            src, dst = a.root / f"lat-{i}.txt", b.root / f"lat-{i}.txt"
            with src.open("wb") as f:
                f.write(data)
            size = len(data)
            t = await _until(
                lambda dst=dst, size=size: dst.exists() and dst.stat().st_size == size, 30
            )
            lat.append(t * 1000)
            await asyncio.sleep(0.05)
        lat.sort()
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
        print(
            f"small file A closed -> B in place: p50 {statistics.median(lat):.1f} ms, p95 {p95:.1f} ms ({len(lat)} trials)"
        )
        await _idle(a, b)

        # 2. many small files
        many_a, many_b = a.root / "many", b.root / "many"
        t0 = time.perf_counter()
        many_a.mkdir()
        for i in range(args.files):
            (many_a / f"f{i:05d}.bin").write_bytes(os.urandom(8192))
        written = time.perf_counter() - t0
        await _until(lambda: many_b.is_dir() and len(os.listdir(many_b)) >= args.files, 600, 0.05)
        took = time.perf_counter() - t0
        print(
            f"{args.files} files of 8 KiB A -> B: {took:.1f} s ({args.files / took:.0f} files/s; writing them took {written:.1f} s)"
        )
        await _idle(a, b)

        # 3. a 1 MiB overwrite in the middle of a large file
        big_a, big_b = a.root / "big.bin", b.root / "big.bin"
        _random_file(big_a, args.big_mib * MiB)
        await _until(
            lambda: big_b.exists() and big_b.stat().st_size == args.big_mib * MiB, 600, 0.05
        )
        await _idle(a, b)
        sent0 = a.db.counters().get("bytes_sent", 0)
        fetched0 = b.db.counters().get("bytes_fetched", 0)
        with big_a.open("r+b") as f:
            f.seek(args.big_mib * MiB // 2)
            f.write(os.urandom(MiB))
        want = _digest(big_a)
        await _until(
            lambda: a.idle and b.idle and a.db.counters().get("bytes_sent", 0) > sent0, 300, 0.05
        )
        await _until(lambda: _digest(big_b) == want, 300, 0.2)
        sent = a.db.counters().get("bytes_sent", 0) - sent0
        fetched = b.db.counters().get("bytes_fetched", 0) - fetched0
        print(
            f"overwrite 1 MiB in the middle of a {args.big_mib} MiB file: A sent {sent / MiB:.2f} MiB, B fetched {fetched / MiB:.2f} MiB"
        )
        big_a.unlink()
        await _idle(a, b)

        # 4. one very large file
        huge_a, huge_b = a.root / "huge.bin", b.root / "huge.bin"
        src = work / "huge.src"
        _random_file(src, args.huge_mib * MiB)
        os.rename(src, huge_a)  # appears closed and complete at once
        t0 = time.perf_counter()
        await _until(
            lambda: huge_b.exists() and huge_b.stat().st_size == args.huge_mib * MiB, 1800, 0.05
        )
        took = time.perf_counter() - t0
        print(
            f"{args.huge_mib} MiB file A -> B: {took:.1f} s, {args.huge_mib * MiB / took / 1e6:.0f} MB/s"
        )
    finally:
        for d in devs:
            d.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _new_user(endpoint: str, admin_token: str) -> str:
    import uuid

    name, password = f"bench{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    async with await Client.connect(endpoint, token=admin_token) as admin:
        await admin.create_user(name, password)
    return (await Client.login(endpoint, name, password)).token


def main() -> None:
    """Parse flags, start a cluster if needed, run."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--big-mib", type=int, default=256)
    p.add_argument("--huge-mib", type=int, default=1024)
    p.add_argument("--endpoint", help="an existing cluster's metanode (default: start one)")
    p.add_argument("--admin-token", help="its admin token (to create the benchmark user)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        work = Path(tmp)
        if args.endpoint:
            token = asyncio.run(
                _new_user(args.endpoint, args.admin_token or os.environ.get("TESSERA_TOKEN", ""))
            )
            asyncio.run(bench(args.endpoint, token, work / "devices", args))
            return
        from devcluster import LocalCluster

        cluster = LocalCluster.start(work / "cluster", meta_port=0, fast=True)
        try:
            print(
                f"cluster up in {cluster.healthy_after:.1f} s (3 block nodes, RF=3, 1 sync node, loopback)"
            )
            token = asyncio.run(_new_user(cluster.meta_address, cluster.admin_token))
            asyncio.run(bench(cluster.meta_address, token, work / "devices", args))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
