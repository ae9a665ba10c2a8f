"""Bringing remote changes to the disk: the remote tree against the synced tree.

Every remote row whose revision differs from the merge base is applied, unless the local
side changed the same path too (a queued op, or a disk change not indexed yet): then the op
decides (a stale commit becomes a conflicted copy; a delete loses to an edit). Moves are
renames on disk; downloads go through ``Transfer.download`` (chunks already on disk first,
temporary file, rename); deletes remove only what the user did not change since (an edit
against a delete keeps the edit, which the indexer then uploads again).
"""

from __future__ import annotations

import asyncio
import logging
import os
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from client._errors import NotFoundError, SyncError, UnavailableError
from client._indexer import same_stat
from client._localdb import FILE, FOLDER, LocalRow, RemoteRow, SyncedRow, key_of
from client._modes import apply_mode
from client._ops import is_network, remote_row
from client._transfer import TargetChanged

if TYPE_CHECKING:
    from client._daemon import Daemon

log = logging.getLogger(__name__)


def case_renamed(local: str, remote: str) -> str | None:
    """``local`` with the last name spelled as in ``remote`` when the two differ only in the
    case of that name (the server renamed it); None otherwise, also for a mere NFC/NFD
    difference, which the server cannot tell apart."""
    folder, _, name = local.rpartition("/")
    new = remote.rpartition("/")[2]
    if unicodedata.normalize("NFC", name) == unicodedata.normalize("NFC", new):
        return None
    return f"{folder}/{new}" if folder else new


