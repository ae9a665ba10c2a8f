"""File contents, sizes and edits: plain blocking functions (callers run them in a thread).

Contents are pseudo-random bytes from the caller's seeded ``random.Random``, so no two files
share a chunk by accident and a run is reproducible from its seed. Edits follow what people do
to files: append to a log, insert a line, overwrite a region, or save a whole new version.
"""

from __future__ import annotations

import hashlib
import math
import random
import shutil
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from loadtest.profiles import KiB, MiB, Profile

PIECE = 1 * MiB
FOLDERS = ("docs", "photos", "music", "code", "notes", "projects", "archive", "shared-stuff")
EXTENSIONS = (".txt", ".pdf", ".jpg", ".png", ".docx", ".py", ".mp3", ".zip", ".md", ".bin")


class EditKind(StrEnum):
    APPEND = "append"  # 4–64 KiB at the end (a log, a mailbox)
    INSERT = "insert"  # 100 B–4 KiB in the middle (a line in a document)
    OVERWRITE = "overwrite"  # 4–64 KiB in place (a database page, an image region)
    REWRITE = "rewrite"  # a whole new content of a new size (a re-export)


EDIT_WEIGHTS = {EditKind.APPEND: 3, EditKind.INSERT: 3, EditKind.OVERWRITE: 3, EditKind.REWRITE: 1}


def sample_size(rng: random.Random, profile: Profile) -> int:
    """One file size: log-normal around the median, cut to [1, max_file_bytes]."""
    x = rng.lognormvariate(math.log(profile.median_file_bytes), profile.size_sigma)
    return max(1, min(int(x), profile.max_file_bytes))


def file_name(rng: random.Random, n: int) -> str:
    """A plausible, unique (per ``n``) file name."""
    return f"file-{n:05d}{rng.choice(EXTENSIONS)}"


def write_random(path: Path, size: int, rng: random.Random) -> bytes:
    """Write ``size`` pseudo-random bytes to ``path`` in 1 MiB pieces; returns their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left > 0:
            piece = rng.randbytes(min(left, PIECE))
            digest.update(piece)
            f.write(piece)
            left -= len(piece)
    return digest.digest()


def sha256_file(path: Path) -> bytes:
    """SHA-256 of a file's bytes, read piece by piece."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def _copy_range(src: BinaryIO, dst: BinaryIO, n: int) -> None:
    """Copy ``n`` bytes (fewer at end of file) from ``src``'s position to ``dst``."""
    left = n
    while left > 0:
        piece = src.read(min(left, PIECE))
        if not piece:
            return
        dst.write(piece)
        left -= len(piece)


def apply_edit(
    src: Path, dst: Path, rng: random.Random, profile: Profile, kind: EditKind | None = None
) -> tuple[EditKind, bytes]:
    """Write an edited copy of ``src`` to ``dst``; returns (what was done, SHA-256 of ``dst``).

    The result never exceeds ``profile.max_file_bytes``: an append or insert that would is
    turned into an overwrite. ``src`` is only read.
    """
    size = src.stat().st_size
    if kind is None:
        kind = rng.choices(list(EDIT_WEIGHTS), weights=list(EDIT_WEIGHTS.values()))[0]
    if kind is EditKind.REWRITE:
        return kind, write_random(dst, sample_size(rng, profile), rng)
    if kind is EditKind.APPEND:
        extra = rng.randint(4 * KiB, 64 * KiB)
    elif kind is EditKind.INSERT:
        extra = rng.randint(100, 4 * KiB)
    else:
        extra = 0
    if extra and size + extra > profile.max_file_bytes:
        kind, extra = EditKind.OVERWRITE, 0
    if size == 0 and kind is EditKind.OVERWRITE:
        kind, extra = EditKind.APPEND, min(4 * KiB, profile.max_file_bytes)
    if kind is EditKind.APPEND:
        shutil.copyfile(src, dst)
        with dst.open("ab") as f:
            f.write(rng.randbytes(extra))
    elif kind is EditKind.INSERT:
        at = rng.randint(0, size)
        with src.open("rb") as fin, dst.open("wb") as fout:
            _copy_range(fin, fout, at)
            fout.write(rng.randbytes(extra))
            _copy_range(fin, fout, size - at)
    else:  # OVERWRITE
        n = min(size, rng.randint(4 * KiB, 64 * KiB))
        at = rng.randint(0, size - n)
        shutil.copyfile(src, dst)
        with dst.open("r+b") as f:
            f.seek(at)
            f.write(rng.randbytes(n))
    return kind, sha256_file(dst)


def conflicted_copy_name(path: str, device_id: str, date: str) -> str:
    """``dir/name (conflicted copy, <device>, <date>).ext``, as the design names it."""
    head, sep, name = path.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    return f"{head}{sep}{stem} (conflicted copy, {device_id}, {date}){suffix}"
