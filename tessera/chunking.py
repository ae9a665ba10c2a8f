"""Content-defined chunking: the one place the FastCDC parameters are fixed.

Chunks average 1 MiB (256 KiB min, 4 MiB max) and are addressed by SHA-256. Chunking streams
through a bounded window, so a file of any size is chunked in about 2 x MAX_CHUNK of memory.
A cut point depends only on the bytes from the chunk's start up to MAX_CHUNK after it, so a
chunk is final once the window holds MAX_CHUNK bytes past its start (or the file ended), and
the result is identical to chunking the whole file at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fastcdc import fastcdc

MIN_CHUNK = 256 * 1024
AVG_CHUNK = 1024 * 1024
MAX_CHUNK = 4 * 1024 * 1024
_WINDOW = 4 * MAX_CHUNK


@dataclass(frozen=True)
class Chunk:
    """One chunk of a file: where it is, its SHA-256 and its bytes."""

    offset: int
    hash: bytes
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


def chunk_hash(data: bytes) -> bytes:
    """The content address of a chunk."""
    return hashlib.sha256(data).digest()


def iter_chunks(stream: BinaryIO) -> Iterator[Chunk]:
    """Yield the chunks of a binary stream in order, holding at most one window in memory."""
    buf = b""
    base = 0  # file offset of buf[0]
    eof = False
    while True:
        if not eof and len(buf) < _WINDOW:
            more = stream.read(_WINDOW - len(buf))
            if more:
                buf += more
                continue
            eof = True
        if not buf:
            return
        consumed = 0
        for c in fastcdc(buf, min_size=MIN_CHUNK, avg_size=AVG_CHUNK, max_size=MAX_CHUNK, fat=True):
            if not eof and len(buf) - c.offset < MAX_CHUNK:
                break
            data = bytes(c.data)
            yield Chunk(base + c.offset, chunk_hash(data), data)
            consumed = c.offset + c.length
        buf = buf[consumed:]
        base += consumed
        if eof and not buf:
            return


def chunk_file(path: Path) -> Iterator[Chunk]:
    """Chunks of a file on disk, streamed."""
    with path.open("rb") as f:
        yield from iter_chunks(f)
