"""Upload and download MB/s of a file through the SDK on a local cluster, RF=1 and RF=3, and the
rebalance rate when a node joins the loaded cluster.

    .venv/bin/python bench/block_cluster_bench.py --mib 1024 --block-nodes 5

For each RF, a fresh ``LocalCluster`` (etcd, PostgreSQL, metanode, block nodes) starts; a file
of random bytes is uploaded with ``Client.put_file`` (chunking, NeedChunks, PutChunks to each
chunk's primary, replication to W=min(2, RF) before each receipt, commit) and downloaded with
``Client.get_file`` (ticketed reads, re-hashed). With RF=3, one more block node then joins and
the time until every chunk sits on exactly its RF ring owners gives the rebalance rate (bytes
moved / seconds, as counted by the nodes, under ``--rebalance-rate-mb``). Not a test: the
numbers depend on the disk and the CPU (every process shares this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client import Client  # noqa: E402
from devcluster import LocalCluster  # noqa: E402
from tessera.chunking import iter_chunks  # noqa: E402
from tests.fault.blockutil import Blocks, misplacement, wait_until  # noqa: E402

MiB = 1024 * 1024


def make_file(path: Path, mib: int) -> str:
    """Random bytes (incompressible, no duplicate chunks); returns the SHA-256 hex."""
    h = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(mib // 8):
            block = os.urandom(8 * MiB)
            h.update(block)
            f.write(block)
    return h.hexdigest()


def chunk_hashes(path: Path) -> list[bytes]:
    with path.open("rb") as f:
        return list(dict.fromkeys(c.hash for c in iter_chunks(f)))


async def run(root: Path, source: Path, digest: str, rf: int, args: argparse.Namespace) -> None:
    env = {
        "TESSERA_REPLICAS": str(rf),
        "TESSERA_WRITE_QUORUM": str(min(2, rf)),
        "TESSERA_REBALANCE_RATE_MB": str(args.rebalance_rate_mb),
        "TESSERA_REPAIR_INTERVAL": "2",
        "TESSERA_LOG_LEVEL": "WARNING",
    }
    cluster = LocalCluster.start(
        root / f"rf{rf}", block_nodes=args.block_nodes, sync_nodes=0, meta_port=0, fast=True,
        env=env,
    )  # fmt: skip
    blocks = Blocks(cluster)
    size = source.stat().st_size
    try:
        async with await Client.connect(cluster.meta_address, token=cluster.admin_token) as c:
            began = time.perf_counter()
            await c.put_file(source, "bench/big.bin")
            up = time.perf_counter() - began
            target = root / f"back-rf{rf}.bin"
            began = time.perf_counter()
            await c.get_file("bench/big.bin", target)
            down = time.perf_counter() - began
        assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
        target.unlink()
        print(
            f"RF={rf} W={min(2, rf)} {args.block_nodes} block nodes, {size / MiB:.0f} MiB file: "
            f"upload {size / up / 1e6:6.1f} MB/s ({up:.1f} s)   "
            f"download {size / down / 1e6:6.1f} MB/s ({down:.1f} s)",
            flush=True,
        )
        if rf < 3 or args.no_rebalance:
            return
        hashes = chunk_hashes(source)
        ring = await blocks.ring()

        async def placed(r: object) -> bool:
            missing, extra = misplacement(r, await blocks.holdings(hashes), hashes, rf)
            return not missing and not extra

        await wait_until(lambda: placed(ring), 120, "initial placement", every=1.0)
        before = sum(s.rebalance_bytes + s.repair_bytes for s in await blocks.statuses())
        began = time.perf_counter()
        await asyncio.to_thread(cluster.add_block_node)
        new_ring = await blocks.ring()
        await wait_until(lambda: placed(new_ring), 600, "rebalanced", every=0.5)
        seconds = time.perf_counter() - began
        moved = sum(s.rebalance_bytes + s.repair_bytes for s in await blocks.statuses()) - before
        print(
            f"join of a node to {args.block_nodes} loaded with {size / MiB:.0f} MiB x RF{rf}: "
            f"{moved / MiB:.0f} MiB moved in {seconds:.1f} s = {moved / seconds / 1e6:.1f} MB/s "
            f"(limit {args.rebalance_rate_mb} MB/s per sending node), until every chunk sat on "
            f"exactly its {rf} owners",
            flush=True,
        )
    finally:
        await blocks.close()
        cluster.stop()


def main() -> None:
    """Parse flags, make the file, run each RF."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB")
    parser.add_argument("--block-nodes", type=int, default=5)
    parser.add_argument("--rf", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--rebalance-rate-mb", type=float, default=200.0)
    parser.add_argument("--no-rebalance", action="store_true")
    parser.add_argument("--dir", default="", help="working directory (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cluster-bench-", dir=args.dir or None) as tmp:
        root = Path(tmp)
        source = root / "big.bin"
        digest = make_file(source, args.mib)
        for rf in args.rf:
            asyncio.run(run(root, source, digest, rf, args))


if __name__ == "__main__":
    main()
