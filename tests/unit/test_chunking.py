"""Chunking: streaming equals whole-file FastCDC, bounds hold, an insert changes few chunks."""

import io
import random

from fastcdc import fastcdc
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.chunking import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK, chunk_hash, iter_chunks


def _data(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def test_streaming_matches_whole_file_chunking() -> None:
    data = _data(24 * 1024 * 1024)
    streamed = [(c.offset, c.size) for c in iter_chunks(io.BytesIO(data))]
    whole = [
        (c.offset, c.length)
        for c in fastcdc(data, min_size=MIN_CHUNK, avg_size=AVG_CHUNK, max_size=MAX_CHUNK)
    ]
    assert streamed == whole


@settings(max_examples=25, deadline=None)
@given(size=st.integers(min_value=0, max_value=9 * 1024 * 1024), seed=st.integers(0, 1000))
def test_chunks_reassemble_and_respect_bounds(size: int, seed: int) -> None:
    data = _data(size, seed)
    chunks = list(iter_chunks(io.BytesIO(data)))
    assert b"".join(c.data for c in chunks) == data
    for i, c in enumerate(chunks):
        assert c.hash == chunk_hash(c.data)
        assert c.size <= MAX_CHUNK
        if i < len(chunks) - 1:
            assert c.size >= MIN_CHUNK


def test_insert_in_the_middle_changes_few_chunks() -> None:
    data = _data(32 * 1024 * 1024, 7)
    edited = data[: 16 * 1024 * 1024] + b"hello tessera" + data[16 * 1024 * 1024 :]
    before = {c.hash for c in iter_chunks(io.BytesIO(data))}
    after = [c.hash for c in iter_chunks(io.BytesIO(edited))]
    changed = [h for h in after if h not in before]
    assert 1 <= len(changed) <= 2
