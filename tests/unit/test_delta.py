"""Property tests of the chunk delta codec (``tessera.delta``): exact round trips, refusals."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera import delta

LIMIT = 4 * 1024 * 1024


def _edit(base: bytes, at: int, cut: int, new: bytes) -> bytes:
    at = min(at, len(base))
    return base[:at] + new + base[at + cut :]


@settings(max_examples=60, deadline=None)
@given(base=st.binary(max_size=20_000), target=st.binary(max_size=20_000))
def test_any_base_and_target_round_trip(base: bytes, target: bytes) -> None:
    d = delta.encode(target, delta.signature(base))
    assert delta.apply(base, d, LIMIT) == target


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(0, 200_000),
    at=st.integers(0, 200_000),
    cut=st.integers(0, 5_000),
    new=st.binary(max_size=5_000),
)
def test_local_edits_round_trip_and_stay_small(size: int, at: int, cut: int, new: bytes) -> None:
    base = os.urandom(size)
    target = _edit(base, at, cut, new)
    d = delta.encode(target, delta.signature(base))
    assert delta.apply(base, d, LIMIT) == target
    # An edit costs its own bytes plus a few pieces around it, never the whole chunk again.
    assert len(d) <= len(new) + 6 * delta.PIECE_MAX + 64


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 50_000), seed=st.integers(0, 2**32), data=st.data())
def test_a_corrupted_delta_is_refused_or_rebuilds_other_bytes(
    size: int, seed: int, data: st.DataObject
) -> None:
    base = random.Random(seed).randbytes(size)  # not repetitive: any change shows
    target = _edit(base, len(base) // 2, 10, b"changed!")
    d = bytearray(delta.encode(target, delta.signature(base)))
    i = data.draw(st.integers(0, len(d) - 1))
    d[i] ^= data.draw(st.integers(1, 255))
    try:
        got = delta.apply(base, bytes(d), LIMIT)
    except delta.DeltaError:
        return
    # A flipped literal byte still parses: only the chunk's SHA-256 catches it (the block node
    # checks it, see tests/integration/test_block_delta.py).
    assert got != target


@given(junk=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_apply(junk: bytes) -> None:
    try:
        out = delta.apply(b"base bytes" * 100, junk, 10_000)
    except delta.DeltaError:
        return
    assert len(out) <= 10_000


def test_output_and_copies_are_bounded() -> None:
    base = os.urandom(10_000)
    copy_past_end = delta.MAGIC + bytes([0, 0]) + delta._varint(9_000) + delta._varint(2_000)
    with pytest.raises(delta.DeltaError, match="outside"):
        delta.apply(base, copy_past_end, LIMIT)
    many_copies = (
        delta.MAGIC + bytes([0]) + (bytes([0]) + delta._varint(0) + delta._varint(10_000)) * 20
    )
    with pytest.raises(delta.DeltaError, match="more than"):
        delta.apply(base, many_copies, 100_000)
    bomb = delta.compress(bytes(50_000_000), delta.MAGIC)  # zeros: tiny compressed, huge inflated
    assert len(bomb) < 10_000
    with pytest.raises(delta.DeltaError, match="past"):
        delta.apply(base, bomb, LIMIT)
    with pytest.raises(delta.DeltaError, match="header"):
        delta.apply(base, b"XX", LIMIT)


def test_compress_only_when_it_pays() -> None:
    random = os.urandom(100_000)
    assert delta.compress(random)[0] == 0 and len(delta.compress(random)) == len(random) + 1
    text = b"hello tessera " * 10_000
    packed = delta.compress(text)
    assert packed[0] == 1 and len(packed) < len(text) // 10
    assert delta.decompress(packed, len(text)) == text
    with pytest.raises(delta.DeltaError):
        delta.decompress(packed, len(text) - 1)


def test_signature_check_refuses_malformed() -> None:
    sig = delta.signature(os.urandom(100_000))
    sig.check(LIMIT)
    with pytest.raises(delta.DeltaError):
        delta.Signature(sig.sizes, sig.digests[:-1]).check(LIMIT)
    with pytest.raises(delta.DeltaError):
        delta.Signature((0,), (b"12345678",)).check(LIMIT)
    with pytest.raises(delta.DeltaError):
        delta.Signature((LIMIT + 1,), (b"12345678",)).check(LIMIT)
    with pytest.raises(delta.DeltaError):
        delta.Signature((10,), (b"short",)).check(LIMIT)


def test_pick_bases_takes_both_ends_first_within_the_budget() -> None:
    from client._delta import BASE_BUDGET, MAX_PUT_BASES, pick_bases

    offsets = [i * 1000 for i in range(20)]
    sizes = [1000] * 20
    assert pick_bases(offsets, sizes, 0, 10) == [0]
    assert pick_bases(offsets, sizes, 2500, 1000) == [2, 3]  # spans two old chunks
    assert pick_bases(offsets, sizes, 50_000, 10) == [19]  # past the end: the last one
    assert pick_bases([], [], 0, 10) == []
    wide = pick_bases(offsets, sizes, 500, 15_000)  # 16 overlapping: ends first, then middle
    assert len(wide) == MAX_PUT_BASES and wide[0] == 0 and wide[-1] == 15
    big = [BASE_BUDGET // 2 - 1] * 4
    picked = pick_bases([0, 1, 2, 3], big, 0, 4)  # sizes are what counts
    assert sum(big[i] for i in picked) <= BASE_BUDGET and picked == [0, 3]
