"""The walking skeleton end to end: put, get, ls, subscribe, dedup — on the real cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from client import ChangeOp, Client, Cursor
from tests.integration.helpers import new_user, random_file, same_bytes

pytestmark = pytest.mark.cluster

MiB = 1024 * 1024


async def test_put_get_ls_subscribe_and_dedup(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        # A subscriber opened before the put sees the change.
        seen: list = []
        ready = asyncio.Event()

        async def follow() -> None:
            async for change in c.subscribe(heartbeats=True):
                ready.set()
                if change is not None:
                    seen.append(change)
                    if change.entry.path == "big/data.bin":
                        return

        follower = asyncio.create_task(follow())
        # The first heartbeat or replayed event proves the stream is open; don't wait for a 10 s heartbeat
        # if there is nothing to replay: give the stream a moment to register instead.
        await asyncio.sleep(1.0)

        src = random_file(tmp_path / "data.bin", 50 * MiB)
        first = await c.put_file(src, "big/data.bin")
        assert first.entry.size == 50 * MiB
        assert first.stats.chunks_sent == first.stats.chunks > 10

        await asyncio.wait_for(follower, timeout=30)
        change = [ch for ch in seen if ch.entry.path == "big/data.bin"][-1]
        assert change.op is ChangeOp.UPSERT
        assert change.entry.revision == first.entry.revision
        assert [ch.entry.path for ch in seen][:1] == ["big"]  # the folder was created first
        seqs = [ch.seq for ch in seen]
        assert seqs == list(range(1, len(seqs) + 1))  # gap-free, in order

        out = tmp_path / "out.bin"
        got = await c.get_file("big/data.bin", out)
        assert got.revision == first.entry.revision
        assert same_bytes(src, out)
        assert not list(tmp_path.glob(".out.bin.*"))  # no temporary left behind

        listing = {e.name: e for e in await c.list("big")}
        assert listing["data.bin"].size == 50 * MiB
        top = {e.name: e for e in await c.list("")}
        assert top["big"].is_folder

        # Same bytes again: nothing crosses the wire, and it is a new revision on top.
        again = await c.put_file(src, "big/data.bin")
        assert again.stats.chunks_sent == 0 and again.stats.bytes_sent == 0
        assert again.entry.revision != first.entry.revision
        # The same content under another name also sends nothing (deduplicated).
        copy = await c.put_file(src, "big/copy.bin")
        assert copy.stats.chunks_sent == 0

        changes, cursor, more, resync = await c.list_changes(Cursor(c.root_namespace_id, 0))
        assert [ch.seq for ch in changes] == list(range(1, cursor.seq + 1))
        assert not more and not resync


async def test_empty_and_small_files(cluster, tmp_path: Path) -> None:
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with await Client.connect(cluster.meta_address, token=token) as c:
        empty = tmp_path / "empty"
        empty.write_bytes(b"")
        v = await c.put_file(empty, "empty.txt")
        assert v.entry.size == 0 and v.stats.chunks == 0
        small = tmp_path / "small"
        small.write_bytes(b"hello tessera\n")
        await c.put_file(small, "a/b/c/small.txt")
        await c.get_file("empty.txt", tmp_path / "empty.out")
        await c.get_file("A/B/C/SMALL.TXT", tmp_path / "small.out")  # names are case-insensitive
        assert (tmp_path / "empty.out").read_bytes() == b""
        assert (tmp_path / "small.out").read_bytes() == b"hello tessera\n"
        assert [e.name for e in await c.list("a/b/c")] == ["small.txt"]


async def test_users_do_not_see_each_other(cluster, tmp_path: Path) -> None:
    _, t1 = await new_user(cluster.meta_address, cluster.admin_token)
    _, t2 = await new_user(cluster.meta_address, cluster.admin_token)
    src = random_file(tmp_path / "f", 3 * MiB)
    async with (
        await Client.connect(cluster.meta_address, token=t1) as a,
        await Client.connect(cluster.meta_address, token=t2) as b,
    ):
        await a.put_file(src, "mine.bin")
        assert [e.name for e in await b.list("")] == []
        # B holding the same bytes must upload them itself: no cross-user dedup side channel.
        v = await b.put_file(src, "mine-too.bin")
        assert v.stats.chunks_sent == v.stats.chunks
