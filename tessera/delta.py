"""Chunk deltas: a signature of a base chunk, a delta of a target against it, and its application.

The signature cuts the base with content-defined chunking at a fine grain (FastCDC, pieces of
512 B to 8 KiB, 2 KiB on average) and lists each piece's size and a 64-bit BLAKE2b. Whoever
holds the target cuts it the same way: a piece whose digest is in the signature becomes a COPY
of the base's bytes, any other piece a LITERAL. Cut points depend only on nearby content, so
after an insert or a shifted overwrite the pieces line up again within a few KiB, which is the
property rsync gets from its rolling checksum, at C speed (the FastCDC gear hash) rather than a
per-byte Python loop. A 64-bit digest can collide; the rebuilt chunk is always checked against
its SHA-256, and a mismatch is refused (the sender then falls back to the whole chunk).

A delta is ``MAGIC`` + one format byte (raw or zstd) + a stream of ops::

    0x00 varint(base_offset) varint(length)   COPY length bytes of the base from base_offset
    0x01 varint(length) bytes                 LITERAL

``apply`` trusts nothing: every varint, offset and length is bounds-checked, the output may not
pass ``limit`` bytes, and the zstd frame may not decompress past the bound either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import zstandard
from fastcdc import fastcdc

__all__ = [
    "DeltaError",
    "Signature",
    "apply",
    "compress",
    "compress_if_worth",
    "decompress",
    "encode",
    "signature",
]

PIECE_MIN = 512
PIECE_AVG = 2048
PIECE_MAX = 8192
DIGEST = 8  # bytes of BLAKE2b per piece
MAGIC = b"TD1"
_RAW, _ZSTD = 0, 1
_COPY, _LITERAL = 0, 1
ZSTD_LEVEL = 3
MIN_GAIN = 0.9  # compressed output is used only when it is under this fraction of the input


class DeltaError(ValueError):
    """A delta, signature or compressed payload that is malformed or does not fit its base."""


@dataclass(frozen=True)
class Signature:
    """What a target needs to be encoded against a base: piece sizes and digests, in order."""

    sizes: tuple[int, ...]
    digests: tuple[bytes, ...]

    def check(self, limit: int) -> None:
        """Raise DeltaError unless this is a signature of at most ``limit`` bytes."""
        if len(self.sizes) != len(self.digests):
            raise DeltaError("a signature needs one digest per piece")
        if len(self.sizes) > limit // PIECE_MIN + 1:
            raise DeltaError(f"a signature has at most {limit // PIECE_MIN + 1} pieces")
        if any(len(d) != DIGEST for d in self.digests):
            raise DeltaError(f"signature digests are {DIGEST} bytes")
        if any(s <= 0 for s in self.sizes) or sum(self.sizes) > limit:
            raise DeltaError(f"signature pieces must be non-empty and total at most {limit} bytes")


def _digest(piece: bytes | memoryview) -> bytes:
    return hashlib.blake2b(piece, digest_size=DIGEST).digest()


def _pieces(data: bytes) -> Iterator[tuple[int, int]]:
    if not data:
        return
    for c in fastcdc(data, min_size=PIECE_MIN, avg_size=PIECE_AVG, max_size=PIECE_MAX, fat=False):
        yield c.offset, c.length


def signature(base: bytes) -> Signature:
    """The signature of a base chunk."""
    view = memoryview(base)
    sizes: list[int] = []
    digests: list[bytes] = []
    for off, n in _pieces(base):
        sizes.append(n)
        digests.append(_digest(view[off : off + n]))
    return Signature(tuple(sizes), tuple(digests))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode(target: bytes, sig: Signature) -> bytes:
    """A delta that rebuilds ``target`` from the base ``sig`` describes (zstd when it helps)."""
    where: dict[bytes, int] = {}
    pos = 0
    for size, d in zip(sig.sizes, sig.digests, strict=True):
        where.setdefault(d, pos)
        pos += size
    view = memoryview(target)
    ops: list[tuple[int, int, int]] = []  # (kind, base offset or target offset, length)
    for off, n in _pieces(target):
        at = where.get(_digest(view[off : off + n]))
        kind, start = (_LITERAL, off) if at is None else (_COPY, at)
        if ops and ops[-1][0] == kind and ops[-1][1] + ops[-1][2] == start:
            ops[-1] = (kind, ops[-1][1], ops[-1][2] + n)  # contiguous: extend
        else:
            ops.append((kind, start, n))
    body = bytearray()
    for kind, start, n in ops:
        if kind == _COPY:
            body += bytes([_COPY]) + _varint(start) + _varint(n)
        else:
            body += bytes([_LITERAL]) + _varint(n) + view[start : start + n]
    return compress(bytes(body), MAGIC)


def compress(data: bytes, prefix: bytes = b"") -> bytes:
    """``prefix`` + format byte + ``data``, zstd-compressed only when that saves 10%."""
    packed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    if len(packed) < MIN_GAIN * len(data):
        return prefix + bytes([_ZSTD]) + packed
    return prefix + bytes([_RAW]) + data


def decompress(blob: bytes, limit: int, prefix: bytes = b"") -> bytes:
    """The inverse of ``compress``; refuses anything that would pass ``limit`` bytes."""
    if not blob.startswith(prefix) or len(blob) < len(prefix) + 1:
        raise DeltaError("not a Tessera delta (bad header)")
    fmt, body = blob[len(prefix)], blob[len(prefix) + 1 :]
    if fmt == _RAW:
        if len(body) > limit:
            raise DeltaError(f"payload over {limit} bytes")
        return body
    if fmt != _ZSTD:
        raise DeltaError(f"unknown payload format {fmt}")
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(body)
        out = reader.read(limit + 1)
    except zstandard.ZstdError as e:
        raise DeltaError(f"bad zstd payload: {e}") from None
    if len(out) > limit:
        raise DeltaError(f"payload decompresses past {limit} bytes")
    return out


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(buf):
            raise DeltaError("truncated delta")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7
        if shift > 35:
            raise DeltaError("varint too long in delta")


def apply(base: bytes, delta: bytes, limit: int) -> bytes:
    """Rebuild a target from ``base`` and ``delta``; at most ``limit`` bytes (DeltaError else)."""
    # A literal op costs at least one header byte, so the op stream is bounded by limit plus
    # a few bytes per op; 2x limit is generous and still refuses a decompression bomb.
    body = decompress(delta, 2 * limit + 64, MAGIC)
    out = bytearray()
    i = 0
    while i < len(body):
        kind = body[i]
        i += 1
        if kind == _COPY:
            start, i = _read_varint(body, i)
            n, i = _read_varint(body, i)
            if n == 0 or start + n > len(base):
                raise DeltaError(
                    f"copy of {n} bytes at {start} is outside the {len(base)}-byte base"
                )
            piece = base[start : start + n]
        elif kind == _LITERAL:
            n, i = _read_varint(body, i)
            if n == 0 or i + n > len(body):
                raise DeltaError("truncated literal in delta")
            piece = body[i : i + n]
            i += n
        else:
            raise DeltaError(f"unknown delta op {kind}")
        if len(out) + n > limit:
            raise DeltaError(f"delta rebuilds more than {limit} bytes")
        out += piece
    return bytes(out)


SAMPLE = 64 * 1024


def compress_if_worth(data: bytes) -> bytes | None:
    """``compress(data)`` when it saves 10%, else None; a 64 KiB sample decides first, so
    incompressible chunks (media, archives, encrypted) cost one small trial and nothing more."""
    if len(data) < 4096:
        return None
    if len(data) > 2 * SAMPLE:
        sample = data[len(data) // 2 : len(data) // 2 + SAMPLE]
        if len(zstandard.ZstdCompressor(level=1).compress(sample)) >= MIN_GAIN * len(sample):
            return None
    packed = compress(data)
    return packed if packed[0] == _ZSTD else None
