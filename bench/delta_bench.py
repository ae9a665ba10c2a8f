"""Bytes on the wire for small edits of large files (issue 12), Tessera next to rsync.

    .venv/bin/python bench/delta_bench.py [--scale 1.0] [--no-rsync] [--endpoint H:P --admin-token T]

For each change (4 KiB appended to a 64 MiB file; 100 B inserted in the middle of 256 MiB;
1 MiB overwritten in the middle of 256 MiB; the same misaligned by 12,345 B) device A uploads
the old version, edits it and uploads the new one with the SDK (``Client.put_file``, what
``tessera put`` runs); device B holds the old version and downloads the new one
(``Client.get_file``). Printed per change:

* ``A sent``: TCP payload bytes device A's sockets sent while uploading the new version (from
  the kernel's ``tcp_info`` via ``ss``: gRPC/HTTP2 framing, metadata calls and chunks or deltas
  all included), and ``A recv`` what they received;
* ``blocks``: of that, the SDK's own counter of block-node request bytes (chunks, deltas,
  signature requests), ``BlockPool.wire_sent``;
* ``B recv`` / ``B cpu`` / ``B writes``: device B's received TCP bytes, CPU seconds and bytes
  written to storage (``/proc/self/io`` ``write_bytes``) while building the new version;
* compression: what a new 32 MiB log-like text file and a random one cost to upload;
* rsync (``--no-whole-file``, local to local, which runs its real sender/receiver protocol over
  a pipe): ``Total bytes sent`` and ``Literal data`` from ``--stats``.

``--scale 0.25`` shrinks the files (not the edits) for a quick run. Not a test: the numbers
depend on the machine; the cluster runs on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client import Client  # noqa: E402

MiB = 1024 * 1024


@dataclass(frozen=True)
class Change:
    name: str
    size: int
    edit: Callable[[Path, int], None]


def _append(path: Path, size: int) -> None:
    with path.open("ab") as f:
        f.write(os.urandom(4096))


def _insert(path: Path, size: int) -> None:
    data = path.read_bytes()
    mid = size // 2
    path.write_bytes(data[:mid] + os.urandom(100) + data[mid:])


def _overwrite(shift: int) -> Callable[[Path, int], None]:
    def edit(path: Path, size: int) -> None:
        with path.open("r+b") as f:
            f.seek(size // 2 + shift)
            f.write(os.urandom(MiB))

    return edit


def _changes(scale: float) -> list[Change]:
    big, mid = int(256 * MiB * scale), int(64 * MiB * scale)
    return [
        Change("append 4 KiB to a 64 MiB file", mid, _append),
        Change("insert 100 B in the middle of 256 MiB", big, _insert),
        Change("overwrite 1 MiB in the middle of 256 MiB", big, _overwrite(0)),
        Change("same, misaligned by 12,345 B", big, _overwrite(12_345)),
    ]


def _random_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(os.urandom(n))
            left -= n


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


_SOCK = re.compile(r"^\S+\s+\S+\s+(\S+)\s+(\S+)\s+users:\(.*pid=(\d+),")
_FIELD = re.compile(r"\b(bytes_acked|bytes_received):(\d+)")


def tcp_bytes() -> dict[tuple[str, str], tuple[int, int]]:
    """(local, peer) -> (bytes acked by the peer, bytes received) for this process's TCP sockets."""
    out = subprocess.run(
        ["ss", "-tinpH", "state", "established"], capture_output=True, text=True, check=True
    ).stdout
    me = str(os.getpid())
    res: dict[tuple[str, str], tuple[int, int]] = {}
    key: tuple[str, str] | None = None
    for line in out.splitlines():
        m = _SOCK.match(line)
        if m:
            key = (m.group(1), m.group(2)) if m.group(3) == me else None
            continue
        if key is not None:
            fields = dict(_FIELD.findall(line))
            res[key] = (int(fields.get("bytes_acked", 0)), int(fields.get("bytes_received", 0)))
            key = None
    return res


def tcp_delta(
    before: dict[tuple[str, str], tuple[int, int]], after: dict[tuple[str, str], tuple[int, int]]
) -> tuple[int, int]:
    """Bytes sent and received between two snapshots (sockets opened since count from zero)."""
    sent = recv = 0
    for k, (s, r) in after.items():
        s0, r0 = before.get(k, (0, 0))
        sent += s - s0
        recv += r - r0
    return sent, recv


def _io_written() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def _kb(n: int) -> str:
    return f"{n / 1000:,.1f} KB" if n < 1_000_000 else f"{n / 1e6:,.2f} MB"


