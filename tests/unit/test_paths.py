"""Tests for tessera.paths: remote path and name rules."""

from __future__ import annotations

import datetime
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tessera.paths import (
    MAX_DEPTH,
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    InvalidPath,
    conflicted_copy_name,
    is_ancestor,
    join_path,
    name_key,
    normalize_path,
    numbered_name,
    parent_and_name,
    path_key,
    split_path,
    validate_name,
)

E_NFC = "\u00e9"  # é, precomposed
E_NFD = "e\u0301"  # é, decomposed
DAY = datetime.date(2026, 11, 21)


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


# --- normalize_path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a", "a"),
        ("/a", "a"),
        ("a/", "a"),
        ("/a/b/c.txt/", "a/b/c.txt"),
        ("Docs/R" + E_NFD + "sum" + E_NFD + ".pdf", "Docs/R" + E_NFC + "sum" + E_NFC + ".pdf"),
        (" leading space", " leading space"),
        (".bashrc", ".bashrc"),
        ("a/...x/b", "a/...x/b"),
        ("日本語/ファイル.txt", "日本語/ファイル.txt"),
        ("emoji 👍🏽/x", "emoji 👍🏽/x"),
        ("conference", "conference"),
        ("COM10", "COM10"),
        ("COM0", "COM0"),
        ("lpt", "lpt"),
        ("nul_file", "nul_file"),
    ],
)
def test_normalize_path_accepts(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize("root", ["", "/"])
def test_root(root: str) -> None:
    assert normalize_path(root, allow_root=True) == ""
    with pytest.raises(InvalidPath, match="root"):
        normalize_path(root)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("a//b", "empty segment"),
        ("//a", "empty segment"),
        ("a//", "empty segment"),
        ("//", "empty segment"),
        ("/a//", "empty segment"),
        ("a/../b", "'..'"),
        ("..", "'..'"),
        ("a/./b", "'.'"),
        ("a/b\x00c", "NUL"),
        ("a\\b", "backslash"),
        ("a/b\nc", "U+000A"),
        ("a/b\tc", "U+0009"),
        ("a/b\x7f", "U+007F"),
        ("a/b\x1f", "U+001F"),
        ("a/b:c", "':'"),
        ("a/what?", "'?'"),
        ("a/x*y", "'*'"),
        ('a/"q"', "'\"'"),
        ("a/<b>", "'<'"),
        ("a/b|c", "'|'"),
        ("a/b.", "ends with a dot"),
        ("a/b /c", "ends with a space"),
        ("a/CON/b", "reserved"),
        ("a/\ud800x", "surrogate"),
    ],
)
def test_normalize_path_refuses(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidPath) as info:
        normalize_path(raw, allow_root=True)
    assert fragment in str(info.value)
    assert str(info.value).endswith(".")


def test_error_names_the_segment() -> None:
    with pytest.raises(InvalidPath) as info:
        normalize_path("docs/bad:name/x")
    assert "'bad:name'" in str(info.value)
    assert info.value.segment == "bad:name"
    assert isinstance(info.value, ValueError)


def test_error_shows_control_characters_escaped() -> None:
    with pytest.raises(InvalidPath) as info:
        validate_name("a\nb")
    assert "'a\\nb'" in str(info.value)
    assert "\n" not in str(info.value)


def test_name_length_limit_counts_nfc_utf8_bytes() -> None:
    assert normalize_path("x" * MAX_NAME_BYTES) == "x" * MAX_NAME_BYTES
    with pytest.raises(InvalidPath, match="256 bytes"):
        normalize_path("x" * (MAX_NAME_BYTES + 1))
    # 127 two-byte characters = 254 bytes; decomposed they are 381 bytes, but NFC is measured.
    assert validate_name(E_NFD * 127) == E_NFC * 127
    with pytest.raises(InvalidPath, match="over the limit of 255"):
        validate_name(E_NFC * 128)
    with pytest.raises(InvalidPath):
        validate_name("😀" * 64)  # 256 bytes


