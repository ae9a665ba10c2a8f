"""syncd/safefs.py: nothing is ever created, written, renamed, chmodded or deleted through a
symlink or outside the root, whatever the tree looks like, including when a folder is swapped
for a symlink while a file in it is being written."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.safefs import TEMP_SUFFIX, SafeFS, SkipPath, UnsafePath, UnusableName


def snapshot(folder: Path) -> dict[str, tuple[int, bytes | str]]:
    """Everything under a folder: path -> (mode, bytes or link target), without following links."""
    out: dict[str, tuple[int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            s = p.lstat()
            if stat.S_ISLNK(s.st_mode):
                out[str(p.relative_to(folder))] = (s.st_mode, os.readlink(p))
            elif stat.S_ISREG(s.st_mode):
                out[str(p.relative_to(folder))] = (s.st_mode, p.read_bytes())
            else:
                out[str(p.relative_to(folder))] = (s.st_mode, "dir")
    return out


@pytest.fixture
def world(tmp_path: Path) -> tuple[SafeFS, Path, Path]:
    """(fs on root, root, outside): outside holds a/b/c/file.txt and diary.txt."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    (outside / "a/b/c").mkdir(parents=True)
    (outside / "a/b/c/file.txt").write_bytes(b"outside file")
    (outside / "diary.txt").write_bytes(b"dear diary")
    return SafeFS(root), root, outside


def every_write(fs: SafeFS, rel: str) -> list[tuple[str, Callable[[], object]]]:
    """Each mutating primitive aimed at ``rel`` (a file path two or more levels deep)."""
    parent = rel.rpartition("/")[0]

    def temp_commit() -> None:
        with fs.create_temp(rel) as tmp:
            os.write(tmp.fd, b"intruder")
            tmp.commit()

    return [
        ("makedirs", lambda: fs.makedirs(rel)),
        ("makedirs parent", lambda: fs.makedirs(parent)),
        ("create_temp", temp_commit),
        ("rename from", lambda: fs.rename(rel, "moved.txt")),
        ("rename to", lambda: fs.rename("mine.txt", rel)),
        ("unlink", lambda: fs.unlink(rel)),
        ("rmdir", lambda: fs.rmdir(parent)),
        ("set_mode", lambda: fs.set_mode(rel, 0o777)),
        ("open_read", lambda: fs.open_read(rel).close()),
        ("check_writable", lambda: fs.check_writable(rel)),
        ("lstat", lambda: fs.lstat(rel)),
    ]


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_symlink_at_each_component_is_refused(world: tuple[SafeFS, Path, Path], depth: int) -> None:
    fs, root, outside = world
    (root / "mine.txt").write_bytes(b"mine")
    parts = ["a", "b", "c"]
    real = root.joinpath(*parts[:depth])
    real.mkdir(parents=True, exist_ok=True)
    (real / parts[depth]).symlink_to(
        outside.joinpath(*parts[: depth + 1]), target_is_directory=True
    )
    before = snapshot(outside)
    for what, op in every_write(fs, "a/b/c/file.txt"):
        with pytest.raises(UnsafePath) as e:
            op()
        assert e.value.path == "/".join(parts[: depth + 1]), what
        assert "symlink" in str(e.value), what
        assert snapshot(outside) == before, what
    assert (root / "mine.txt").read_bytes() == b"mine"


def test_the_final_symlink_is_never_followed(world: tuple[SafeFS, Path, Path]) -> None:
    fs, root, outside = world
    (root / "link.txt").symlink_to(outside / "diary.txt")
    before = snapshot(outside)
    with pytest.raises(UnsafePath):
        fs.open_read("link.txt")
    with pytest.raises(UnsafePath):
        fs.set_mode("link.txt", 0o777)
    with fs.create_temp("link.txt") as tmp:  # replacing the link replaces the link only
        os.write(tmp.fd, b"new")
        tmp.commit()
    assert (root / "link.txt").read_bytes() == b"new" and not (root / "link.txt").is_symlink()
    assert snapshot(outside) == before
    (root / "link2").symlink_to(outside / "a", target_is_directory=True)
    fs.unlink("link2")  # removes the link, not what it points to
    assert not os.path.lexists(root / "link2") and snapshot(outside) == before


def test_a_file_as_parent_is_refused(world: tuple[SafeFS, Path, Path]) -> None:
    fs, root, _ = world
    (root / "a").write_bytes(b"i am a file")
    for what, op in every_write(fs, "a/b/file.txt"):
        if what in ("rename to",):
            (root / "mine.txt").write_bytes(b"mine")
        with pytest.raises(UnsafePath) as e:
            op()
        assert e.value.path == "a" and "is a file" in str(e.value), what


