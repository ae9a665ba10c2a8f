"""What the daemon must not sync: ignored paths, its own state, symlinks, files still being
written, and a folder that suddenly emptied (not a mass delete)."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from client._indexer import FolderVanished
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


async def test_suddenly_empty_folder_is_not_a_mass_delete(devices, tmp_path) -> None:
    a, b = await devices(2)
    for i in range(5):
        a.write(f"f{i}.txt", b"precious")
    await converge([a, b])
    await a.stop()
    for child in a.folder.iterdir():                      # as if a disk were unmounted under it
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    again = Device("dev0", tmp_path, a.cfg.endpoint, a.cfg.token, settle=0.2)
    await again.start()
    with pytest.raises(FolderVanished):
        await asyncio.wait_for(again.task, 30)
    again.task = again.daemon = None
    assert len(tree(b.folder)) == 5                        # nothing was deleted elsewhere