def test_path_length_limit() -> None:
    name = "x" * 255
    path = "/".join([name] * 16)  # 16 * 256 - 1 = 4095 bytes
    assert normalize_path(path) == path
    with pytest.raises(InvalidPath, match=f"limit of {MAX_PATH_BYTES}"):
        normalize_path(path + "/yy")
    with pytest.raises(InvalidPath, match="limit"):
        normalize_path("a" * 10_000_000)


def test_depth_limit() -> None:
    assert normalize_path("/".join(["a"] * MAX_DEPTH)) == "/".join(["a"] * MAX_DEPTH)
    with pytest.raises(InvalidPath, match="deep"):
        normalize_path("/".join(["a"] * (MAX_DEPTH + 1)))


def test_type_errors() -> None:
    with pytest.raises(TypeError):
        normalize_path(b"a")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        validate_name(None)  # type: ignore[arg-type]


# --- validate_name ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "CON",
        "con",
        "Prn",
        "aux",
        "NUL",
        "nul.txt",
        "NUL.tar.gz",
        "con .txt",
        "COM1",
        "com9.log",
        "LPT1",
        "lpt9",
        "COM\u00b9",
        "lpt\u00b2.txt",
        "COM\u00b3",
    ],
)
def test_reserved_device_names(name: str) -> None:
    with pytest.raises(InvalidPath, match="reserved on Windows"):
        validate_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a.", "a ", "...", " "])
def test_validate_name_refuses(name: str) -> None:
    with pytest.raises(InvalidPath):
        validate_name(name)


def test_validate_name_returns_nfc() -> None:
    assert validate_name("caf" + E_NFD) == "caf" + E_NFC
    assert validate_name("\u212b") == "\u00c5"  # ANGSTROM SIGN -> Å


def test_c1_controls_and_format_characters_are_accepted() -> None:
    # Only ASCII controls are refused; these are legal on Windows, macOS and Linux.
    assert validate_name("a\x85b") == "a\x85b"
    assert validate_name("a\u200bb") == "a\u200bb"


# --- split, join, parent ----------------------------------------------------------------------


def test_split_join_parent() -> None:
    assert split_path("") == []
    assert split_path("a") == ["a"]
    assert split_path("a/b/c.txt") == ["a", "b", "c.txt"]
    assert join_path() == ""
    assert join_path("", "a", "", "b/c") == "a/b/c"
    assert join_path("", "") == ""
    assert parent_and_name("a/b/c.txt") == ("a/b", "c.txt")
    assert parent_and_name("x") == ("", "x")
    with pytest.raises(InvalidPath):
        parent_and_name("")


# --- keys -------------------------------------------------------------------------------------


def test_name_key_collisions() -> None:
    assert name_key("A.txt") == name_key("a.txt")
    assert name_key(E_NFD) == name_key(E_NFC) == name_key("\u00c9") == name_key("E\u0301")
    assert name_key("Stra\u00dfe") == name_key("STRASSE")
    assert name_key("\u0131") == name_key("I") == name_key("i")  # Windows folds ı to I
    assert name_key("\u1fb7") == name_key("\u1fb7".upper()) == name_key("\u1fb7".title())
    assert name_key("a.txt") != name_key("a.txt.bak")
    key = name_key("Caf" + E_NFD)
    assert key == unicodedata.normalize("NFC", key)


def test_path_key_and_is_ancestor() -> None:
    assert path_key("") == ""
    assert path_key("Docs/R" + E_NFD + "SUM" + E_NFC) == path_key("docs/r" + E_NFC + "sum" + E_NFC)
    assert is_ancestor("A", "a/b")
    assert is_ancestor("", "a")
    assert is_ancestor("Docs", "docs/x/y")
    assert not is_ancestor("a", "a")
    assert not is_ancestor("A", "a")
    assert not is_ancestor("", "")
    assert not is_ancestor("a", "ab")
    assert not is_ancestor("a/b", "a")
    assert not is_ancestor("a/b", "a/c/d")


