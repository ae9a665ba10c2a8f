"""Selective sync: folders (or files) excluded from this device, kept in its state, not synced.

Excluding a path takes two steps. While it is *excluding*, the indexer still walks it, so
anything local-only or modified under it is uploaded first; remote changes under it are no
longer applied. Once nothing under it is queued or settling, every file is hashed and removed
only if the server holds exactly those bytes (its merge base); anything else (ignored files,
uploads that failed, symlinks) is kept and reported as skipped. Then it is *excluded*: not
walked, not downloaded, gone from this disk, untouched on the server and on other devices.
Including it again forgets the exclusion; the next pass downloads what the server has.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from typing import TYPE_CHECKING

from syncd.localdb import FILE, key_of
from syncd.safefs import SafeFS, SkipPath
from tessera.chunking import iter_chunks

if TYPE_CHECKING:
    from syncd.daemon import Daemon

log = logging.getLogger(__name__)

EXCLUDING, EXCLUDED = "excluding", "excluded"
KEPT = "excluded from this device but not on the server: kept here"


class BadPath(ValueError):
    """A path that cannot be excluded (outside the folder, empty, ``..``)."""


def clean_path(path: str) -> str:
    """A folder-relative, "/"-separated path; raises BadPath."""
    parts = [p for p in path.replace(os.sep, "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise BadPath(f"{path!r} is not a path inside the synced folder")
    return "/".join(parts)


def _content_hash(fs: SafeFS, rel: str) -> tuple[bytes, tuple[int, int, int]]:
    """The server's content hash of a file (over its chunk hashes) and the stat it was read at;
    read without following any symlink."""
    with fs.open_read(rel) as f:
        st = os.fstat(f.fileno())
        digest = hashlib.sha256(b"".join(c.hash for c in iter_chunks(f))).digest()
    return digest, (st.st_size, st.st_mtime_ns, st.st_ino)


class Selective:
    """The exclude list of one daemon (``meta.excludes``: path -> state)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self._paths: dict[str, str] = json.loads(daemon.db.get_meta("excludes", "{}"))
        self._recheck: dict[str, int] = {}  # path -> times unsynced files sent back to the indexer

    def _save(self) -> None:
        self.d.db.set_meta("excludes", json.dumps(self._paths, sort_keys=True))

    @property
    def paths(self) -> dict[str, str]:
        """Every excluded path and its state."""
        return dict(self._paths)

    def _states(self, rel: str) -> set[str]:
        key = key_of(rel)
        return {
            state
            for path, state in self._paths.items()
            if key == key_of(path) or key.startswith(key_of(path) + "/")
        }

    def covers(self, rel: str) -> bool:
        """Is ``rel`` at or under an excluded path (either state)? Remote changes there wait."""
        return bool(self._paths) and bool(self._states(rel))

    def hidden(self, rel: str) -> bool:
        """Is ``rel`` at or under a fully excluded path? The indexer does not walk it."""
        return bool(self._paths) and EXCLUDED in self._states(rel)

    def exclude(self, paths: list[str]) -> list[str]:
        """Start excluding paths (folder-relative); returns them cleaned."""
        out = [clean_path(p) for p in paths]
        for p in out:
            if not self._states(p):
                self._paths[p] = EXCLUDING
        self._save()
        self.d.wake()
        return out

    def include(self, paths: list[str]) -> list[str]:
        """Sync paths on this device again; returns them cleaned."""
        out = [clean_path(p) for p in paths]
        for p in out:
            for q in [
                q
                for q in self._paths
                if key_of(q) == key_of(p) or key_of(q).startswith(key_of(p) + "/")
            ]:
                del self._paths[q]
                self.d.db.unskip_under(q)
        self._save()
        self.d.rescan()
        return out

    # -- finishing an exclusion --------------------------------------------------------------
    def _busy(self, path: str) -> bool:
        """Something under ``path`` is still on its way to the server."""
        top = key_of(path)

        def inside(rel: str) -> bool:
            k = key_of(rel)
            return bool(rel) and (k == top or k.startswith(top + "/"))

        if any(inside(op.path) or inside(op.dest) for op in self.d.db.ops()):
            return True
        return any(inside(rel) for rel in self.d.pending_paths())

    async def settle(self) -> int:
        """Finish the exclusions whose contents the server holds; returns how many finished."""
        done = 0
        for path, state in list(self._paths.items()):
            if state != EXCLUDING or self._busy(path):
                continue
            if await self._remove_local_copy(path):
                self._paths[path] = EXCLUDED
                self._save()
                done += 1
        return done

    async def _remove_local_copy(self, path: str) -> bool:
        """Delete the files under ``path`` that the server holds; False to try again later."""
        root = self.d.root
        files: list[str] = []
        others: list[str] = []
        folders: list[str] = []
        top = root / path
        if top.is_symlink() or top.is_file():
            files.append(path)
        elif top.is_dir():
            folders.append(path)
            for dirpath, dirnames, filenames in os.walk(top):
                rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
                for name in dirnames:
                    full = os.path.join(dirpath, name)
                    (others if os.path.islink(full) else folders).append(f"{rel_dir}/{name}")
                for name in filenames:
                    files.append(f"{rel_dir}/{name}")
        removable: list[tuple[str, tuple[int, int, int]]] = []
        kept: list[str] = list(others)
        for rel in files:
            full = str(root / rel)
            s = self.d.db.synced(rel)
            if (
                os.path.islink(full)
                or s is None
                or s.kind != FILE
                or self.d.indexer.ignore.reserved(rel)
            ):
                kept.append(rel)
                continue
            try:
                digest, st = await asyncio.to_thread(_content_hash, self.d.indexer.fs, rel)
            except (OSError, SkipPath):
                return False  # changing under us: look again next pass
            if digest == s.content_hash:
                removable.append((rel, st))
            else:
                kept.append(rel)
        for rel, st in removable:
            try:
                now = self.d.indexer.fs.lstat(rel)
                if (now.st_size, now.st_mtime_ns, now.st_ino) != st:
                    return False  # written since it was hashed: not now
                self.d.indexer.fs.unlink(rel)
            except FileNotFoundError:
                pass
            except SkipPath:
                return False  # a parent became a symlink: touch nothing, look again later
        for rel in sorted(folders, key=lambda f: -f.count("/")):
            try:
                self.d.indexer.fs.rmdir(rel)
            except (OSError, SkipPath):
                pass  # kept files inside
        with self.d.db.tx():
            self.d.db.drop_local(path, subtree=True)
            self.d.db.drop_synced(path, subtree=True)
            for rel in kept:
                if not self.d.indexer.ignore.reserved(rel):
                    self.d.db.skip(rel, KEPT)
        if kept:
            log.warning(
                "%s is excluded from this device; %d item(s) the server does not have are kept here",
                path,
                len(kept),
            )
        log.info(
            "%s is excluded from this device (it stays on the server and your other devices)", path
        )
        return True
