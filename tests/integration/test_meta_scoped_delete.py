"""A folder delete removes only what the deleting device had seen (DESIGN.md "Rules users rely
on"), enforced by the metanode in the delete's own transaction, on the real cluster."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client import ChangeOp, Client, ConflictError
from tests.integration.helpers import new_user
from tests.integration.meta_util import journal, put_bytes, status_of

pytestmark = pytest.mark.cluster


@asynccontextmanager
async def _devices(cluster) -> AsyncIterator[tuple[Client, Client]]:  # type: ignore[no-untyped-def]
    """Two devices X and Y of one fresh user (every SDK client is a device of its own)."""
    _, token = await new_user(cluster.meta_address, cluster.admin_token)
    async with (
        await Client.connect(cluster.meta_address, token=token) as x,
        await Client.connect(cluster.meta_address, token=token) as y,
    ):
        yield x, y


async def _head(c: Client) -> int:
    return next(n.head_seq for n in await c.namespaces() if n.mount_path == "")


async def _live_paths(c: Client, folder: str = "") -> set[str]:
    out: set[str] = set()
    for e in await c.list(folder):
        out.add(e.path)
        if e.is_folder:
            out |= await _live_paths(c, e.path)
    return out


async def test_a_child_newer_than_the_cursor_is_kept(cluster, tmp_path: Path) -> None:
    async with _devices(cluster) as (c, y):
        old = await put_bytes(c, tmp_path, "subdir/old.txt", b"seen by X")
        seen = await _head(c)
        new = await put_bytes(y, tmp_path, "subdir/new.txt", b"added by Y after X looked")
        ns = old.entry.namespace_id

        done = await c.delete_seen("subdir", seen_seq=seen)
        assert done.kept == 1 and not done.entry.deleted and done.entry.path == "subdir"
        assert await _live_paths(c) == {"subdir", "subdir/new.txt"}
        assert (await c.stat("subdir/new.txt")).revision == new.entry.revision
        # The journal names exactly what was deleted: the old file, not the folder, not Y's file.
        after = await journal(c, ns, seen + 1)
        deletes = [ch.entry.path for ch in after if ch.op is ChangeOp.DELETE]
        assert deletes == ["subdir/old.txt"]


async def test_a_cursor_at_the_childs_seq_deletes_it(cluster, tmp_path: Path) -> None:
    async with _devices(cluster) as (c, y):
        await put_bytes(y, tmp_path, "subdir/a.txt", b"a")
        last = await put_bytes(y, tmp_path, "subdir/b.txt", b"b")
        done = await c.delete_seen("subdir", seen_seq=last.entry.seq)
        assert done.kept == 0 and done.entry.deleted
        assert await _live_paths(c) == set()
        # One seq less: b.txt is newer than what the device saw, so it stays.
        await c.restore("subdir/a.txt", (await c.history("subdir/a.txt"))[1].revision)
        b = await put_bytes(y, tmp_path, "subdir/b.txt", b"b again")
        done = await c.delete_seen("subdir", seen_seq=b.entry.seq - 1)
        assert done.kept == 1
        assert await _live_paths(c) == {"subdir", "subdir/b.txt"}


async def test_a_kept_grandchild_keeps_the_chain_of_folders(cluster, tmp_path: Path) -> None:
    async with _devices(cluster) as (c, y):
        await put_bytes(c, tmp_path, "top/mid/low/old.txt", b"old")
        await put_bytes(c, tmp_path, "top/mid/sibling.txt", b"old")
        await put_bytes(c, tmp_path, "top/other/x.txt", b"old")
        seen = await _head(c)
        await put_bytes(y, tmp_path, "top/mid/low/new.txt", b"new")
        done = await c.delete_seen("top", seen_seq=seen)
        assert done.kept == 3  # mid, low, new.txt
        assert await _live_paths(c) == {"top", "top/mid", "top/mid/low", "top/mid/low/new.txt"}


async def test_a_folder_added_after_the_cursor_is_kept_whole(cluster, tmp_path: Path) -> None:
    async with _devices(cluster) as (c, y):
        await put_bytes(c, tmp_path, "top/a.txt", b"a")
        seen = await _head(c)
        await y.make_folder("top/empty-new")
        await put_bytes(y, tmp_path, "top/a.txt", b"a edited elsewhere")
        done = await c.delete_seen("top", seen_seq=seen)
        assert done.kept == 2
        assert await _live_paths(c) == {"top", "top/a.txt", "top/empty-new"}


async def test_file_delete_newer_than_the_cursor_is_a_conflict(cluster, tmp_path: Path) -> None:
    async with _devices(cluster) as (c, y):
        v1 = await put_bytes(c, tmp_path, "f.txt", b"v1")
        await put_bytes(y, tmp_path, "f.txt", b"v2")
        with pytest.raises(ConflictError):
            await c.delete_seen("f.txt", seen_seq=v1.entry.seq)
        # The parent revision check says the same thing for a file.
        assert (
            await status_of(c.delete("f.txt", parent_revision=v1.entry.revision))
            is grpc.StatusCode.ABORTED
        )
        assert (await c.stat("f.txt")).size == 2


async def test_no_cursor_deletes_everything_and_a_retry_returns_the_first_outcome(
    cluster, tmp_path: Path
) -> None:
    async with _devices(cluster) as (c, y):
        await put_bytes(c, tmp_path, "d/a.txt", b"a")
        seen = await _head(c)
        await put_bytes(y, tmp_path, "d/b.txt", b"b")
        op = uuid.uuid4().hex
        first = await c.delete_seen("d", seen_seq=seen, operation_id=op)
        again = await c.delete_seen("d", seen_seq=seen, operation_id=op)
        assert (first.kept, again.kept) == (1, 1) and first.entry == again.entry
        gone = await c.delete("d")  # tessera rm: everything as of now
        assert gone.deleted and await _live_paths(c) == set()


async def test_what_the_deleting_device_wrote_itself_counts_as_seen(
    cluster, tmp_path: Path
) -> None:
    """Its own writes reach a device's cursor later than its disk: they are still its to delete
    (``mkdir build; touch build/x; rm -rf build`` must not bring ``build`` back)."""
    async with _devices(cluster) as (c, y):
        await put_bytes(y, tmp_path, "keep-me.txt", b"unrelated")
        seen = await _head(c)
        await c.make_folder("build")
        await put_bytes(c, tmp_path, "build/x.o", b"object")
        await put_bytes(y, tmp_path, "build/y.o", b"from Y")
        done = await c.delete_seen("build", seen_seq=seen)
        assert done.kept == 1 and await _live_paths(c) == {"keep-me.txt", "build", "build/y.o"}
        await put_bytes(c, tmp_path, "solo/z.o", b"z")
        gone = await c.delete_seen("solo", seen_seq=seen)
        assert gone.kept == 0 and gone.entry.deleted
        assert "solo" not in await _live_paths(c)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    layout=st.lists(
        st.tuples(st.sampled_from(["", "a", "a/b", "c"]), st.sampled_from(["x", "y", "z"])),
        min_size=1,
        max_size=6,
    ),
    cut=st.integers(min_value=0, max_value=6),
)
def test_scoped_delete_keeps_exactly_what_is_newer(cluster, layout, cut) -> None:  # type: ignore[no-untyped-def]
    """Files written after the cursor survive with their folders; everything else goes."""
    import asyncio
    import tempfile

    async def body() -> None:
        async with _devices(cluster) as (c, y):
            with tempfile.TemporaryDirectory() as tmp:
                seqs: dict[str, int] = {}
                written: list[int] = []
                for i, (folder, name) in enumerate(layout):
                    path = "/".join(p for p in ("top", folder, name) if p)
                    v = await put_bytes(y, Path(tmp), path, f"{i}".encode())
                    seqs[path] = v.entry.seq
                    written.append(v.entry.seq)
                # The device saw the first ``cut`` writes (none: a cursor before all of them).
                seen = written[min(cut, len(written)) - 1] if cut else written[0] - 2
                await c.delete_seen("top", seen_seq=seen)
                kept_files = {p for p, s in seqs.items() if s > seen}
                expect = set(kept_files)
                for p in kept_files:
                    parts = p.split("/")
                    expect |= {"/".join(parts[:i]) for i in range(1, len(parts))}
                assert await _live_paths(c) == expect

    asyncio.run(body())
