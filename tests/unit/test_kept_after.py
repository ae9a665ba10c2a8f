"""``tree.kept_after``: which descendants a delete by a device that saw up to a seq keeps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from metanode.tree import kept_after

TOP = -1


@st.composite
def forests(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    """(id, parent id, head seq) rows below folder TOP; parents come before children."""
    n = draw(st.integers(min_value=0, max_value=25))
    rows: list[tuple[int, int, int]] = []
    for i in range(n):
        parent = draw(st.sampled_from([TOP] + [r[0] for r in rows]))
        rows.append((i, parent, draw(st.integers(min_value=1, max_value=30))))
    return rows


@given(forests(), st.integers(min_value=0, max_value=31))
def test_keeps_the_newer_and_the_folders_on_their_way(rows, seen) -> None:  # type: ignore[no-untyped-def]
    keep = kept_after(rows, seen)
    parent = {i: p for i, p, _ in rows}
    newer = {i for i, _, seq in rows if seq > seen}
    assert newer <= keep
    for i in keep:  # every kept entry is newer or on the way to a newer one, and its parents stay
        assert i in newer or any(_within(j, i, parent) for j in newer)
        assert parent[i] == TOP or parent[i] in keep


def test_none_keeps_nothing_and_equal_seq_is_seen() -> None:
    rows = [(1, TOP, 5), (2, 1, 9)]
    assert kept_after(rows, None) == set()
    assert kept_after(rows, 9) == set()
    assert kept_after(rows, 8) == {1, 2}


def _within(node: int, folder: int, parent: dict[int, int]) -> bool:
    while node in parent:
        node = parent[node]
        if node == folder:
            return True
    return False
