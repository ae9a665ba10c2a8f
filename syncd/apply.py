"""Bringing remote changes to the disk: the remote tree against the synced tree.

Every remote row whose revision differs from the merge base is applied, unless the local
side changed the same path too (a queued op, or a disk change not indexed yet): then the op
decides (a stale commit becomes a conflicted copy; a delete loses to an edit). Moves are
renames on disk; downloads go through ``Transfer.download`` (chunks already on disk first,
temporary file, rename); deletes remove only what the user did not change since (an edit
against a delete keeps the edit, which the indexer then uploads again).

Every disk change goes through ``SafeFS`` (no symlink is ever followed). A remote path this
device cannot or must not write (its local parent is a symlink or a file, its name does not fit
the local filesystem, a file here where a folder is there) is recorded in the ``skipped`` table
with its reason, logged once, and tried again on later passes; everything else keeps syncing.

Remote changes under an ignored path come down too (ignoring is about uploading); a local
edit there, which is never uploaded, is kept as a conflicted copy rather than overwritten.
Paths excluded from this device and the daemon's own files are left alone (``Daemon.waits``).
"""

from __future__ import annotations

import asyncio
import logging
import stat as stat_mod
import time
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from client._errors import NotFoundError, SyncError, UnavailableError
from syncd.indexer import same_stat
from syncd.localdb import FILE, FOLDER, LocalRow, RemoteRow, SyncedRow, key_of
from client._modes import file_mode, is_executable
from syncd.ops import ON_DEVICE, disk_reason, is_disk_error, is_network, remote_row
from syncd.safefs import SafeFS, SkipPath, UnsafePath
from syncd.transfer import TargetChanged

