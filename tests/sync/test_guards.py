"""What the daemon must not sync: ignored paths, its own state, symlinks, files still being
written; and the root marker telling an unmounted or missing folder (pause, delete nothing,
resume) from the user's deletes (propagate)."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from syncd.indexer import MARKER
from tests.sync.helpers import Device, converge, tree

pytestmark = pytest.mark.cluster


async def test_ignore_rules_state_dir_and_symlinks(devices, caplog) -> None:
    a, b = await devices(2)
    a.write(".tesseraignore", b"*.tmp\nbuild/\n!keep.tmp\n")
    a.write("notes.txt", b"synced")
    a.write("scratch.tmp", b"ignored")
    a.write("keep.tmp", b"negated: synced")
    a.write("build/out.o", b"ignored folder")
    a.write(".tessera/private", b"never synced")
    os.symlink(a.p("notes.txt"), a.p("link.txt"))
    await converge([a], timeout=30)
    await asyncio.sleep(0.5)
    t = tree(b.folder)
    assert set(t) == {"notes.txt", "keep.tmp"}, t
    assert (b.folder / ".tesseraignore").exists()
    assert any("symlink" in r.getMessage() for r in caplog.records)


async def test_file_still_being_written_waits(devices) -> None:
    a, b = await devices(2, settle=1.0, watch=False, rescan_interval=0.1)
    with a.p("growing.bin").open("wb") as f:
        for _ in range(10):
            f.write(os.urandom(10_000))
            f.flush()
            await asyncio.sleep(0.15)
            assert not b.p("growing.bin").exists(), "uploaded while still being written"
    t = await converge([a, b], timeout=30)
    assert "growing.bin" in t
    assert a.counters().get("chunks_sent") == 1, "one upload of the finished file"


async def _paused(device: Device, timeout: float = 15.0) -> str:
    for _ in range(int(timeout / 0.05)):
        assert device.daemon is not None and device.task is not None
        if device.task.done():
            device.task.result()  # the guard must never stop the daemon
        if device.daemon.paused:
            return device.daemon.paused
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"{device.name} did not pause: {device.daemon.status() if device.daemon else None}"
    )


async def test_emptied_folder_without_its_marker_pauses_and_deletes_nothing(
    devices, tmp_path
) -> None:
    a, b = await devices(2)
    for i in range(5):
        a.write(f"f{i}.txt", b"precious")
    await converge([a, b])
    assert (a.folder / MARKER).is_file()
    await a.stop()
    for child in a.folder.iterdir():  # as if a disk were unmounted under it
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    again = Device("dev0", tmp_path, a.cfg.endpoint, a.cfg.token, settle=0.2)
    await again.start()
    try:
        why = await _paused(again)
        assert "marker" in why and again.daemon is not None and again.daemon.state()[0] == "paused"
        await asyncio.sleep(1.0)
        assert not again.task.done()  # paused, not stopped
        assert len(tree(b.folder)) == 5  # nothing was deleted elsewhere
    finally:
        await again.stop()


async def test_unmounted_folder_pauses_then_resumes_by_itself(devices) -> None:
    a, b = await devices(2)
    for i in range(5):
        a.write(f"docs/f{i}.txt", b"precious")
    await converge([a, b])
    away = a.folder.with_name("away")
    os.rename(a.folder, away)  # unmounted: the mount point is left empty
    a.folder.mkdir()
    await _paused(a)
    b.write("docs/while-away.txt", b"made elsewhere")
    await asyncio.sleep(1.5)
    assert a.daemon is not None and a.daemon.state()[0] == "paused" and not a.daemon.up_to_date
    assert list(a.folder.iterdir()) == []  # nothing written into the bare mount point
    assert len(tree(b.folder)) == 7  # nor deleted anywhere
    a.folder.rmdir()
    os.rename(away, a.folder)  # mounted again
    t = await converge([a, b], timeout=30)
    assert a.daemon.paused == "" and "docs/while-away.txt" in t and len(t) == 7
    assert (a.folder / MARKER).read_text() != (
        b.folder / MARKER
    ).read_text()  # each its own: never synced


async def test_deleting_the_only_top_folder_propagates_and_the_daemon_keeps_running(
    devices,
) -> None:
    a, b = await devices(2)
    for i in range(10):
        for j in range(14):  # 10 folders + 140 files = 150 entries under 0/
            a.write(f"0/d{i}/f{j}.txt", f"{i}/{j}".encode())
    t = await converge([a, b], timeout=60)
    assert len(t) == 151
    shutil.rmtree(a.p("0"))  # the user's own delete: the marker stays
    t = await converge([a, b], timeout=60)
    assert t == {}
    assert a.daemon is not None and a.daemon.paused == ""
