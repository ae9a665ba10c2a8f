"""File modes: the executable bit is part of a revision; everything else is the user's umask.

A downloaded file gets ``0o666 & ~umask`` (or, replacing a file, that file's read and write
bits), plus, where the revision is executable, execute for whoever may read it and the umask
allows. Only the
owner's execute bit is read from disk: ``chmod +x`` (or ``-x``) is a change to upload.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_umask: int | None = None


def umask() -> int:
    """The process's umask (read once: from /proc where it can be, else set and restored)."""
    global _umask
    with _lock:
        if _umask is None:
            try:
                with open("/proc/self/status", encoding="ascii") as f:
                    line = next(ln for ln in f if ln.startswith("Umask:"))
                _umask = int(line.split()[1], 8)
            except (OSError, StopIteration, ValueError, IndexError):
                _umask = os.umask(0o022)
                os.umask(_umask)
        return _umask


def is_executable(st_mode: int) -> bool:
    """Does this mode make a file executable for its owner?"""
    return bool(st_mode & 0o100)


def file_mode(executable: bool, current: int | None = None) -> int:
    """The permission bits for a file written from a revision.

    Args:
        executable: The revision's executable bit.
        current: The mode of the file being replaced, if any (its read/write bits are kept).
    """
    mask = umask()
    base = (current & 0o666) if current is not None else (0o666 & ~mask)
    return base | ((((base & 0o444) >> 2) & ~mask) if executable else 0)