@pytest.mark.parametrize(
    "rel", ["../escape.txt", "a/../../escape.txt", "/etc/passwd", "a//b", "./x", "a/."]
)
def test_paths_that_leave_the_root_are_refused(world: tuple[SafeFS, Path, Path], rel: str) -> None:
    fs, root, _ = world
    (root / "a").mkdir()
    for what, op in every_write(fs, rel + "/f"):
        with pytest.raises(UnsafePath):
            op()
        assert not (root.parent / "escape.txt").exists(), what


def test_root_replaced_by_a_symlink(world: tuple[SafeFS, Path, Path]) -> None:
    fs, root, outside = world
    os.rename(root, root.parent / "old-root")
    root.symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    with pytest.raises(UnsafePath) as e:
        fs.makedirs("a/b/new")
    assert e.value.path == ""
    with pytest.raises(UnsafePath):
        fs.create_temp("diary.txt")
    with pytest.raises(UnsafePath):
        fs.unlink("diary.txt")
    assert snapshot(outside) == before


def test_folder_swapped_for_a_symlink_while_a_file_downloads(
    world: tuple[SafeFS, Path, Path],
) -> None:
    """The race the fd walk exists for: the parent is checked, then replaced by a symlink
    before the rename. Nothing lands outside; the write is refused, not redirected."""
    fs, root, outside = world
    fs.makedirs("a/b/c")
    before = snapshot(outside)
    with fs.create_temp("a/b/c/file.txt") as tmp:
        os.write(tmp.fd, b"downloaded")
        os.rename(root / "a", root / "a-moved")
        (root / "a").symlink_to(outside / "a", target_is_directory=True)
        with pytest.raises(UnsafePath) as e:
            tmp.commit()
        assert e.value.path == "a" and "symlink" in str(e.value)
    assert snapshot(outside) == before
    leftovers = [p for p in (root / "a-moved/b/c").iterdir()]
    assert leftovers == [], "the temporary file is removed when the commit is refused"


def test_folder_moved_away_while_a_file_downloads(world: tuple[SafeFS, Path, Path]) -> None:
    """Even a plain move of the parent out of the root (no symlink) makes the rename refuse."""
    fs, root, _ = world
    fs.makedirs("a/b")
    away = root.parent / "away"
    with fs.create_temp("a/b/file.txt") as tmp:
        os.rename(root / "a", away)
        (root / "a/b").mkdir(parents=True)  # a new, different folder at the same path
        with pytest.raises(UnsafePath):
            tmp.commit()
    assert list(away.rglob("*")) == [away / "b"]
    assert list((root / "a/b").iterdir()) == []


def test_folder_deleted_while_a_file_downloads(world: tuple[SafeFS, Path, Path]) -> None:
    fs, root, _ = world
    fs.makedirs("a/b")
    with fs.create_temp("a/b/file.txt") as tmp:
        os.rename(root / "a", root.parent / "gone")
        with pytest.raises(UnsafePath) as e:
            tmp.commit()
        assert e.value.path == "a/b" and "changed while" in str(e.value)
    assert list((root.parent / "gone/b").iterdir()) == []
    assert not (root / "a").exists()


def test_download_commit_and_check(world: tuple[SafeFS, Path, Path]) -> None:
    fs, root, _ = world
    made = fs.makedirs("x/y")
    assert [p for p, _ in made] == ["x", "x/y"]
    assert fs.makedirs("x/y") == []
    with fs.create_temp("x/y/f.txt") as tmp:
        assert len(tmp.name.encode()) <= 38 and tmp.name.endswith(TEMP_SUFFIX)
        os.write(tmp.fd, b"one")
        seen: list[object] = []
        got = tmp.commit(seen.append)
    assert seen == [None] and got.st_size == 3 and (root / "x/y/f.txt").read_bytes() == b"one"

    class Kept(Exception):
        pass

    def refuse(current: os.stat_result | None) -> None:
        assert current is not None and current.st_size == 3
        raise Kept

    with fs.create_temp("x/y/f.txt") as tmp, pytest.raises(Kept):
        os.write(tmp.fd, b"two!")
        tmp.commit(refuse)
    assert (root / "x/y/f.txt").read_bytes() == b"one"
    assert sorted(p.name for p in (root / "x/y").iterdir()) == ["f.txt"], (
        "no temporary file left behind"
    )


