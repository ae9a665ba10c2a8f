"""Contract tests for the chunk stores (in-memory, RocksDB, segment files with a RocksDB index)
and the asyncio front."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocknode.asyncstore import AsyncChunkStore, Copy
from blocknode.segstore import SegmentChunkStore
from blocknode.store import (
    BlockStore,
    ChunkCorrupt,
    ChunkStore,
    MemoryChunkStore,
    RocksChunkStore,
    StoreError,
)


def chunk(data: bytes) -> tuple[bytes, bytes]:
    return hashlib.sha256(data).digest(), data


def open_store(kind: str, path: Path) -> BlockStore:
    if kind == "memory":
        return MemoryChunkStore()
    if kind == "rocks":
        return RocksChunkStore(path)
    return SegmentChunkStore(path)


@pytest.fixture(params=["memory", "rocks", "segment"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlockStore]:
    s = open_store(request.param, tmp_path / "db")
    yield s
    s.close()


def test_implements_protocols(store: BlockStore) -> None:
    assert isinstance(store, ChunkStore)
    assert isinstance(store, BlockStore)


def test_put_get_contains_delete(store: BlockStore) -> None:
    h, data = chunk(b"hello")
    assert store.get(h) is None
    assert not store.contains(h)
    store.put(h, data)
    assert store.get(h) == data
    assert store.contains(h)
    assert store.count() == 1
    store.put(h, data)  # idempotent
    assert store.count() == 1
    assert store.delete(h) is True
    assert store.delete(h) is False
    assert store.get(h) is None
    assert not store.contains(h)
    assert store.count() == 0


def test_large_and_empty_values(store: BlockStore) -> None:
    big_h, big = chunk(os.urandom(4 * 1024 * 1024))
    empty_h, empty = chunk(b"")
    store.put(big_h, big)
    store.put(empty_h, empty)
    assert store.get(big_h) == big
    assert store.get(empty_h) == b""
    assert store.contains(empty_h)


def test_overwrite_repairs(store: BlockStore) -> None:
    h, data = chunk(b"good bytes")
    store.put(h, b"rotten bytes")
    store.put(h, data)
    assert store.get(h) == data
    assert store.count() == 1


def test_scan_ranges(store: BlockStore) -> None:
    keys = sorted(bytes([i]) * 32 for i in (1, 5, 9, 200, 255))
    store.write([(k, b"x") for k in keys])
    assert list(store.scan()) == keys
    assert list(store.scan(bytes([5]))) == keys[1:]
    assert list(store.scan(bytes([5]), bytes([200]))) == keys[1:3]
    assert list(store.scan(b"", bytes([1]))) == []
    assert list(store.scan(bytes([1]) * 32, bytes([1]) * 32 + b"\x00")) == [keys[0]]


def test_write_batch_and_delete_many(store: BlockStore) -> None:
    items = [chunk(os.urandom(100)) for _ in range(10)]
    assert store.write(items) == 10
    assert store.write(items[:3] + [chunk(b"new")]) == 1
    assert store.count() == 11
    assert store.delete_many([h for h, _ in items[:5]] + [b"\x00" * 32]) == 5
    assert store.count() == 6


def test_hints(store: BlockStore) -> None:
    a, b = chunk(b"a"), chunk(b"b")
    store.write([a], hints=[("node-2", a[0])])
    store.write([b], hints=[("node-2", b[0]), ("node-10", b[0])])
    assert store.hint_count() == 3
    assert sorted(store.hints("node-2")) == sorted([("node-2", a[0]), ("node-2", b[0])])
    assert list(store.hints("node-10")) == [("node-10", b[0])]
    assert list(store.hints("node-1")) == []
    assert len(list(store.hints())) == 3
    store.delete_hint("node-2", a[0])
    store.delete_hint("node-2", a[0])
    assert store.hint_count() == 2
    assert store.contains(a[0])  # the chunk stays; only the record goes
    with pytest.raises(ValueError):
        store.write([a], hints=[("bad\x00node", a[0])])


def test_hint_bookkeeping_and_drop_unhinted(store: BlockStore) -> None:
    a, b, c = (chunk(bytes([i]) * 100) for i in range(3))
    store.write([a, b, c], [("n1", a[0]), ("n2", a[0]), ("n1", b[0])])
    assert store.hint_count() == 3
    # Only chunks no hint names go; a chunk two nodes need stays until both are done.
    assert store.drop_unhinted([a[0], b[0], c[0]]) == [c[0]]
    assert store.finish_hints("n1", [a[0], b[0], b"\x09" * 32]) == 2
    assert sorted(store.hints()) == [("n2", a[0])]
    assert store.drop_unhinted([a[0], b[0]]) == [b[0]]
    assert store.finish_hints("n2", [a[0]]) == 1
    assert store.drop_unhinted([a[0], a[0]]) == [a[0]]
    assert store.count() == 0 and store.hint_count() == 0


def test_closed_store_refuses(store: BlockStore) -> None:
    store.close()
    with pytest.raises(StoreError):
        store.get(b"\x00" * 32)
    store.close()  # idempotent


@pytest.mark.parametrize("kind", ["rocks", "segment"])
def test_rocks_durable_across_reopen(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "db"
    items = [chunk(os.urandom(size)) for size in (10, 70 * 1024, 1024 * 1024)]
    s = open_store(kind, path)
    s.write(items, hints=[("node-x", items[0][0])])
    s.delete(items[1][0])
    s.close()
    s = open_store(kind, path)
    try:
        assert s.get(items[0][0]) == items[0][1]
        assert s.get(items[1][0]) is None
        assert s.get(items[2][0]) == items[2][1]
        assert s.count() == 2
        assert list(s.hints()) == [("node-x", items[0][0])]
        assert s.hint_count() == 1
    finally:
        s.close()


def test_rocks_uses_blob_files(tmp_path: Path) -> None:
    s = RocksChunkStore(tmp_path / "db")
    try:
        s.write([chunk(os.urandom(256 * 1024)) for _ in range(8)])
        s._db.flush()
    finally:
        s.close()
    assert list((tmp_path / "db").glob("*.blob"))


def test_rocks_second_open_fails_cleanly(tmp_path: Path) -> None:
    s = RocksChunkStore(tmp_path / "db")
    try:
        with pytest.raises(StoreError, match="cannot open"):
            RocksChunkStore(tmp_path / "db")
    finally:
        s.close()


@pytest.mark.parametrize("kind", ["memory", "rocks", "segment"])
async def test_async_store_group_commits(kind: str, tmp_path: Path) -> None:
    base = open_store(kind, tmp_path / "db")
    store = AsyncChunkStore(base)
    items = [chunk(os.urandom(64 * 1024)) for _ in range(50)]
    await asyncio.gather(*(store.put(h, d) for h, d in items))
    assert store.batches < len(items)
    assert base.count() == 50
    data, intact = await store.get_verified(items[0][0])
    assert (data, intact) == (items[0][1], True)
    assert await store.get_verified(b"\x01" * 32) == (None, False)
    await store.put(items[1][0], b"corrupt", hint_for="node-9")
    assert (await store.get_verified(items[1][0]))[1] is False
    assert list(base.hints()) == [("node-9", items[1][0])]
    assert await store.contains_many([items[2][0], b"\x02" * 32]) == [True, False]
    assert await store.delete_many([h for h, _ in items[:10]]) == 10
    assert await store.get(items[0][0]) is None
    await store.close()
    with pytest.raises(StoreError):
        await store.put(*items[0])


async def test_async_store_survives_a_failed_write(tmp_path: Path) -> None:
    base = MemoryChunkStore()
    store = AsyncChunkStore(base)
    h, d = chunk(b"one")
    await store.put(h, d)
    base.close()  # every further write fails
    with pytest.raises(StoreError):
        await store.put(*chunk(b"two"))
    with pytest.raises(StoreError):
        await store.delete_many([h])
    base._closed = False  # the writer task is still there for the next write
    await store.put(*chunk(b"three"))
    assert base.count() == 2
    await store.close()


async def test_corrupt_blob_is_reported_as_corrupt(tmp_path: Path) -> None:
    h, data = chunk(os.urandom(200 * 1024))
    s = RocksChunkStore(tmp_path / "db")
    s.put(h, data)
    s.close()  # flushes: the bytes are in a blob file now
    [blob] = (tmp_path / "db").glob("*.blob")
    raw = bytearray(blob.read_bytes())
    at = raw.find(data[1000:1100]) + 50
    raw[at] ^= 0x01
    blob.write_bytes(bytes(raw))
    s = RocksChunkStore(tmp_path / "db")
    try:
        assert s.contains(h)
        with pytest.raises(ChunkCorrupt):
            s.get(h)
    finally:
        s.close()
    store = AsyncChunkStore(RocksChunkStore(tmp_path / "db"))
    try:
        assert await store.read(h) == (Copy.CORRUPT, None)
        await store.put(h, data)  # a repair: the chunk written again
        assert await store.read(h) == (Copy.OK, data)
    finally:
        await store.close()


def test_written_chunk_is_in_the_wal_file_when_write_returns(tmp_path: Path) -> None:
    # RocksDB syncs the WAL (WriteOptions.sync) before Write returns: the record is in the WAL
    # file by then.
    s = RocksChunkStore(tmp_path / "db")
    try:
        for size in (100, 200 * 1024):
            h, data = chunk(os.urandom(size))
            s.put(h, data)
            wal = b"".join(p.read_bytes() for p in (tmp_path / "db" / "wal").glob("*.log"))
            assert h in wal
            # The WAL cuts records into 32 KiB blocks, each with a small header: look for the
            # data in pieces, allowing for the pieces that straddle a block boundary.
            pieces = [data[i : i + 1000] for i in range(0, size, 1000)]
            missing = sum(piece not in wal for piece in pieces)
            assert missing <= size // (32 * 1024) + 1
    finally:
        s.close()


def test_rocks_keeps_acknowledged_writes_when_the_process_is_killed(tmp_path: Path) -> None:
    script = (
        "import hashlib, os, signal, sys\n"
        "from blocknode.store import RocksChunkStore\n"
        "s = RocksChunkStore(sys.argv[1])\n"
        "for i in range(20):\n"
        "    data = bytes([i]) * 300_000\n"
        "    s.put(hashlib.sha256(data).digest(), data)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "db")], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    s = RocksChunkStore(tmp_path / "db")
    try:
        assert s.count() == 20
        for i in range(20):
            h, data = chunk(bytes([i]) * 300_000)
            assert s.get(h) == data
    finally:
        s.close()


async def test_hot_chunk_cache_serves_verified_reads_and_forgets_deletes(tmp_path: Path) -> None:
    base = SegmentChunkStore(tmp_path / "db")
    store = AsyncChunkStore(base, cache_bytes=1024 * 1024)
    try:
        items = [chunk(os.urandom(100 * 1024)) for _ in range(12)]
        for h, d in items:
            await store.put(h, d)
        assert await store.read(items[0][0]) == (Copy.OK, items[0][1])  # miss, then cached
        assert (store.cache.hits, store.cache.misses) == (0, 1)
        base.delete(items[0][0])  # behind the cache's back: a hit no longer reads the disk
        assert await store.read(items[0][0]) == (Copy.OK, items[0][1])
        assert store.cache.hits == 1
        assert await store.read(items[0][0], cached=False) == (Copy.MISSING, None)  # scrubbing
        for h, _ in items[1:]:
            await store.read(h)
        assert store.cache.size <= 1024 * 1024  # bounded: the oldest went
        assert await store.read(items[0][0]) == (Copy.MISSING, None)
        await store.delete_many([items[-1][0]])  # a delete drops the cached copy too
        assert await store.read(items[-1][0]) == (Copy.MISSING, None)
        await store.put(*chunk(b"corrupt?"))
        h = items[5][0]
        await store.put(h, b"not the bytes")  # a corrupt copy is never cached
        store.cache.discard([h])
        assert await store.read(h) == (Copy.CORRUPT, None)
        assert store.cache.get(h) is None
    finally:
        await store.close()