def rsync_stats(old: Path, new: Path, work: Path) -> tuple[int, int] | None:
    """(total bytes sent, literal data) for rsync bringing a copy of ``old`` up to ``new``."""
    if shutil.which("rsync") is None:
        return None
    src, dst = work / "rsync-src", work / "rsync-dst"
    for d in (src, dst):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
    shutil.copyfile(new, src / "f")
    shutil.copyfile(old, dst / "f")
    out = subprocess.run(
        ["rsync", "--no-whole-file", "--ignore-times", "--stats", str(src / "f"), str(dst / "f")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = re.search(r"Total bytes sent: ([\d,]+)", out)
    literal = re.search(r"Literal data: ([\d,]+)", out)
    shutil.rmtree(src)
    shutil.rmtree(dst)
    if total is None or literal is None:
        return None
    return int(total.group(1).replace(",", "")), int(literal.group(1).replace(",", ""))


async def run_change(a: Client, b: Client, change: Change, work: Path, rsync: bool) -> None:
    name = f"delta-{uuid.uuid4().hex[:8]}.bin"
    src, old = work / "a" / name, work / "old.bin"
    dst = work / "b" / name
    src.parent.mkdir(exist_ok=True)
    dst.parent.mkdir(exist_ok=True)
    _random_file(src, change.size)
    shutil.copyfile(src, old)
    await a.put_file(src, name)
    await b.get_file(name, dst)  # B holds the old version
    change.edit(src, change.size)

    blocks = await a._block_pool()
    legacy = getattr(blocks, "wire_sent", None) is None  # an SDK without the counter (main)
    wire0 = blocks.sent_bytes if legacy else blocks.wire_sent
    t0, snap0, cpu0 = time.perf_counter(), tcp_bytes(), time.process_time()
    version = await a.put_file(src, name)
    a_sent, a_recv = tcp_delta(snap0, tcp_bytes())
    a_time, a_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    block_bytes = (blocks.sent_bytes if legacy else blocks.wire_sent) - wire0

    snap0, cpu0, w0, t0 = tcp_bytes(), time.process_time(), _io_written(), time.perf_counter()
    await b.get_file(name, dst)
    _, b_recv = tcp_delta(snap0, tcp_bytes())
    b_cpu, b_writes = time.process_time() - cpu0, _io_written() - w0
    b_time = time.perf_counter() - t0
    same = _digest(dst) == _digest(src)

    print(f"\n{change.name} ({change.size // MiB} MiB, {version.stats.chunks} chunks):")
    print(
        f"  Tessera  A sent {_kb(a_sent)} (blocks {_kb(block_bytes)}, "
        f"{version.stats.chunks_sent} chunks), A recv {_kb(a_recv)}, A cpu {a_cpu:.2f} s, "
        f"{a_time:.2f} s"
    )
    print(
        f"           B recv {_kb(b_recv)}, B cpu {b_cpu:.2f} s, B writes {_kb(b_writes)}, "
        f"{b_time:.2f} s, identical: {same}"
    )
    if rsync:
        stats = rsync_stats(old, src, work)
        if stats is None:
            print("  rsync    not installed")
        else:
            print(f"  rsync    sent {_kb(stats[0])} (literal {_kb(stats[1])})")
    for p in (src, dst, old):
        p.unlink(missing_ok=True)


async def run_compression(a: Client, work: Path, size: int) -> None:
    """Bytes sent for a compressible and an incompressible file of the same size."""
    text = work / "log.txt"
    with text.open("wb") as f:
        i = 0
        while f.tell() < size:
            f.write(
                b"2026-11-30T07:%02d:%02d host%03d GET /api/v1/items/%d 200 %d ms\n"
                % (i // 60 % 60, i % 60, i % 7, i, i % 97)
            )
            i += 1
    noise = work / "noise.bin"
    _random_file(noise, text.stat().st_size)
    print("\ncompression on the wire (new files, nothing to dedup):")
    for path in (text, noise):
        snap0 = tcp_bytes()
        version = await a.put_file(path, f"{path.name}-{uuid.uuid4().hex[:6]}")
        sent, _ = tcp_delta(snap0, tcp_bytes())
        n = path.stat().st_size
        print(
            f"  {path.name:10} {_kb(n)}: A sent {_kb(sent)} ({sent / n:.2f} of its size, "
            f"{version.stats.chunks} chunks)"
        )
        path.unlink()


async def bench(endpoint: str, admin_token: str, work: Path, args: argparse.Namespace) -> None:
    user, password = f"delta{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    async with await Client.connect(endpoint, token=admin_token) as admin:
        await admin.create_user(user, password)
    token = (await Client.login(endpoint, user, password)).token
    async with (
        await Client.connect(endpoint, token=token) as a,
        await Client.connect(endpoint, token=token) as b,
    ):
        for change in _changes(args.scale):
            await run_change(a, b, change, work, not args.no_rsync)
        await run_compression(a, work, int(32 * MiB * args.scale))


def main() -> None:
    """Parse flags, start a cluster if needed, run."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scale", type=float, default=1.0, help="file sizes times this (edits kept)")
    p.add_argument("--no-rsync", action="store_true", help="skip the rsync comparison")
    p.add_argument("--endpoint", help="an existing cluster's metanode (default: start one)")
    p.add_argument("--admin-token", help="its admin token (to create the benchmark user)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="delta-bench-") as tmp:
        work = Path(tmp)
        if args.endpoint:
            token = args.admin_token or os.environ.get("TESSERA_TOKEN", "")
            asyncio.run(bench(args.endpoint, token, work, args))
            return
        from devcluster import LocalCluster

        cluster = LocalCluster.start(work / "cluster", meta_port=0, fast=True)
        try:
            print(f"cluster up in {cluster.healthy_after:.1f} s (3 block nodes, RF=3, loopback)")
            asyncio.run(bench(cluster.meta_address, cluster.admin_token, work, args))
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