class Applier:
    """Applies the remote/synced difference for one daemon."""

    def __init__(self, daemon: Daemon, *, concurrency: int = 8) -> None:
        self.d = daemon
        self._sem = asyncio.Semaphore(concurrency)

    def actionable(self) -> int:
        """How many remote differences wait (for progress and idleness)."""
        return len(self.d.db.remote_diff())

    async def reconcile(self) -> int:
        """Apply what can be applied now; returns how many rows were handled."""
        diff = self.d.db.remote_diff()
        if not diff:
            return 0
        pending = self.d.db.pending_keys()
        moves: list[tuple[RemoteRow, SyncedRow, str]] = []
        folders: list[tuple[RemoteRow, str]] = []
        files: list[tuple[RemoteRow, str]] = []
        deletes: list[SyncedRow] = []
        for r, s in diff:
            rel = self.d.mounts.local(r.ns_id, r.path)
            if rel is None:
                continue
            if r.deleted:
                if s is not None:
                    deletes.append(s)
            elif s is not None and key_of(s.path) != key_of(rel):
                moves.append((r, s, rel))
            elif s is not None and (renamed := case_renamed(s.path, rel)) is not None:
                moves.append((r, s, renamed))           # a case-only rename: the same place
            elif r.kind == FOLDER:
                folders.append((r, rel))
            else:
                files.append((r, rel))
        done = 0
        for r, s, rel in sorted(moves, key=lambda m: m[2].count("/")):
            done += self._move(r, s, rel, pending)
        for r, rel in sorted(folders, key=lambda f: f[1].count("/")):
            done += self._folder(r, rel, pending)
        results = await asyncio.gather(*(self._file(r, rel, pending) for r, rel in files), return_exceptions=True)
        for res in results:
            if isinstance(res, BaseException):
                if isinstance(res, SyncError) and not is_network(res):
                    log.warning("download failed: %s", res.message)
                    continue
                raise res
            done += res
        for s in sorted(deletes, key=lambda s: -s.path.count("/")):
            done += self._delete(s, pending)
        return done

    # -- helpers -------------------------------------------------------------------------
    def _clean(self, rel: str, pending: set[str]) -> bool:
        """No queued op and no unindexed disk change at ``rel``."""
        if key_of(rel) in pending:
            return False
        return same_stat(self.d.db.local(rel), self.d.indexer.stat(rel))

    def make_dirs(self, folder: Path) -> None:
        """Create missing parent folders of a download and record them as indexed."""
        missing: list[Path] = []
        p = folder
        while p != self.d.root and not p.exists():
            missing.append(p)
            p = p.parent
        for p in reversed(missing):
            p.mkdir(exist_ok=True)
            rel = p.relative_to(self.d.root).as_posix()
            self.d.db.put_local(LocalRow(rel, FOLDER, 0, 0, os.lstat(p).st_ino))

    # -- the four kinds ------------------------------------------------------------------
    def _move(self, r: RemoteRow, s: SyncedRow, rel: str, pending: set[str]) -> int:
        old = s.path
        if key_of(rel) in pending or not self._clean(old, pending):
            return 0
        inside = key_of(old) + "/"
        if r.kind == FOLDER and any(k.startswith(inside) for k in pending):
            return 0                                    # local changes inside go out first
        if self.d.indexer.stat(rel) is not None and key_of(rel) != key_of(old):
            return 0                                    # something local is in the way: later
        if self.d.indexer.stat(old) is None:
            self.d.db.drop_synced(old, subtree=True)    # nothing to move: the download brings it
            return 1
        self.make_dirs((self.d.root / rel).parent)
        os.rename(self.d.root / old, self.d.root / rel)
        with self.d.db.tx():
            self.d.db.move_local(old, rel, synced=True)
            if r.kind == FOLDER or r.content_hash == s.content_hash:
                self.d.db.put_synced(SyncedRow(rel, r.ns_id, r.file_id, r.kind, r.revision, r.size, r.content_hash, r.executable))
        self.d.progress.file_done(rel, 0, "move")
        return 1

    def _folder(self, r: RemoteRow, rel: str, pending: set[str]) -> int:
        if key_of(rel) in pending:
            return 0
        disk = self.d.indexer.stat(rel)
        if disk is None:
            if self.d.db.local(rel) is not None:
                self.d.mark_dirty(rel)                  # deleted locally, not indexed yet
                return 0
            if os.path.lexists(self.d.root / rel):
                return 0                                # ignored or a symlink: leave it
            self.make_dirs(self.d.root / rel)
        elif disk.kind != FOLDER:
            log.warning("%s is a folder elsewhere but a file here: leaving both as they are", rel)
            return 0
        elif self.d.db.local(rel) is None:
            self.d.db.put_local(disk.row())
        self.d.db.put_synced(SyncedRow(rel, r.ns_id, r.file_id, FOLDER, r.revision, 0, r.content_hash))
        return 1

    async def _file(self, r: RemoteRow, rel: str, pending: set[str]) -> int:
        if key_of(rel) in pending:
            return 0
        disk = self.d.indexer.stat(rel)
        if not same_stat(self.d.db.local(rel), disk):
            self.d.mark_dirty(rel)                      # a local change the indexer has not seen
            return 0
        if disk is not None and disk.kind != FILE:
            log.warning("%s is a file elsewhere but a folder here: leaving both as they are", rel)
            return 0
        here = self.d.db.synced(rel)
        if disk is not None and here is None:
            # A local file the cluster never had at this path, with no op queued (it was
            # refused before, say): keep it as a conflicted copy, take the remote one.
            copy = self.d.ops.conflicted_copy(rel)
            os.rename(self.d.root / rel, self.d.root / copy)
            self.d.db.move_local(rel, copy)
            self.d.db.add_op("upload", copy)
            self.d.progress.conflict(rel, copy)
            disk = None
        if disk is not None and here is not None and here.kind == FILE and here.content_hash == r.content_hash:
            if bool(r.executable) != disk.executable:   # a metadata-only revision: chmod
                x = apply_mode(self.d.root / rel, r.executable, os.lstat(self.d.root / rel).st_mode)
                self.d.db.put_local(replace(disk.row(), executable=x))
            self.d.db.put_synced(SyncedRow(rel, r.ns_id, r.file_id, FILE, r.revision, r.size, r.content_hash, r.executable))
            return 1
        expect = (disk.size, disk.mtime_ns, disk.inode) if disk is not None else None
        current = os.lstat(self.d.root / rel).st_mode if disk is not None else None
        async with self._sem:
            try:
                entry, st, layout, _ = await asyncio.wait_for(
                    self.d.transfer.download(r.ns_id, r.path, rel, expect, self.make_dirs), 120 + r.size / 2**20)
            except TimeoutError:
                raise UnavailableError(f"download of {rel} stalled") from None
            except NotFoundError:
                return 0                                # moved or deleted since: the journal says
            except TargetChanged:
                self.d.mark_dirty(rel)
                return 0
        x = apply_mode(self.d.root / rel, entry.executable, current)
        with self.d.db.tx():
            self.d.db.put_local(LocalRow(rel, FILE, st.st_size, st.st_mtime_ns, st.st_ino, x))
            self.d.db.set_chunks(rel, layout)
            self.d.db.put_synced(SyncedRow(rel, entry.namespace_id, entry.file_id, FILE, entry.revision, entry.size, entry.content_hash,
                                           entry.executable))
            self.d.db.put_remote(remote_row(entry))
        self.d.progress.file_done(rel, entry.size, "down")
        return 1

    def _delete(self, s: SyncedRow, pending: set[str]) -> int:
        rel = s.path
        if key_of(rel) in pending:
            return 0
        disk = self.d.indexer.stat(rel)
        if disk is None:
            self.d.db.drop_local(rel)
            self.d.db.drop_synced(rel)
            return 1
        if not same_stat(self.d.db.local(rel), disk):
            self.d.db.drop_synced(rel)                  # edited here: the edit wins (re-uploaded)
            self.d.mark_dirty(rel)
            return 1
        if disk.kind == FILE:
            os.unlink(self.d.root / rel)
        else:
            try:
                os.rmdir(self.d.root / rel)
            except OSError:                             # kept edits or ignored files inside
                self.d.db.drop_synced(rel)
                return 1
        self.d.db.drop_local(rel)
        self.d.db.drop_synced(rel)
        self.d.progress.file_done(rel, 0, "delete")
        return 1
