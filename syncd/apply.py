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
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from client import NotFoundError, SyncError, UnavailableError, file_mode, is_executable
from syncd.indexer import same_stat
from syncd.localdb import FILE, FOLDER, LocalRow, RemoteRow, SyncedRow, key_of
from syncd.ops import ON_DEVICE, disk_reason, is_disk_error, is_network, remote_row
from syncd.planner import (
    Act,
    Here,
    Kind,
    decide_delete,
    decide_file,
    decide_folder,
    decide_move,
    move_settles,
    remote_steps,
)
from syncd.safefs import SafeFS, SkipPath, UnsafePath
from syncd.transfer import TargetChanged

if TYPE_CHECKING:
    from syncd.daemon import Daemon

log = logging.getLogger(__name__)


class Applier:
    """Applies the remote/synced difference for one daemon."""

    def __init__(self, daemon: Daemon, *, concurrency: int = 8) -> None:
        self.d = daemon
        self.fs = SafeFS(daemon.root)
        self._sem = asyncio.Semaphore(concurrency)
        self._held: dict[
            str, tuple[str, str, float]
        ] = {}  # skipped here: key -> (reason, revision, retry_at)

    def actionable(self) -> int:
        """How many remote differences wait (for progress and idleness); skipped paths do not."""
        diff = self.d.remote_todo()
        if not self._held:
            return len(diff)
        return sum(
            1
            for r, _ in diff
            if (rel := self.d.mounts.local(r.ns_id, r.path)) is None
            or key_of(rel) not in self._held
        )

    async def reconcile(self) -> int:
        """Apply what can be applied now; returns how many rows were handled."""
        diff = self.d.remote_todo()
        pending = self.d.db.pending_keys()
        self._prune(diff, pending)
        if not diff:
            return 0
        steps = remote_steps(
            ((r, s, self.d.mounts.local(r.ns_id, r.path)) for r, s in diff), self._spelled
        )
        files = [st for st in steps if st.kind is Kind.FILE]
        done = 0
        for st in steps:
            if st.kind is Kind.MOVE:
                assert st.synced is not None
                done += self._guarded(
                    st.rel,
                    st.remote,
                    lambda st=st: self._move(st.remote, st.synced, st.rel, pending),
                )
            elif st.kind is Kind.FOLDER:
                done += self._guarded(
                    st.rel, st.remote, lambda st=st: self._folder(st.remote, st.rel, pending)
                )
        results = await asyncio.gather(
            *(self._file(st.remote, st.rel, pending) for st in files), return_exceptions=True
        )
        for st, res in zip(files, results, strict=True):
            if is_disk_error(res):
                self._skip(st.rel, res, st.remote.revision)
                continue
            if isinstance(res, BaseException):
                if isinstance(res, SyncError) and not is_network(res):
                    log.warning("download failed: %s", res.message)
                    continue
                raise res
            self._synced(st.rel, res)
            done += res
        for st in steps:
            if st.kind is Kind.DELETE:
                assert st.synced is not None
                done += self._guarded(
                    st.rel, st.remote, lambda st=st: self._delete(st.synced, pending)
                )
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

    def _skip(
        self, rel: str, e: SkipPath | OSError | str, revision: str, *, retry_at: float = 0.0
    ) -> None:
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
            inside = key_of(rel) + "/"  # what was held below it is to do again now
            self._held = {k: v for k, v in self._held.items() if not k.startswith(inside)}
            log.info("%s syncs again", rel)

    def _prune(self, diff: list[tuple[RemoteRow, SyncedRow | None]], pending: set[str]) -> None:
        """Forget this device's disk problems at paths with nothing left to sync."""
        mine = [p for p, reason, _ in self.d.db.skipped() if reason.startswith(ON_DEVICE)]
        if not mine and not self._held:
            return
        wanted = set(pending) | {key_of(s.path) for _, s in diff if s is not None}
        wanted |= {
            key_of(rel)
            for r, _ in diff
            if (rel := self.d.mounts.local(r.ns_id, r.path)) is not None
        }
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

    def _here(self, rel: str, pending: set[str]) -> Here:
        """The facts about the local side of ``rel`` the planner decides on."""
        disk = self.d.indexer.on_disk(rel)
        row = self.d.db.local(rel)
        twin = row is not None and row.path != rel and self.d.indexer.on_disk(row.path) is not None
        return Here(
            disk=disk.kind if disk is not None else None,
            indexed=row is not None,
            clean=same_stat(row, disk),
            pending=key_of(rel) in pending,
            ignored=self.d.indexer.ignore.covers(rel),
            twin=twin,
        )

    def _copy_twin(self, rel: str) -> int:
        """The local entry at ``rel``'s key spelled otherwise, never synced, loses to the
        server's: kept as a conflicted copy (``conflicts.Loser.TWIN``)."""
        row = self.d.db.local(rel)
        if row is None:
            return 0
        self.fs.check_writable(row.path)
        self._keep_copy(row.path)
        return 1

    def _spelled(self, key: str) -> str | None:
        """This disk's spelling of a path by key (synced or indexed), for ``local_spelling``."""
        row = self.d.db.synced(key) or self.d.db.local(key)
        return row.path if row is not None else None

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
        except (OSError, SkipPath):  # changed or gone meanwhile: the indexer sees what it is
            return executable

    # -- the four kinds ------------------------------------------------------------------
    def _move(self, r: RemoteRow, s: SyncedRow, rel: str, pending: set[str]) -> int:
        old = s.path
        inside = key_of(old) + "/"
        there = self.d.db.synced(rel)
        duplicate = (
            there is not None
            and there.file_id == r.file_id
            and there.revision == r.revision
            and r.kind == FILE
            and s.content_hash == r.content_hash
        )
        act = decide_move(
            self._here(old, pending),
            self._here(rel, pending),
            folder=r.kind == FOLDER,
            pending_inside=any(k.startswith(inside) for k in pending),
            same_key=key_of(rel) == key_of(old),
            duplicate=duplicate,
        )
        if act is Act.WAIT:
            return 0
        if act is Act.FORGET:
            self.d.db.drop_synced(old, subtree=True)
            return 1
        if act is Act.SKIP_KIND:
            self._skip(
                rel,
                f"{rel} is taken here by another file or folder (both are left as they are)",
                r.revision,
            )
            return 0
        if act is Act.DROP_DUPLICATE:
            self.fs.unlink(old)
            self.d.db.drop_local(old)
            self.d.db.drop_synced(old)
            return 1
        if act is Act.MERGE:
            if any(self.d.db.local_rows(old)):
                return 0  # the children's own moves come first
            self.fs.rmdir(old)
            self.d.db.drop_local(old)
            self.d.db.drop_synced(old, subtree=True)
            return 1
        self.fs.check_writable(rel)
        self.make_dirs(rel.rpartition("/")[0])
        self.fs.rename(old, rel)
        with self.d.db.tx():
            self.d.db.move_local(old, rel, synced=True)
            if move_settles(r, s):
                self.d.db.put_synced(
                    SyncedRow(
                        rel,
                        r.ns_id,
                        r.file_id,
                        r.kind,
                        r.revision,
                        r.size,
                        r.content_hash,
                        r.executable,
                    )
                )
        self.d.progress.file_done(rel, 0, "move")
        return 1

    def _folder(self, r: RemoteRow, rel: str, pending: set[str]) -> int:
        here = self._here(rel, pending)
        link: bool | None = None
        if here.disk is None and not here.indexed and not here.pending:
            try:
                link = stat_mod.S_ISLNK(
                    self.fs.lstat(rel).st_mode
                )  # raises SkipPath if a parent is unsafe
            except FileNotFoundError:
                link = None
        act = decide_folder(here, link=link, synced_here=self.d.db.synced(rel) is not None)
        if act is Act.WAIT or act is Act.LEAVE:
            return 0
        if act is Act.COPY_TWIN:
            return self._copy_twin(rel)
        if act is Act.MARK_DIRTY:
            self.d.mark_dirty(rel)
            return 0
        if act is Act.SKIP_SYMLINK:
            self._skip(rel, f"{rel} is a symlink (nothing is written through it)", r.revision)
            return 0
        if act is Act.SKIP_KIND:
            self._skip(
                rel,
                f"{rel} is a folder on the server but a file here (both are left as they are)",
                r.revision,
            )
            return 0
        if act is Act.CREATE:
            self.fs.check_writable(rel)
            self.make_dirs(rel)
        elif act is Act.ADOPT:
            disk = self.d.indexer.on_disk(rel)
            if disk is not None:
                self.d.db.put_local(disk.row())
        self.d.db.put_synced(
            SyncedRow(rel, r.ns_id, r.file_id, FOLDER, r.revision, 0, r.content_hash)
        )
        return 1

    async def _file(self, r: RemoteRow, rel: str, pending: set[str]) -> int:
        here = self._here(rel, pending)
        synced = self.d.db.synced(rel)
        disk = self.d.indexer.on_disk(rel)
        held = self._held.get(key_of(rel))
        act = decide_file(
            here,
            r,
            synced,
            held=held is not None and held[1] == r.revision and held[2] > time.time(),
            executable_here=disk.executable if disk is not None else None,
        )
        if act is Act.WAIT:
            return 0
        if act is Act.COPY_TWIN:
            return self._copy_twin(rel)
        if act is Act.MARK_DIRTY:
            self.d.mark_dirty(rel)  # a local change the indexer has not seen
            return 0
        if act is Act.SKIP_KIND:
            self._skip(
                rel,
                f"{rel} is a file on the server but a folder here (both are left as they are)",
                r.revision,
            )
            return 0
        self.fs.check_writable(rel)  # before anything is fetched: raises SkipPath
        if act is Act.HELD:
            return 0  # failed after a download: wait for a rescan
        if act is Act.COPY_THEN_DOWNLOAD:
            # A local file (or folder) the cluster does not have at this path, with no op
            # queued (refused before, or ignored and so never uploaded): keep it as a
            # conflicted copy, take the remote one.
            self._keep_copy(rel)
            disk = None
        elif disk is not None and act in (Act.CHMOD, Act.RECORD):
            if act is Act.CHMOD:  # a metadata-only revision: chmod
                x = self._apply_mode(rel, r.executable, self.fs.lstat(rel).st_mode)
                self.d.db.put_local(replace(disk.row(), executable=x))
            self.d.db.put_synced(
                SyncedRow(
                    rel, r.ns_id, r.file_id, FILE, r.revision, r.size, r.content_hash, r.executable
                )
            )
            return 1
        expect = (disk.size, disk.mtime_ns, disk.inode) if disk is not None else None
        try:
            current = self.fs.lstat(rel).st_mode if disk is not None else None
        except (OSError, SkipPath):
            current = None
        async with self._sem:
            try:
                entry, st, layout, _ = await asyncio.wait_for(
                    self.d.transfer.download(r.ns_id, r.path, rel, expect, self.make_dirs),
                    120 + r.size / 2**20,
                )
            except TimeoutError:
                raise UnavailableError(f"download of {rel} stalled") from None
            except NotFoundError:
                return 0  # moved or deleted since: the journal says
            except TargetChanged:
                self.d.mark_dirty(rel)
                return 0
            except UnsafePath as e:  # the folder changed meanwhile: try again
                self._skip(rel, e, r.revision)
                return 0
            except (SkipPath, OSError) as e:  # fetched for nothing: not again before a rescan
                if not is_disk_error(e):
                    raise
                self._skip(rel, e, r.revision, retry_at=time.time() + self.d.cfg.rescan_interval)
                return 0
        x = self._apply_mode(rel, entry.executable, current)
        with self.d.db.tx():
            self.d.db.put_local(LocalRow(rel, FILE, st.st_size, st.st_mtime_ns, st.st_ino, x))
            self.d.db.set_chunks(rel, layout)
            self.d.db.put_synced(
                SyncedRow(
                    rel,
                    entry.namespace_id,
                    entry.file_id,
                    FILE,
                    entry.revision,
                    entry.size,
                    entry.content_hash,
                    entry.executable,
                )
            )
            self.d.db.put_remote(remote_row(entry))
        self.d.progress.file_done(rel, entry.size, "down")
        return 1

    def _keep_copy(self, rel: str) -> None:
        """Rename the local entry at ``rel`` to a conflicted copy and queue its upload there."""
        copy = self.d.ops.conflicted_copy(rel)
        self.fs.rename(rel, copy)
        self.d.db.move_local(rel, copy)
        self.d.ops.requeue(copy)
        self.d.progress.conflict(rel, copy)

    def _delete(self, s: SyncedRow, pending: set[str]) -> int:
        rel = s.path
        act = decide_delete(self._here(rel, pending))
        if act is Act.WAIT:
            return 0
        if act is Act.FORGET:
            self.d.db.drop_local(rel)
            self.d.db.drop_synced(rel)
            return 1
        if act is Act.KEEP_EDIT:
            self.d.db.drop_synced(rel)  # edited here: the edit wins (re-uploaded)
            self.d.mark_dirty(rel)
            return 1
        if act is Act.UNLINK:
            self.fs.unlink(rel)
        else:
            try:
                self.fs.rmdir(rel)
            except OSError:  # kept edits, ignored files or links inside:
                self.d.db.drop_synced(rel)  # the folder stays, so it goes back up
                self.d.db.add_op("mkdir", rel)
                return 1
        self.d.db.drop_local(rel)
        self.d.db.drop_synced(rel)
        self.d.progress.file_done(rel, 0, "delete")
        return 1
