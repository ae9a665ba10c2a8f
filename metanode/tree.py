"""Tree rules as pure functions (no I/O): mounts, moves, renames and clash-free names.

The SQL modules call these; ``tests/unit/test_tree.py`` checks them without a database.
Every comparison of names or paths goes through ``tessera.paths.name_key`` so that
``Docs/A.txt`` and ``docs/a.txt`` (or NFC and NFD spellings) are the same place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tessera.errors import InvalidArgument
from tessera.paths import is_ancestor, join_path, name_key, numbered_name, path_key, split_path

K = TypeVar("K")

MAX_NUMBERED = 1000


@dataclass(frozen=True)
class Mount:
    """A shared namespace mounted at ``path`` in a user's root namespace."""

    ns_id: object
    path: str


def same_path(a: str, b: str) -> bool:
    """True when two normalised paths name the same place (case and normalisation folded)."""
    return path_key(a) == path_key(b)


def within(path: str, top: str) -> bool:
    """True when ``path`` is ``top`` itself or lies inside it."""
    return same_path(path, top) or is_ancestor(top, path)


def relative_to(path: str, top: str) -> str:
    """The part of ``path`` below ``top`` (``""`` for ``top`` itself); ``path`` must be within it."""
    depth = len(split_path(top))
    return join_path(*split_path(path)[depth:])


def find_mount(mounts: Iterable[Mount], path: str) -> Mount | None:
    """The mount whose path is ``path`` or an ancestor of it, if any."""
    for m in mounts:
        if within(path, m.path):
            return m
    return None


def resolve(
    mounts: Iterable[Mount], root: K, path: str, *, into_mount: bool
) -> tuple[K | object, str]:
    """Map a path of a user's root namespace to (namespace, path inside it).

    A path inside a mounted shared folder resolves into the shared namespace. The mount point
    itself resolves into the shared namespace's top (``""``) when ``into_mount`` is set (List,
    Commit, Share), and stays in the root namespace otherwise (Stat, Move, Delete of the mount
    point, which act on the mount entry of the user's own tree).

    Args:
        mounts: The user's mounts (paths in the root namespace).
        root: The user's root namespace id.
        path: A normalised path in the root namespace.
        into_mount: Whether the mount point itself resolves into the shared namespace.

    Returns:
        (namespace id, path inside that namespace).
    """
    m = find_mount(mounts, path)
    if m is None or (not into_mount and same_path(path, m.path)):
        return root, path
    return m.ns_id, relative_to(path, m.path)


def check_move(src: str, dst: str) -> None:
    """Refuse moves of the root and of a folder into itself or below itself.

    Raises:
        InvalidArgument: With a one-line reason.
    """
    if not src or not dst:
        raise InvalidArgument("the root folder cannot be moved, nor replaced")
    if is_ancestor(src, dst):
        raise InvalidArgument(f"cannot move {src} into itself ({dst})")


def rebase(path: str, old_top: str, new_top: str) -> str:
    """``path`` within ``old_top`` rewritten as the same place below ``new_top``."""
    return join_path(new_top, relative_to(path, old_top))


def unique_name(name: str, taken: Iterable[str]) -> str:
    """``name``, or ``name (2)``, ``name (3)``… whichever does not collide with ``taken``.

    Args:
        name: A valid name.
        taken: Names already present in the folder (compared by ``name_key``).

    Raises:
        InvalidArgument: If a thousand numbered variants are all taken.
    """
    keys = {name_key(t) for t in taken}
    if name_key(name) not in keys:
        return name
    for n in range(2, MAX_NUMBERED):
        candidate = numbered_name(name, n)
        if name_key(candidate) not in keys:
            return candidate
    raise InvalidArgument(f"too many entries named like {name!r}")


def kept_after(rows: Iterable[tuple[K, K, int]], seen_seq: int | None) -> set[K]:
    """Of a folder's descendants, those a delete by a device that saw up to ``seen_seq`` keeps.

    Args:
        rows: (id, parent id, head seq) of every live entry below the folder.
        seen_seq: The deleting device's journal cursor; None keeps nothing.

    Returns:
        The ids changed after ``seen_seq`` plus every folder on the way to one of them.
    """
    if seen_seq is None:
        return set()
    rows = list(rows)
    parent = {i: p for i, p, _ in rows}
    keep: set[K] = set()
    for i, _, seq in rows:
        if seq <= seen_seq:
            continue
        while i in parent and i not in keep:
            keep.add(i)
            i = parent[i]
    return keep


def parents_first(paths: Sequence[str]) -> list[int]:
    """Indexes of ``paths`` ordered so that every folder comes before what it contains."""
    return sorted(range(len(paths)), key=lambda i: (len(split_path(paths[i])), path_key(paths[i])))


def children_first(paths: Sequence[str]) -> list[int]:
    """Indexes of ``paths`` ordered deepest first (a folder after everything inside it)."""
    return list(reversed(parents_first(paths)))