# --- conflicted copies and numbered names -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.txt", "report (conflicted copy, laptop, 2026-11-21).txt"),
        ("archive.tar.gz", "archive.tar (conflicted copy, laptop, 2026-11-21).gz"),
        (".bashrc", ".bashrc (conflicted copy, laptop, 2026-11-21)"),
        (".config.json", ".config (conflicted copy, laptop, 2026-11-21).json"),
        ("Makefile", "Makefile (conflicted copy, laptop, 2026-11-21)"),
    ],
)
def test_conflicted_copy_name(name: str, expected: str) -> None:
    assert conflicted_copy_name(name, "laptop", DAY) == expected


def test_conflicted_copy_name_accepts_datetime() -> None:
    when = datetime.datetime(2026, 11, 21, 23, 59, tzinfo=datetime.UTC)
    assert conflicted_copy_name("a.txt", "pc", when) == "a (conflicted copy, pc, 2026-11-21).txt"


@pytest.mark.parametrize(
    ("device", "label"),
    [
        ('Bob\'s Mac: "work"/home\\x', "Bob's Mac_ _work__home_x"),
        ("  two\n lines\t", "two lines"),
        ("", "unknown device"),
        (" \x00 ", "_"),
        ("\n\t", "unknown device"),
    ],
)
def test_device_label_is_sanitised(device: str, label: str) -> None:
    result = conflicted_copy_name("r.txt", device, DAY)
    assert result == f"r (conflicted copy, {label}, 2026-11-21).txt"
    assert validate_name(result) == result


def test_conflicted_copy_name_truncates_stem_on_utf8_boundary() -> None:
    name = "é" * 120 + ".txt"  # 244 bytes
    result = conflicted_copy_name(name, "laptop", DAY)
    assert nbytes(result) <= MAX_NAME_BYTES
    assert result.endswith(" (conflicted copy, laptop, 2026-11-21).txt")
    assert result.startswith("é" * 50)
    assert validate_name(result) == result


def test_conflicted_copy_name_with_huge_extension_and_device() -> None:
    name = "a." + "x" * 250
    result = conflicted_copy_name(name, "D" * 500, DAY)
    assert nbytes(result) <= MAX_NAME_BYTES
    assert result.startswith("a.xxx")
    assert result.endswith(f" (conflicted copy, {'D' * 64}, 2026-11-21)")


def test_conflicted_copy_name_refuses_invalid_input() -> None:
    with pytest.raises(InvalidPath):
        conflicted_copy_name("a/b", "laptop", DAY)


def test_numbered_name() -> None:
    assert numbered_name("Docs", 2) == "Docs (2)"
    assert numbered_name("photo.jpg", 2) == "photo (2).jpg"
    assert numbered_name(".env", 3) == ".env (3)"
    assert numbered_name("x" * 255, 12) == "x" * 250 + " (12)"
    with pytest.raises(ValueError):
        numbered_name("Docs", 0)
    with pytest.raises(ValueError):
        numbered_name("Docs", 10**300)
    with pytest.raises(InvalidPath):
        numbered_name("CON", 2)


# --- properties -------------------------------------------------------------------------------

# Names drawn from a mix of ASCII, Latin with combining marks, Greek, CJK, Turkish i's, emoji,
# and the characters the rules care about, so that both valid and invalid names are frequent.
_tricky = st.sampled_from(
    list("aAzZ09 .-_()[],;'~!@#$%^&+=")
    + ["\u00e9", "e\u0301", "\u00df", "\u1e9e", "\u0131", "\u0130", "\u1fb7", "\u0345", "\u212b"]
    + ["日", "本", "😀", "👍🏽", "\u200d", "\u00b9", "\u00b2"]
    + ["/", "\\", ":", "*", "?", '"', "<", ">", "|", "\x00", "\n", "\x7f", "\udc80"]
    + ["CON", "nul", "com", "LPT", "1"]
)
_raw_names = st.lists(_tricky, min_size=0, max_size=12).map("".join)
# Arbitrary text, including unpaired surrogates (as os.fsdecode can produce).
_any_text = st.text(st.one_of(st.characters(), st.sampled_from(["\ud800", "\udc80"])), max_size=40)