def test_rename_never_replaces(world: tuple[SafeFS, Path, Path]) -> None:
    fs, root, _ = world
    (root / "a.txt").write_bytes(b"a")
    (root / "b.txt").write_bytes(b"b")
    with pytest.raises(FileExistsError):
        fs.rename("a.txt", "b.txt")
    assert (root / "b.txt").read_bytes() == b"b"
    fs.makedirs("sub")
    fs.rename("a.txt", "sub/a.txt")
    assert (root / "sub/a.txt").read_bytes() == b"a" and not (root / "a.txt").exists()


def test_set_mode(world: tuple[SafeFS, Path, Path]) -> None:
    fs, root, _ = world
    (root / "run.sh").write_bytes(b"#!/bin/sh\n")
    st_ = fs.set_mode("run.sh", 0o755)
    assert stat.S_IMODE(st_.st_mode) == 0o755 == stat.S_IMODE((root / "run.sh").stat().st_mode)


def test_long_names_fit_and_too_long_names_are_refused(world: tuple[SafeFS, Path, Path]) -> None:
    fs, root, _ = world
    name240 = "あ" * 80
    name255 = "あ" * 85
    fs.makedirs("d")
    for name in (name240, name255):
        assert len(name.encode()) in (240, 255)
        with fs.create_temp(f"d/{name}") as tmp:
            tmp.commit()
        assert (root / "d" / name).is_file()
    with pytest.raises(UnusableName) as e:
        fs.check_writable("d/" + "x" * 256)
    assert "256 bytes" in str(e.value)
    with pytest.raises(UnusableName):
        fs.create_temp("d/" + "x" * 256)
    with pytest.raises(UnusableName):
        fs.makedirs("d/" + "y" * 256)
    assert sorted(p.name for p in (root / "d").iterdir()) == sorted([name240, name255])


def test_paths_beyond_path_max_are_refused(world: tuple[SafeFS, Path, Path]) -> None:
    fs, root, _ = world
    seg = "s" * 200
    deep = "/".join([seg] * (fs.path_max // 201 + 1))
    with pytest.raises(UnusableName) as e:
        fs.check_writable(deep + "/f.txt")
    assert "longer than this system allows" in str(e.value)
    with pytest.raises(UnusableName):
        fs.makedirs(deep)
    assert fs.lexists(seg)  # the parts that fit were made, nothing more


# -- random trees with symlinks --------------------------------------------------------------
NAMES = st.sampled_from(["a", "b", "c", "diary.txt"])
REL = st.lists(NAMES, min_size=1, max_size=4).map("/".join)
NODE = st.tuples(REL, st.sampled_from(["dir", "file", "link-out", "link-in", "link-file"]))
OPS = st.lists(
    st.tuples(
        st.sampled_from(["makedirs", "temp", "rename", "unlink", "rmdir", "chmod", "read"]),
        REL,
        REL,
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(nodes=st.lists(NODE, max_size=10), ops=OPS)
def test_random_trees_never_touch_outside(
    tmp_path_factory: pytest.TempPathFactory,
    nodes: list[tuple[str, str]],
    ops: list[tuple[str, str, str]],
) -> None:
    base = tmp_path_factory.mktemp("rand")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    for rel in ("a", "a/b", "b/c"):
        (outside / rel).mkdir(parents=True, exist_ok=True)
        (outside / rel / "diary.txt").write_bytes(b"private " + rel.encode())
    for rel, kind in nodes:
        p = root / rel
        if (
            not p.parent.is_dir()
            or p.parent.is_symlink()
            or os.path.lexists(p)
            or not p.parent.resolve().is_relative_to(root)
        ):
            continue
        if kind == "dir":
            p.mkdir()
        elif kind == "file":
            p.write_bytes(b"inside")
        elif kind == "link-out":
            p.symlink_to(outside / "a", target_is_directory=True)
        elif kind == "link-file":
            p.symlink_to(outside / "a" / "diary.txt")
        else:
            p.symlink_to(root, target_is_directory=True)
    before = snapshot(outside)
    fs = SafeFS(root)
    for op, x, y in ops:
        try:
            if op == "makedirs":
                fs.makedirs(x)
            elif op == "temp":
                with fs.create_temp(x) as tmp:
                    os.write(tmp.fd, b"intruder")
                    tmp.commit()
            elif op == "rename":
                fs.rename(x, y)
            elif op == "unlink":
                fs.unlink(x)
            elif op == "rmdir":
                fs.rmdir(x)
            elif op == "chmod":
                fs.set_mode(x, 0o700)
            else:
                with fs.open_read(x) as f:
                    assert f.read() in (b"inside", b"intruder")  # never outside bytes
        except (SkipPath, OSError):
            pass
        assert snapshot(outside) == before, (op, x, y)
