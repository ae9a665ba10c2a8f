"""Tree rules of the metadata service (metanode/tree.py): pure functions, no database."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metanode.tree import (
    Mount,
    check_move,
    children_first,
    find_mount,
    parents_first,
    rebase,
    relative_to,
    resolve,
    same_path,
    unique_name,
    within,
)
from tessera.errors import InvalidArgument

ROOT = "root-ns"
MOUNTS = (Mount("shared-ns", "Projects/Team"), Mount("photos-ns", "Photos"))


def test_same_path_folds_case_and_normalisation() -> None:
    nfd = unicodedata.normalize("NFD", "café")
    assert same_path("Docs/Café", f"docs/{nfd}")
    assert not same_path("Docs/a", "Docs/b")


def test_within_and_relative_to() -> None:
    assert within("a/b/c", "A/B") and within("a/b", "a/b") and not within("a/bc", "a/b")
    assert relative_to("A/b/c.txt", "a") == "b/c.txt"
    assert relative_to("a", "A") == ""


@pytest.mark.parametrize(
    ("path", "into", "expected"),
    [
        ("Projects/Team/x.txt", True, ("shared-ns", "x.txt")),
        ("projects/team/sub/y", False, ("shared-ns", "sub/y")),
        ("Projects/Team", True, ("shared-ns", "")),
        ("Projects/Team", False, (ROOT, "Projects/Team")),  # the mount point itself
        ("Projects/Teams/x", True, (ROOT, "Projects/Teams/x")),  # a sibling, not inside
        ("Projects", True, (ROOT, "Projects")),
        ("photos/2024/a.jpg", True, ("photos-ns", "2024/a.jpg")),
        ("", True, (ROOT, "")),
    ],
)
def test_resolve_maps_paths_inside_mounts(path: str, into: bool, expected: tuple[str, str]) -> None:
    assert resolve(MOUNTS, ROOT, path, into_mount=into) == expected


def test_find_mount() -> None:
    assert find_mount(MOUNTS, "PHOTOS/x") == MOUNTS[1]
    assert find_mount(MOUNTS, "Documents") is None


@pytest.mark.parametrize(("src", "dst"), [("a", "a/b"), ("A", "a/b/c"), ("", "x"), ("x", "")])
def test_check_move_refuses_cycles_and_the_root(src: str, dst: str) -> None:
    with pytest.raises(InvalidArgument):
        check_move(src, dst)


@pytest.mark.parametrize(("src", "dst"), [("a", "b"), ("a/b", "a"), ("a", "A"), ("a", "ab/c")])
def test_check_move_allows_renames_and_moves_up(src: str, dst: str) -> None:
    check_move(src, dst)


def test_rebase() -> None:
    assert rebase("Projects/Team", "projects", "Archive/Projects") == "Archive/Projects/Team"
    assert rebase("Photos", "Photos", "Pictures") == "Pictures"


def test_unique_name_numbers_clashes_case_insensitively() -> None:
    assert unique_name("Docs", []) == "Docs"
    assert unique_name("Docs", ["docs"]) == "Docs (2)"
    assert unique_name("Docs", ["DOCS", "docs (2)"]) == "Docs (3)"
    assert unique_name("a.txt", ["A.TXT"]) == "a (2).txt"


def test_unique_name_gives_up_after_many() -> None:
    taken = ["x"] + [f"x ({n})" for n in range(2, 1000)]
    with pytest.raises(InvalidArgument):
        unique_name("x", taken)


def test_parents_first_and_children_first() -> None:
    paths = ["a/b/c", "a", "b", "a/b", "A/b/d"]
    order = [paths[i] for i in parents_first(paths)]
    for i, p in enumerate(order):
        for q in order[i + 1 :]:
            assert not within(p, q) or same_path(p, q)  # nothing comes before its folder
    assert [paths[i] for i in children_first(paths)] == list(reversed(order))


segments = st.sampled_from(["a", "B", "c", "Dé", "e.txt"])
paths = st.lists(segments, min_size=1, max_size=4).map("/".join)


@given(paths, paths)
def test_resolve_then_rebuild_is_identity(mount: str, path: str) -> None:
    ns, rest = resolve((Mount("s", mount),), ROOT, path, into_mount=True)
    if ns == "s":
        assert within(path, mount)
        assert same_path("/".join(p for p in (mount, rest) if p), path)
    else:
        assert (ns, rest) == (ROOT, path)


@given(paths, paths, paths)
def test_rebase_keeps_the_relative_part(top: str, new_top: str, tail: str) -> None:
    path = f"{top}/{tail}"
    moved = rebase(path, top, new_top)
    assert within(moved, new_top)
    assert relative_to(moved, new_top) == relative_to(path, top)