if TYPE_CHECKING:
    from syncd.daemon import Daemon

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
        self.fs = SafeFS(daemon.root)
        self._sem = asyncio.Semaphore(concurrency)
        self._held: dict[str, tuple[str, str, float]] = {}   # skipped here: key -> (reason, revision, retry_at)

    def actionable(self) -> int:
        """How many remote differences wait (for progress and idleness); skipped paths do not."""
        diff = self.d.remote_todo()
        if not self._held:
            return len(diff)
        return sum(1 for r, _ in diff if (rel := self.d.mounts.local(r.ns_id, r.path)) is None or key_of(rel) not in self._held)

    async def reconcile(self) -> int:
        """Apply what can be applied now; returns how many rows were handled."""
        diff = self.d.remote_todo()
        pending = self.d.db.pending_keys()
        self._prune(diff, pending)
        if not diff:
            return 0
        moves: list[tuple[RemoteRow, SyncedRow, str]] = []
        folders: list[tuple[RemoteRow, str]] = []
        files: list[tuple[RemoteRow, str]] = []
        deletes: list[tuple[RemoteRow, SyncedRow]] = []
        for r, s in diff:
            rel = self.d.mounts.local(r.ns_id, r.path)
            if rel is None:
                continue
            if r.deleted:
                if s is not None:
                    deletes.append((r, s))
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
            done += self._guarded(rel, r, lambda r=r, s=s, rel=rel: self._move(r, s, rel, pending))
        for r, rel in sorted(folders, key=lambda f: f[1].count("/")):
            done += self._guarded(rel, r, lambda r=r, rel=rel: self._folder(r, rel, pending))
        results = await asyncio.gather(*(self._file(r, rel, pending) for r, rel in files), return_exceptions=True)
        for (r, rel), res in zip(files, results, strict=True):
            if is_disk_error(res):
                self._skip(rel, res, r.revision)
                continue
            if isinstance(res, BaseException):
                if isinstance(res, SyncError) and not is_network(res):
                    log.warning("download failed: %s", res.message)
                    continue
                raise res
            self._synced(rel, res)
            done += res
        for r, s in sorted(deletes, key=lambda d: -d[1].path.count("/")):
            done += self._guarded(s.path, r, lambda s=s: self._delete(s, pending))
        return done

    # -- skipped paths -------------------------------------------------------------------
    def _guarded(self, rel: str, r: RemoteRow, apply: Callable[[], int]) -> int:
        """Run one disk change; a path that cannot be written is recorded, not fatal."""
        try:
            n = apply()
        except (SkipPath, OSError) as e:
            if not is_disk_error(e):
                raise
            self._skip(rel, e, r.revision)
            return 0
        self._synced(rel, n)
        return n

    def _skip(self, rel: str, e: SkipPath | OSError | str, revision: str, *, retry_at: float = 0.0) -> None:
        """Record (and log once) that ``rel`` is not synced here."""
        reason = disk_reason(e)
        old = self._held.get(key_of(rel))
        self._held[key_of(rel)] = (reason, revision, retry_at)
        if old is None or old[0] != reason:
            self.d.db.skip(rel, reason)
            log.warning("not syncing %s %s", rel, reason)

    def _synced(self, rel: str, n: int) -> None:
        if n and self._held.pop(key_of(rel), None) is not None:
            self.d.db.unskip_under(rel)
            log.info("%s syncs again", rel)

    def _prune(self, diff: list[tuple[RemoteRow, SyncedRow | None]], pending: set[str]) -> None:
        """Forget this device's disk problems at paths with nothing left to sync."""
        mine = [p for p, reason, _ in self.d.db.skipped() if reason.startswith(ON_DEVICE)]
        if not mine and not self._held:
            return
        wanted = set(pending) | {key_of(s.path) for _, s in diff if s is not None}
        wanted |= {key_of(rel) for r, _ in diff if (rel := self.d.mounts.local(r.ns_id, r.path)) is not None}
        for path in mine:
            if key_of(path) not in wanted:
                self.d.db.unskip_under(path)
        self._held = {k: v for k, v in self._held.items() if k in wanted}

    # -- helpers -------------------------------------------------------------------------
    def _clean(self, rel: str, pending: set[str]) -> bool:
        """No queued op and no unindexed disk change at ``rel``."""
        if key_of(rel) in pending:
            return False
        return same_stat(self.d.db.local(rel), self.d.indexer.on_disk(rel))

    def make_dirs(self, folder: str) -> None:
        """Create a folder and its missing parents (relative to the root) and record them as indexed.

        Raises:
            SkipPath: a parent is a symlink or a file, or a name cannot exist here.
        """
        if not folder:
            return
        for rel, st in self.fs.makedirs(folder):
            self.d.db.put_local(LocalRow(rel, FOLDER, 0, 0, st.st_ino))

    def _apply_mode(self, rel: str, executable: bool, current: int | None) -> bool:
        """Give a file just written from a revision its mode (see ``client._modes``), never
        through a symlink; returns whether it is now executable for its owner."""
        try:
            st = self.fs.lstat(rel)
            if not stat_mod.S_ISREG(st.st_mode):
                return is_executable(st.st_mode)
            return is_executable(self.fs.set_mode(rel, file_mode(executable, current)).st_mode)
        except (OSError, SkipPath):     # changed or gone meanwhile: the indexer sees what it is
            return executable

    # -- the four kinds ------------------------------------------------------------------
    def _move(self, r: RemoteRow, s: SyncedRow, rel: str, pending: set[str]) -> int:
        old = s.path
        if key_of(rel) in pending:
            return 0
        if not self._clean(old, pending):
            if key_of(old) in pending or not self.d.indexer.ignore.covers(old):
                return 0                                # the local change's op decides
            self.d.db.drop_synced(old, subtree=True)    # an ignored local edit stays as it is;
            return 1                                    # the moved version downloads
        inside = key_of(old) + "/"
        if r.kind == FOLDER and any(k.startswith(inside) for k in pending):
            return 0                                    # local changes inside go out first
        if self.d.indexer.on_disk(rel) is not None and key_of(rel) != key_of(old):
            return 0                                    # something local is in the way: later
        if self.d.indexer.on_disk(old) is None:
            self.d.db.drop_synced(old, subtree=True)    # nothing to move: the download brings it
            return 1
        self.fs.check_writable(rel)
        self.make_dirs(rel.rpartition("/")[0])
        self.fs.rename(old, rel)
        with self.d.db.tx():
            self.d.db.move_local(old, rel, synced=True)
            if r.kind == FOLDER or r.content_hash == s.content_hash:
                self.d.db.put_synced(SyncedRow(rel, r.ns_id, r.file_id, r.kind, r.revision, r.size, r.content_hash, r.executable))
        self.d.progress.file_done(rel, 0, "move")
        return 1

    def _folder(self, r: RemoteRow, rel: str, pending: set[str]) -> int:
        if key_of(rel) in pending:
            return 0
        disk = self.d.indexer.on_disk(rel)
        if disk is None:
            if self.d.db.local(rel) is not None:
                self.d.mark_dirty(rel)                  # deleted locally, not indexed yet
                return 0
            try:
                st = self.fs.lstat(rel)                 # raises SkipPath if a parent is unsafe
            except FileNotFoundError:
                self.fs.check_writable(rel)
                self.make_dirs(rel)
            else:
                if stat_mod.S_ISLNK(st.st_mode):
                    self._skip(rel, f"{rel} is a symlink (nothing is written through it)", r.revision)
                return 0                                # ignored, or a symlink: leave it
        elif disk.kind != FOLDER:
            self._skip(rel, f"{rel} is a folder on the server but a file here (both are left as they are)", r.revision)
            return 0
        elif self.d.db.local(rel) is None:
            self.d.db.put_local(disk.row())
        self.d.db.put_synced(SyncedRow(rel, r.ns_id, r.file_id, FOLDER, r.revision, 0, r.content_hash))
        return 1

    async def _file(self, r: RemoteRow, rel: str, pending: set[str]) -> int:
        if key_of(rel) in pending:
            return 0
        disk = self.d.indexer.on_disk(rel)
        edited = not same_stat(self.d.db.local(rel), disk)
        if edited and not (disk is not None and disk.kind == FILE and self.d.indexer.ignore.covers(rel)):
            self.d.mark_dirty(rel)                      # a local change the indexer has not seen
            return 0
        if disk is not None and disk.kind != FILE:
            self._skip(rel, f"{rel} is a file on the server but a folder here (both are left as they are)", r.revision)
            return 0
        self.fs.check_writable(rel)                     # before anything is fetched: raises SkipPath
        held = self._held.get(key_of(rel))
        if held is not None and held[1] == r.revision and held[2] > time.time():
            return 0                                    # failed after a download: wait for a rescan
        here = self.d.db.synced(rel)
        if disk is not None and (here is None or edited):
            # A local file the cluster does not have at this path, with no op queued (refused
            # before, or ignored and so never uploaded): keep it as a conflicted copy, take the
            # remote one.
            copy = self.d.ops.conflicted_copy(rel)
            self.fs.rename(rel, copy)
            self.d.db.move_local(rel, copy)
            self.d.db.add_op("upload", copy)
            self.d.progress.conflict(rel, copy)
            disk = None
        if disk is not None and here is not None and here.kind == FILE and here.content_hash == r.content_hash:
            if bool(r.executable) != disk.executable:   # a metadata-only revision: chmod
                x = self._apply_mode(rel, r.executable, self.fs.lstat(rel).st_mode)
                self.d.db.put_local(replace(disk.row(), executable=x))
            self.d.db.put_synced(SyncedRow(rel, r.ns_id, r.file_id, FILE, r.revision, r.size, r.content_hash, r.executable))
            return 1
        expect = (disk.size, disk.mtime_ns, disk.inode) if disk is not None else None
        try:
            current = self.fs.lstat(rel).st_mode if disk is not None else None
        except (OSError, SkipPath):
            current = None
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
            except UnsafePath as e:                     # the folder changed meanwhile: try again
                self._skip(rel, e, r.revision)
                return 0
            except (SkipPath, OSError) as e:            # fetched for nothing: not again before a rescan
                if not is_disk_error(e):
                    raise
                self._skip(rel, e, r.revision, retry_at=time.time() + self.d.cfg.rescan_interval)
                return 0
        x = self._apply_mode(rel, entry.executable, current)
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
        disk = self.d.indexer.on_disk(rel)
        if disk is None:
            self.d.db.drop_local(rel)
            self.d.db.drop_synced(rel)
            return 1
        if not same_stat(self.d.db.local(rel), disk):
            self.d.db.drop_synced(rel)                  # edited here: the edit wins (re-uploaded)
            self.d.mark_dirty(rel)
            return 1
        if disk.kind == FILE:
            self.fs.unlink(rel)
        else:
            try:
                self.fs.rmdir(rel)
            except OSError:                             # kept edits or ignored files inside
                self.d.db.drop_synced(rel)
                return 1
        self.d.db.drop_local(rel)
        self.d.db.drop_synced(rel)
        self.d.progress.file_done(rel, 0, "delete")
        return 1
