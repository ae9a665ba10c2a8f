"""syncd/conflicts.py: conflicted-copy names always fit a name on disk (255 bytes), whatever
the original name or the device label; numbering finds a free name; the rules are pure."""

from __future__ import annotations

import datetime as dt
import unicodedata

import pytest

from syncd.conflicts import copy_name, edits_conflict, free_copy_path, numbered, same_name

DAY = dt.date(2026, 11, 30)
LONG_NAMES = [
    "あ" * 80,  # 240 bytes, valid on the server
    "a" * 240 + ".txt",
    "x." + "e" * 252,  # a huge extension
    "a:b" * 80,  # 240 bytes the server refuses (":"), kept as a local-only conflicted copy
    "trailing dot." * 18 + "end.",  # ends with a dot: also refused by the server's rules
    unicodedata.normalize("NFD", "が" * 40),  # 240 bytes as decomposed on disk
    "é" * 127,  # 254 bytes
]


@pytest.mark.parametrize("name", LONG_NAMES)
@pytest.mark.parametrize("device", ["laptop", "a very long device name " * 10, "日本" * 40, ""])
def test_copy_names_fit_on_disk(name: str, device: str) -> None:
    out = copy_name(name, device, DAY)
    assert len(out.encode()) <= 255
    assert "conflicted copy" in out and out != name
    for n in (2, 99, 9999):
        assert len(numbered(out, n).encode()) <= 255
        assert f"({n})" in numbered(out, n)


def test_copy_name_keeps_the_extension() -> None:
    assert (
        copy_name("report.txt", "laptop", DAY) == "report (conflicted copy, laptop, 2026-11-30).txt"
    )
    assert copy_name("a:b.txt", "laptop", DAY) == "a:b (conflicted copy, laptop, 2026-11-30).txt"


def test_free_copy_path_numbers_past_taken_names() -> None:
    first = "docs/report (conflicted copy, laptop, 2026-11-30).txt"
    taken = {first, "docs/report (conflicted copy, laptop, 2026-11-30) (2).txt"}
    got = free_copy_path("docs/report.txt", "laptop", DAY, taken.__contains__)
    assert got == "docs/report (conflicted copy, laptop, 2026-11-30) (3).txt"
    assert free_copy_path("docs/report.txt", "laptop", DAY, lambda p: False) == first


def test_free_copy_path_gives_up_when_everything_is_taken() -> None:
    with pytest.raises(FileExistsError):
        free_copy_path("a.txt", "laptop", DAY, lambda p: True)


def test_rules() -> None:
    assert not edits_conflict(b"h", b"h") and edits_conflict(b"h", b"i")
    assert same_name("A.txt", "a.TXT")
    assert same_name(unicodedata.normalize("NFD", "é.txt"), "é.txt")
    assert not same_name("a.txt", "b.txt")
