"""Issue 9, failure 3 and selective sync: ignoring a synced folder deletes nothing anywhere, and
excluding a folder from one device removes only that device's copy, once the server has it."""

from __future__ import annotations

import asyncio
import os

import pytest

from client import Client
from syncd.status import request
from tests.sync.helpers import Device, converge, run_cli, tree

pytestmark = pytest.mark.cluster


async def _until(what: str, check, timeout: float = 30.0) -> None:  # noqa: ANN001 - a predicate
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _quiet(devices: list[Device], seconds: float = 1.0) -> None:
    """Let the devices run a while with nothing to do (a delete would have gone out by then)."""
    await _until("idle", lambda: all(d.idle for d in devices))
    await asyncio.sleep(seconds)


async def test_ignoring_a_synced_folder_deletes_nothing(devices, cluster, tmp_path) -> None:
    a, b = await devices(2)
    photos = {f"photos/{i}.jpg": os.urandom(20_000 + i) for i in range(3)}
    for rel, data in photos.items():
        a.write(rel, data)
    a.write("notes.txt", b"notes")
    await converge([a, b])

    a.write(".tesseraignore", b"photos/\n")
    await _until("the ignore file reached b", lambda: b.p(".tesseraignore").exists())
    await _quiet([a, b])
    for d in (a, b):
        assert {k for k in tree(d.folder) if k.startswith("photos/")} == set(photos), d.name

    a.write("photos/0.jpg", b"edited on a, which ignores photos/")
    a.write("photos/new-on-a.jpg", b"never uploaded")
    (a.p("photos/1.jpg")).unlink()  # a local delete: not propagated
    await _quiet([a, b])
    assert b.p("photos/0.jpg").read_bytes() == photos["photos/0.jpg"]
    assert b.p("photos/1.jpg").exists() and not b.p("photos/new-on-a.jpg").exists()

    async with await Client.connect(cluster.meta_address, token=a.cfg.token) as c:
        names = {e.name for e in await c.list("photos")}
        assert names == {"0.jpg", "1.jpg", "2.jpg"}  # the server kept them all
        src = tmp_path / "from-elsewhere.jpg"
        src.write_bytes(b"a remote change under the ignored folder")
        await c.put_file(src, "photos/2.jpg")
    await _until(
        "the remote change came down on both devices",
        lambda: all(d.p("photos/2.jpg").read_bytes() == src.read_bytes() for d in (a, b)),
    )

    c3 = Device(
        "dev9", tmp_path, a.cfg.endpoint, a.cfg.token, settle=0.2
    )  # a new device gets it all
    await c3.start()
    try:
        await _until(
            "the new device downloaded photos/", lambda: set(photos) <= set(tree(c3.folder)), 60
        )
    finally:
        await c3.stop()
    assert a.p("photos/0.jpg").read_bytes() == b"edited on a, which ignores photos/"


async def test_exclude_removes_only_this_copy_and_include_brings_it_back(devices) -> None:
    a, b = await devices(2)
    for i in range(3):
        a.write(f"docs/f{i}.txt", f"doc {i}".encode())
    a.write("keep.txt", b"stays")
    await converge([a, b])

    a.write("docs/only-on-a.txt", b"not uploaded yet")  # excluded before it settles
    a.write(".tesseraignore", b"*.tmp\n")
    a.write("docs/scratch.tmp", b"ignored: the server never has it")
    rc, out = await run_cli(
        "sync", str(a.folder), "--state-dir", str(a.state), "--exclude", "docs/"
    )
    assert rc == 0 and "docs (excluding)" in out, out  # told the running daemon, which goes on
    assert a.daemon is not None and a.task is not None and not a.task.done()
    await _until("docs excluded on a", lambda: a.daemon.selective.paths.get("docs") == "excluded")
    await _quiet([a, b])
    assert b.p("docs/only-on-a.txt").read_bytes() == b"not uploaded yet"  # uploaded before removal
    assert {k for k in tree(a.folder) if k.startswith("docs")} == {"docs", "docs/scratch.tmp"}
    assert {"docs/f0.txt", "docs/f1.txt", "docs/f2.txt"} <= set(tree(b.folder))
    skipped = a.daemon.report()["skipped"]
    assert [s["path"] for s in skipped] == ["docs/scratch.tmp"], skipped

    b.write("docs/from-b.txt", b"made on b while a excludes docs")
    await _quiet([a, b])
    assert not a.p("docs/from-b.txt").exists()
    assert a.daemon.report()["up_to_date"]  # excluded changes do not count

    reply = await request(a.state, {"cmd": "include", "paths": ["docs"]})
    assert reply.get("excluded") == {}, reply
    want = {"docs/f0.txt", "docs/only-on-a.txt", "docs/from-b.txt"}
    await _until("docs back on a", lambda: want <= set(tree(a.folder)))
    await _quiet([a, b])
    on_a = tree(a.folder)
    assert on_a.pop("docs/scratch.tmp")  # kept, still local only
    assert on_a == tree(b.folder)
