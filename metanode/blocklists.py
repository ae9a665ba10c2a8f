"""Compact binary encoding of a blocklist for the revisions table, and its content hash."""

from __future__ import annotations

import hashlib
import struct

from metanode.model import ChunkRef

_ENTRY = struct.Struct(">32sI")


def encode(chunks: list[ChunkRef]) -> bytes:
    """32-byte hash + 4-byte size per chunk, in order."""
    return b"".join(_ENTRY.pack(c.hash, c.size) for c in chunks)


def decode(raw: bytes) -> list[ChunkRef]:
    return [ChunkRef(h, s) for h, s in _ENTRY.iter_unpack(raw)]


def content_hash(chunks: list[ChunkRef]) -> bytes:
    """SHA-256 over the chunk hashes: equal for equal contents."""
    return hashlib.sha256(b"".join(c.hash for c in chunks)).digest()
