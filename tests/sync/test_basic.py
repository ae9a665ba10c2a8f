"""Two daemons on separate folders: every kind of local change reaches the other device."""

from __future__ import annotations

import os

import pytest

from tests.sync.helpers import converge

pytestmark = pytest.mark.cluster


async def test_create_modify_append_truncate(devices) -> None:
    a, b = await devices(2)
    a.write("hello.txt", b"hello world\n")
    a.write("nested/deeper/deepest/file.bin", os.urandom(300_000))
    a.write("empty.txt", b"")
    t = await converge([a, b])
    assert "nested/deeper/deepest/file.bin" in t and "empty.txt" in t
    assert b.p("hello.txt").read_bytes() == b"hello world\n"

    b.write("hello.txt", b"changed on b\n")
    await converge([a, b])
    assert a.p("hello.txt").read_bytes() == b"changed on b\n"

    with a.p("nested/deeper/deepest/file.bin").open("ab") as f:
        f.write(b"appended" * 1000)
    await converge([a, b])

    with b.p("nested/deeper/deepest/file.bin").open("r+b") as f:
        f.truncate(1234)
    t = await converge([a, b])
    assert a.p("nested/deeper/deepest/file.bin").stat().st_size == 1234
    assert a.counters().get("conflicts", 0) == 0 and b.counters().get("conflicts", 0) == 0


async def test_delete_rename_move_nested(devices) -> None:
    a, b, c = await devices(3)
    a.write("docs/report.txt", b"report v1")
    a.write("docs/sub/notes.md", b"# notes")
    a.write("photos/2024/img1.jpg", os.urandom(50_000))
    a.write("photos/2024/img2.jpg", os.urandom(60_000))
    a.write("trash/me.txt", b"bye")
    (a.p("empty-folder")).mkdir()
    t = await converge([a, b, c])
    assert "empty-folder" in t

    os.rename(b.p("docs/report.txt"), b.p("docs/report-final.txt"))  # rename
    os.rename(b.p("photos/2024"), b.p("docs/2024-photos"))  # move a folder across folders
    os.rename(b.p("docs/sub/notes.md"), b.p("notes.md"))  # move a file up
    b.p("trash/me.txt").unlink()  # delete a file
    b.p("trash").rmdir()  # and its folder
    t = await converge([a, b, c])
    assert set(t) >= {"docs/report-final.txt", "docs/2024-photos/img1.jpg", "notes.md"}
    assert not any(p.startswith(("photos/2024", "trash")) for p in t)
    assert "docs/report.txt" not in t
    moves = b.counters()
    assert moves.get("chunks_sent", 0) == 0, "moves must not re-upload content"
