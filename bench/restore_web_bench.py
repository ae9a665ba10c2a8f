"""How long a whole-folder restore takes, and download MB/s through the web gateway against
the SDK, on a local cluster.

    .venv/bin/python bench/restore_web_bench.py --files 500 --mib 64

A fresh ``LocalCluster`` with the web gateway starts. ``--files`` small files are committed into
one folder (one CommitBatch), the folder is deleted, and ``RestoreTree`` brings it back (one
serializable transaction: a revision per file); then half the files are edited and the folder is
restored to the time before the edits. A ``--mib`` file of random bytes is then downloaded with
``Client.get_file`` and through the gateway (``GET /dl/...``, streamed chunk by chunk). Not a
test: the numbers depend on the machine (every process shares it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from client import Client  # noqa: E402
from devcluster import LocalCluster  # noqa: E402
from tessera.pb import common_pb2, meta_pb2  # noqa: E402


async def run(cluster: LocalCluster, files: int, mib: int, tmp: Path) -> None:
    name, password = f"bench{uuid.uuid4().hex[:6]}", "pw-" + uuid.uuid4().hex
    async with await Client.connect(cluster.meta_address, token=cluster.admin_token) as admin:
        await admin.create_user(name, password)
    token = (await Client.login(cluster.meta_address, name, password)).token
    async with await Client.connect(cluster.meta_address, token=token) as c:
        empty = meta_pb2.CommitBatchRequest(
            commits=[
                meta_pb2.CommitRequest(
                    path=f"tree/d{i % 20}/f{i}.txt",
                    blocklist=common_pb2.Blocklist(),
                    device_id="bench",
                    operation_id=uuid.uuid4().hex,
                )
                for i in range(files)
            ]
        )
        await c._meta.CommitBatch(empty, metadata=c._md, timeout=300)
        gone = await c.delete("tree")
        start = time.perf_counter()
        done = await c.restore_at("tree")
        took = time.perf_counter() - start
        print(
            f"restore of a deleted folder: {done.changed} revisions ({files} files, 20 folders) "
            f"in {took:.2f} s"
        )
        at = (await c.stat("tree/d0/f0.txt")).modified_at_us
        for i in range(0, files, 2):
            (tmp / "x").write_bytes(b"edit")
            await c.put_file(tmp / "x", f"tree/d{i % 20}/f{i}.txt")
        start = time.perf_counter()
        done = await c.restore_at("tree", at)
        took = time.perf_counter() - start
        print(f"restore --at before {files // 2} edits: {done.changed} revisions in {took:.2f} s")
        del gone

        big = tmp / "big.bin"
        with big.open("wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
        await c.put_file(big, "big.bin")
        start = time.perf_counter()
        await c.get_file("big.bin", tmp / "via-sdk")
        sdk = mib / (time.perf_counter() - start)
    async with httpx.AsyncClient(base_url=cluster.web_url, timeout=600) as http:
        page = await http.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        await http.post("/login", data={"csrf": csrf, "name": name, "password": password})
        start = time.perf_counter()
        size = 0
        async with http.stream("GET", "/dl/big.bin") as resp:
            async for piece in resp.aiter_bytes():
                size += len(piece)
        web = mib / (time.perf_counter() - start)
    assert size == mib << 20
    print(f"download {mib} MiB: SDK {sdk:.0f} MB/s, web gateway {web:.0f} MB/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=500)
    p.add_argument("--mib", type=int, default=64)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster.start(Path(tmp) / "c", meta_port=0, fast=True, web_port=0)
        try:
            asyncio.run(run(cluster, args.files, args.mib, Path(tmp)))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