def _valid(name: str) -> bool:
    try:
        validate_name(name)
    except InvalidPath:
        return False
    return True


_valid_names = st.one_of(
    _raw_names,
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=300),
).filter(_valid)
# Long names near the byte limit, mostly multi-byte, to exercise truncation on UTF-8 boundaries.
_long_names = (
    st.lists(
        st.sampled_from(["é", "e\u0301", "日", "😀", "👍🏽", "ß", "a", ".", " "]),
        min_size=40,
        max_size=200,
    )
    .map("".join)
    .map(
        lambda t: (
            unicodedata.normalize("NFC", t).encode()[:MAX_NAME_BYTES].decode("utf-8", "ignore")
        )
    )
    .map(lambda t: t.rstrip(". ") or "x")
    .filter(_valid)
)
_valid_paths = (
    st.lists(_valid_names, min_size=1, max_size=8)
    .map("/".join)
    .filter(lambda p: nbytes(unicodedata.normalize("NFC", p)) <= MAX_PATH_BYTES)
)
_fast = settings(max_examples=200, deadline=None)


@_fast
@given(st.one_of(_any_text, st.lists(_raw_names, max_size=5).map("/".join)))
@example("/a/")
@example("a\ud800")
def test_normalize_path_is_idempotent_and_output_is_valid(raw: str) -> None:
    try:
        out = normalize_path(raw, allow_root=True)
    except InvalidPath as exc:
        assert str(exc)
        return
    assert normalize_path(out, allow_root=True) == out
    assert not out.startswith("/") and not out.endswith("/")
    assert out == unicodedata.normalize("NFC", out)
    assert nbytes(out) <= MAX_PATH_BYTES
    for segment in split_path(out):
        assert validate_name(segment) == segment
        assert nbytes(segment) <= MAX_NAME_BYTES


@_fast
@given(_valid_paths)
def test_join_split_round_trip(path: str) -> None:
    norm = normalize_path(path)
    assert join_path(*split_path(norm)) == norm
    assert normalize_path("/" + path + "/") == norm
    parent, name = parent_and_name(norm)
    assert join_path(parent, name) == norm
    assert is_ancestor(parent, norm)
    assert not is_ancestor(norm, norm)
    assert path_key(norm) == "/".join(name_key(s) for s in split_path(norm))


@_fast
@given(st.one_of(_valid_names, _long_names))
def test_name_key_is_case_and_normalisation_insensitive(name: str) -> None:
    key = name_key(name)
    for variant in (
        name.upper(),
        name.lower(),
        name.casefold(),
        name.swapcase(),
        unicodedata.normalize("NFD", name),
        unicodedata.normalize("NFC", name),
        unicodedata.normalize("NFD", name.upper()),
    ):
        assert name_key(variant) == key
    assert name_key(key) == key


@_fast
@given(
    st.one_of(_valid_names, _long_names),
    st.one_of(_any_text, st.text(min_size=50, max_size=300)),
    st.dates(),
)
def test_conflicted_copy_name_is_always_valid(name: str, device: str, day: datetime.date) -> None:
    result = conflicted_copy_name(name, device, day)
    assert validate_name(result) == result
    assert nbytes(result) <= MAX_NAME_BYTES
    assert f", {day.isoformat()})" in result
    assert name_key(result) != name_key(name)


@_fast
@given(st.one_of(_valid_names, _long_names), st.integers(min_value=1, max_value=10**12))
def test_numbered_name_is_always_valid(name: str, n: int) -> None:
    result = numbered_name(name, n)
    assert validate_name(result) == result
    assert nbytes(result) <= MAX_NAME_BYTES
    assert f" ({n})" in result
    assert name_key(result) != name_key(name)
