"""Every conflict rule of the sync engine, in one place: who wins, and what the loser is called.

The rules (Dropbox's, see DESIGN.md "Rules users rely on"):

- Two edits of one file: the server orders them. The edit committed first wins; the other
  device's commit names a stale parent and fails, and that device keeps its bytes as a
  conflicted copy beside the winner (``Loser.EDIT``). Equal bytes are no conflict.
- An edit against a delete: the edit wins, on either side (``edit_beats_delete``).
- A folder delete removes only what the deleting device had seen (the server trims by
  ``seen_seq``); anything added or changed elsewhere survives with the folders on its way.
- A local file at a path where the server has a file this device never had (or an edit of an
  ignored file, which is never uploaded): the local bytes are kept as a conflicted copy and the
  server's file is taken (``Loser.UNTRACKED``).
- A local file where the server has a folder (or the reverse) is a clash, not a conflict: it
  is reported and skipped, both are left as they are (the planner's ``SKIP_KIND``).
- Two local names the server treats as one (case or NFC/NFD twins): the second becomes a
  conflicted copy, never silently dropped.

Names: ``report (conflicted copy, laptop, 2026-11-21).txt``, then `` (2)``, `` (3)``… when
taken. Every name produced fits ``MAX_NAME_BYTES`` (255 UTF-8 bytes) whatever the original:
a 240-byte name, one the server would refuse (a ``:`` in it), or a device label of any length.
Pure functions: no I/O, the date and the "is this name taken" test are given.
"""

from __future__ import annotations

import datetime as dt
import enum
import unicodedata
from collections.abc import Callable

from tessera.paths import MAX_NAME_BYTES, InvalidPath, conflicted_copy_name, numbered_name

MAX_NUMBER = 10_000
"""Numbered candidates tried before giving up on a free conflicted-copy name."""


class Loser(enum.Enum):
    """Why a local version lost and is kept as a conflicted copy."""

    EDIT = "edited on two devices; the other edit reached the server first"
    UNTRACKED = "a local file where the server has another one"
    IGNORED_EDIT = "an edit of an ignored file, overwritten by the server's version"
    TWIN = "a name the server cannot tell apart from another (case or Unicode form)"


def edits_conflict(local_hash: bytes, remote_hash: bytes) -> bool:
    """Two edits of one file conflict unless they wrote the same bytes."""
    return local_hash != remote_hash


def edit_beats_delete() -> bool:
    """An edit against a delete: the edit is kept (on the server and on every device)."""
    return True


def same_name(a: str, b: str) -> bool:
    """Do two names collide on the server (case-insensitive, Unicode-normalised)?"""
    return unicodedata.normalize("NFC", a).casefold() == unicodedata.normalize("NFC", b).casefold()


def _fit(text: str, budget: int) -> str:
    """``text`` cut on a character boundary to at most ``budget`` UTF-8 bytes."""
    out = text.encode("utf-8")[: max(0, budget)].decode("utf-8", "ignore")
    return out.rstrip(" .") or out


def _insert(name: str, label: str) -> str:
    """``label`` before the extension of ``name``, the stem cut so the whole fits 255 bytes
    (for names the server's rules refuse, which ``tessera.paths`` will not handle)."""
    dot = name.rfind(".")
    stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    if len(ext.encode()) > 32:
        stem, ext = name, ""
    stem = _fit(stem, MAX_NAME_BYTES - len(label.encode()) - len(ext.encode()))
    return stem + label + ext


def copy_name(name: str, device: str, day: dt.date) -> str:
    """The conflicted-copy name for ``name`` (a single name, not a path); at most 255 bytes."""
    try:
        out = conflicted_copy_name(name, device, day)
    except (InvalidPath, ValueError):
        label = _fit(" ".join(device.replace("/", "_").split()), 64) or "unknown device"
        out = _insert(name, f" (conflicted copy, {label}, {day.isoformat()})")
    assert len(out.encode()) <= MAX_NAME_BYTES
    return out


def numbered(name: str, n: int) -> str:
    """``name`` numbered ``n`` (``a (2).txt``); at most 255 bytes."""
    try:
        out = numbered_name(name, n)
    except (InvalidPath, ValueError):
        out = _insert(name, f" ({n})")
    assert len(out.encode()) <= MAX_NAME_BYTES
    return out


def free_copy_path(rel: str, device: str, day: dt.date, taken: Callable[[str], bool]) -> str:
    """A conflicted-copy path for ``rel`` in the same folder that ``taken`` says is free.

    Raises:
        FileExistsError: no free name among ``MAX_NUMBER`` candidates.
    """
    folder, _, name = rel.rpartition("/")
    base = copy_name(name, device, day)
    for n in range(1, MAX_NUMBER + 1):
        candidate = base if n == 1 else numbered(base, n)
        path = f"{folder}/{candidate}" if folder else candidate
        if not taken(path):
            return path
    raise FileExistsError(f"no free conflicted-copy name for {rel}")
