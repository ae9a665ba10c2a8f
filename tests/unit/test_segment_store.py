"""The segment store's own guarantees: synced records, replay, torn tails, compaction, migration.

The contract shared with the other stores is in ``test_block_store.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from blocknode.app import LEGACY_STORE_DIR, STORE_DIR, open_store
from blocknode.asyncstore import AsyncChunkStore, Copy
from blocknode.segstore import HEADER_LEN, INDEX_DIR, SEGMENTS_DIR, SegmentChunkStore
from blocknode.store import ChunkCorrupt, RocksChunkStore


def chunk(data: bytes) -> tuple[bytes, bytes]:
    return hashlib.sha256(data).digest(), data


def segment_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((path / SEGMENTS_DIR).glob("*.seg")))


def test_chunk_is_in_the_segment_file_when_write_returns(tmp_path: Path) -> None:
    s = SegmentChunkStore(tmp_path / "db")
    try:
        for size in (100, 200 * 1024):
            h, data = chunk(os.urandom(size))
            s.put(h, data)
            raw = segment_bytes(tmp_path / "db")
            assert h + len(data).to_bytes(4, "big") in raw
            assert data in raw  # whole, in one piece: reads are one pread
    finally:
        s.close()


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    script = (
        "import hashlib, os, signal, sys\n"
        "from blocknode.segstore import SegmentChunkStore\n"
        "s = SegmentChunkStore(sys.argv[1], segment_size=1_000_000)\n"
        "for i in range(20):\n"
        "    data = bytes([i]) * 300_000\n"
        "    s.put(hashlib.sha256(data).digest(), data)\n"
        "s.write([], [('node-x', hashlib.sha256(bytes([0]) * 300_000).digest())])\n"
        "s.delete(hashlib.sha256(bytes([1]) * 300_000).digest())\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "db")], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    s = SegmentChunkStore(tmp_path / "db")
    try:
        assert s.count() == 19
        assert s.get(chunk(bytes([1]) * 300_000)[0]) is None
        for i in [0, *range(2, 20)]:
            h, data = chunk(bytes([i]) * 300_000)
            assert s.get(h) == data
        assert list(s.hints()) == [("node-x", chunk(bytes([0]) * 300_000)[0])]
    finally:
        s.close()


def _populate(path: Path) -> tuple[list[tuple[bytes, bytes]], bytes]:
    s = SegmentChunkStore(path, segment_size=100_000)
    items = [chunk(os.urandom(30_000 + i)) for i in range(12)]
    s.write(items[:6], hints=[("node-a", items[0][0]), ("node-b", items[1][0])])
    s.write(items[6:])
    s.delete_many([items[2][0], items[7][0]])
    s.finish_hints("node-b", [items[1][0]])
    s.put(items[3][0], items[3][1])  # an overwrite: the old record is garbage
    s.close()
    return items, items[0][0]


def test_lost_index_is_rebuilt_from_the_segments(tmp_path: Path) -> None:
    # What a power cut can leave: the index behind the synced segments (here: all of it gone).
    items, hinted = _populate(tmp_path / "db")
    shutil.rmtree(tmp_path / "db" / INDEX_DIR)
    s = SegmentChunkStore(tmp_path / "db", segment_size=100_000)
    try:
        gone = {items[2][0], items[7][0]}
        assert s.count() == 10
        for h, data in items:
            assert s.get(h) == (None if h in gone else data)
        assert list(s.hints()) == [("node-a", hinted)]
        assert s.hint_count() == 1
    finally:
        s.close()


def test_torn_tail_is_cut_and_writing_goes_on(tmp_path: Path) -> None:
    s = SegmentChunkStore(tmp_path / "db")
    kept = chunk(b"kept" * 1000)
    s.put(*kept)
    s.close()
    [seg] = (tmp_path / "db" / SEGMENTS_DIR).glob("*.seg")
    good = seg.stat().st_size
    torn = chunk(os.urandom(50_000))
    with seg.open("ab") as f:  # a record whose bytes never all reached the disk
        f.write(b"TSP" + torn[0] + (50_000).to_bytes(4, "big") + b"\0\0\0\0" + torn[1][:1000])
    shutil.rmtree(tmp_path / "db" / INDEX_DIR)
    s = SegmentChunkStore(tmp_path / "db")
    try:
        assert seg.stat().st_size == good
        assert s.get(kept[0]) == kept[1]
        assert not s.contains(torn[0])
        s.put(*torn)
        assert s.get(torn[0]) == torn[1]
    finally:
        s.close()


def test_replay_after_a_crash_stops_at_a_bad_chunk(tmp_path: Path) -> None:
    # A put record whose payload does not hash to its key is not taken into the index.
    s = SegmentChunkStore(tmp_path / "db")
    a, b = chunk(os.urandom(5000)), chunk(os.urandom(5000))
    s.write([a, b])
    s.close()
    [seg] = (tmp_path / "db" / SEGMENTS_DIR).glob("*.seg")
    raw = bytearray(seg.read_bytes())
    raw[2 * HEADER_LEN + 5000 + 100] ^= 1  # inside b's payload
    seg.write_bytes(bytes(raw))
    shutil.rmtree(tmp_path / "db" / INDEX_DIR)
    s = SegmentChunkStore(tmp_path / "db")
    try:
        assert s.get(a[0]) == a[1]
        assert not s.contains(b[0])
    finally:
        s.close()


async def test_corruption_is_reported_and_repaired(tmp_path: Path) -> None:
    base = SegmentChunkStore(tmp_path / "db")
    store = AsyncChunkStore(base)
    h, data = chunk(os.urandom(100_000))
    other = chunk(os.urandom(1000))
    await store.put(h, data)
    await store.put(*other)
    [seg] = (tmp_path / "db" / SEGMENTS_DIR).glob("*.seg")
    fd = os.open(seg, os.O_RDWR)
    try:
        os.pwrite(fd, b"\xff", HEADER_LEN + 5000)  # rot in the chunk's bytes
        os.pwrite(fd, b"\x00" * 8, HEADER_LEN + 100_000 + 3)  # rot in the other's header
    finally:
        os.close(fd)
    try:
        assert await store.read(h) == (Copy.CORRUPT, None)
        with pytest.raises(ChunkCorrupt):
            base.get(other[0])
        assert await store.read(other[0]) == (Copy.CORRUPT, None)
        await store.put(h, data)  # the repair: written again, the index points at the new copy
        assert await store.read(h) == (Copy.OK, data)
    finally:
        await store.close()


def test_compaction_moves_live_records_and_removes_the_segment(tmp_path: Path) -> None:
    s = SegmentChunkStore(tmp_path / "db", segment_size=200_000)
    try:
        items = [chunk(os.urandom(40_000 + i)) for i in range(20)]
        for item in items:
            s.put(*item)
        s.write([], [("node-z", items[1][0])])
        assert len(s.segments()) >= 3
        first = min(s.segments())
        assert s.compactable() is None  # nothing deleted yet
        s.delete_many([h for h, _ in items[2:]])
        size_before = sum(size for size, _ in s.segments().values())
        reclaimed, compacted = 0, []
        while (seg := s.compactable()) is not None and len(compacted) < 10:
            assert seg != max(s.segments())  # never the active segment
            reclaimed += s.compact(seg)
            compacted.append(seg)
        assert first in compacted  # it held the two live chunks and the hint
        assert reclaimed > 500_000
        for seg in compacted:
            assert seg not in s.segments()
            assert not (tmp_path / "db" / SEGMENTS_DIR / f"{seg:08d}.seg").exists()
        assert sum(size for size, _ in s.segments().values()) < size_before - 500_000
        assert s.get(items[0][0]) == items[0][1]
        assert s.get(items[1][0]) == items[1][1]
        assert s.count() == 2
    finally:
        s.close()
    s = SegmentChunkStore(tmp_path / "db", segment_size=200_000)
    try:
        assert s.get(items[0][0]) == items[0][1]
        assert list(s.hints()) == [("node-z", items[1][0])]
        assert s.count() == 2
    finally:
        s.close()


async def test_async_store_compacts_after_deletes(tmp_path: Path) -> None:
    base = SegmentChunkStore(tmp_path / "db", segment_size=100_000)
    store = AsyncChunkStore(base)
    items = [chunk(os.urandom(30_000 + i)) for i in range(30)]
    for item in items:
        await store.put(*item)
    segments = len(base.segments())
    await store.delete_many([h for h, _ in items[:-1]])
    for _ in range(200):
        if store.reclaimed and store._compaction is None:
            break
        await asyncio.sleep(0.02)
    assert store.reclaimed > 0
    assert len(base.segments()) < segments
    assert await store.read(items[-1][0]) == (Copy.OK, items[-1][1])
    await store.close()


def test_legacy_rocksdb_store_is_migrated(tmp_path: Path) -> None:
    old = RocksChunkStore(tmp_path / LEGACY_STORE_DIR)
    items = [chunk(os.urandom(n)) for n in (10, 70_000, 300_000)]
    old.write(items, hints=[("node-q", items[1][0])])
    old.close()
    s = open_store(tmp_path)
    try:
        assert not (tmp_path / LEGACY_STORE_DIR).exists()
        assert (tmp_path / STORE_DIR / SEGMENTS_DIR).is_dir()
        for h, data in items:
            assert s.get(h) == data
        assert list(s.hints()) == [("node-q", items[1][0])]
    finally:
        s.close()
