"""Replaying the queue of local changes against the cluster, in order.

Each op re-reads the disk when it runs (an op says *where* something changed, the disk says
*what* it is now). Conflicts follow DESIGN.md: a stale parent revision gets ABORTED; the
local bytes are kept as a conflicted copy, uploaded, and the winner is downloaded. A delete
that loses to a remote edit is dropped (edit wins). Network failures propagate: the op stays
queued and the daemon retries with backoff.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, TypeGuard

import grpc

from client import Commit, ConflictError, Entry, NotFoundError, SyncError, UnavailableError
from syncd.conflicts import free_copy_path
from syncd.localdb import FILE, FOLDER, LocalRow, Op, RemoteRow, SyncedRow, key_of
from syncd.planner import agreed_revision, parent_revision
from syncd.safefs import SafeFS, SkipPath
from syncd.transfer import FileChanging, Prepared

if TYPE_CHECKING:
    from syncd.daemon import Daemon

log = logging.getLogger(__name__)

SMALL_FILE = 4 * 1024 * 1024
BATCH_FILES = 200
MAX_DISK_ATTEMPTS = 10  # an op failing on the local disk this often is dropped
_NETWORK = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}


def is_network(e: BaseException) -> bool:
    """Is this failure the network's (retry later) rather than the request's?"""
    return isinstance(e, UnavailableError) or (isinstance(e, SyncError) and e.status in _NETWORK)


ON_DEVICE = "on this device: "
"""How the reasons for paths skipped because of the local disk start (see ``disk_reason``)."""


def disk_reason(e: SkipPath | OSError | str) -> str:
    """The ``skipped`` reason for a path this device cannot write or read."""
    if isinstance(e, OSError):
        return ON_DEVICE + (e.strerror or e.__class__.__name__)
    return ON_DEVICE + str(e)


def is_disk_error(e: object) -> TypeGuard[SkipPath | OSError]:
    """A failure of the local disk for one path (report it, skip it), not of the network."""
    return isinstance(e, SkipPath) or (
        isinstance(e, OSError) and not isinstance(e, ConnectionError | TimeoutError)
    )


def remote_row(e: Entry, content_hash: bytes | None = None) -> RemoteRow:
    """A remote-tree row from an SDK entry."""
    return RemoteRow(
        e.namespace_id,
        e.file_id,
        e.path,
        int(e.kind),
        e.revision,
        e.size,
        content_hash if content_hash is not None else e.content_hash,
        e.deleted,
        e.seq,
        e.executable,
    )


class OpRunner:
    """Runs queued ops for one daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.fs = SafeFS(daemon.root)
        self._sent_x: dict[str, bool] = {}  # the executable bit an upload in flight sent

    async def run_all(self) -> int:
        """Run every queued op in order; returns how many finished. Network errors propagate."""
        done = 0
        ops = self.d.db.ops()
        i = 0
        while i < len(ops):
            op = ops[i]
            if op.kind == "upload" and self._small(op.path):
                group = [op]
                while i + len(group) < len(ops) and len(group) < BATCH_FILES:
                    nxt = ops[i + len(group)]
                    if nxt.kind != "upload" or not self._small(nxt.path):
                        break
                    group.append(nxt)
                if len(group) > 1:
                    done += await self._guard(self._upload_batch(group), group[0])
                    i += len(group)
                    continue
            done += await self._guard(self._run(op), op)
            i += 1
        return done

    def _small(self, rel: str) -> bool:
        e = self.d.indexer.stat(rel)
        return e is not None and e.kind == FILE and e.size <= SMALL_FILE

    async def _guard(self, coro, op: Op) -> int:  # noqa: ANN001 - a coroutine
        try:
            await coro
            return 1
        except FileChanging:
            self.d.defer(op.path)
            return 0
        except FileNotFoundError:
            self.d.db.op_done(op.id)
            return 1
        except (SkipPath, OSError) as e:
            if not is_disk_error(e):
                raise
            # Reached through a symlink or a file (swapped in since it was indexed), unreadable,
            # or a conflicted copy's name taken meanwhile: nothing is read or renamed through a
            # link; the op stays queued (retried) and the indexer judges the path again.
            reason = disk_reason(e)
            if (op.path, reason) not in {(p, r) for p, r, _ in self.d.db.skipped()}:
                self.d.db.skip(op.path, reason)
                log.warning("not syncing %s %s", op.path, reason)
            if isinstance(e, SkipPath):
                self.d.mark_dirty(op.path)
            elif op.attempts + 1 >= MAX_DISK_ATTEMPTS:
                log.warning(
                    "%s %s: giving up after %d attempts (%s)",
                    op.kind,
                    op.path,
                    op.attempts + 1,
                    reason,
                )
                self.d.db.op_done(op.id)
                return 1
            self.d.db.op_failed(op.id)
            return 0
        except SyncError as e:
            if is_network(e):
                raise
            log.warning("%s %s: %s (not synced)", op.kind, op.path, e.message)
            self.d.note_failed(op.path, e.status, e.message)
            self.d.db.bump("failed_ops")
            self.d.db.op_done(op.id)
            return 1

    async def _run(self, op: Op) -> None:
        if op.kind == "upload":
            await self._upload(op)
        elif op.kind == "mkdir":
            await self._mkdir(op)
        elif op.kind == "delete":
            await self._delete(op)
        elif op.kind == "move":
            await self._move(op)
        else:
            self.d.db.op_done(op.id)

    # -- uploads -------------------------------------------------------------------------
    def _parent(self, rel: str, ns_id: str) -> str:
        s = self.d.db.synced(rel)
        if s is None or s.ns_id != ns_id:
            return ""
        return parent_revision(s, self.d.db.remote_by_id(s.ns_id, s.file_id))

    def _folder_id(self, rel: str, ns_id: str) -> str:
        """The file id of the synced folder holding ``rel`` ("" at the top): if that folder was
        moved elsewhere meanwhile, the server puts the new entry in its new place."""
        folder = rel.rpartition("/")[0]
        s = self.d.db.synced(folder) if folder else None
        return s.file_id if s is not None and s.kind == FOLDER and s.ns_id == ns_id else ""

    def _exec_now(self, rel: str, p: Prepared) -> bool:
        """The executable bit of the file ``p`` was read from, as on disk now."""
        e = self.d.indexer.stat(rel)
        return e is not None and e.inode == p.inode and e.executable

    def _unchanged(self, rel: str, p: Prepared) -> bool:
        s = self.d.db.synced(rel)
        return (
            s is not None
            and s.kind == FILE
            and s.content_hash == p.content_hash
            and bool(s.executable) == self._exec_now(rel, p)
        )

    def _request(self, rel: str, p: Prepared, ns_id: str, ns_path: str, op_id: str) -> Commit:
        """The commit of a prepared file, with its parent folder's id and its executable bit."""
        req = self.d.transfer.commit_request(p, ns_id, ns_path, self._parent(rel, ns_id), op_id)
        req.parent_folder_id = self._folder_id(rel, ns_id)
        req.executable = self._sent_x[rel] = self._exec_now(rel, p)
        return req

    async def _upload(self, op: Op) -> None:
        rel = op.path
        e = self.d.indexer.stat(rel)
        if e is None or e.kind != FILE:
            self.d.db.op_done(op.id)
            return
        ns_id, ns_path = self.d.mounts.remote(rel)
        p = await self.d.transfer.prepare(rel)
        if self._unchanged(rel, p):
            self._committed_local(rel, p)
            self.d.db.op_done(op.id)
            return
        req = self._request(rel, p, ns_id, ns_path, op.op_id)
        try:
            entry = await self.d.transfer.commit(req)
        except ConflictError:
            await self._conflict(op, rel, p, ns_id, ns_path)
            return
        self._committed(rel, entry, p)
        self.d.db.op_done(op.id)

    async def _upload_batch(self, group: list[Op]) -> None:
        prepared: list[tuple[Op, Prepared, str, str]] = []
        live = []
        for op in group:
            e = self.d.indexer.stat(op.path)
            if e is None or e.kind != FILE:
                self.d.db.op_done(op.id)
            else:
                live.append(op)
        for op, p in zip(
            live, await self.d.transfer.prepare_many([op.path for op in live]), strict=True
        ):
            if isinstance(p, FileChanging):
                self.d.defer(op.path)
                continue
            if isinstance(p, BaseException):
                self.d.db.op_done(op.id)  # gone or unreadable: the indexer sees what it is now
                continue
            if self._unchanged(op.path, p):
                self._committed_local(op.path, p)
                self.d.db.op_done(op.id)
                continue
            ns_id, ns_path = self.d.mounts.remote(op.path)
            prepared.append((op, p, ns_id, ns_path))
        if not prepared:
            return
        reqs = [self._request(op.path, p, ns, path, op.op_id) for op, p, ns, path in prepared]
        results = await self.d.transfer.commit_batch(reqs)
        for (op, p, ns_id, ns_path), res in zip(prepared, results, strict=True):
            if res.entry is not None:
                self._committed(op.path, res.entry, p)
                self.d.db.op_done(op.id)
            elif isinstance(res.error, ConflictError):
                await self._conflict(op, op.path, p, ns_id, ns_path)
            elif res.error is None or is_network(res.error):
                raise UnavailableError(res.error.message if res.error else "commit lost")
            else:
                log.warning("upload %s: %s (not synced)", op.path, res.error.message)
                self.d.note_failed(op.path, res.error.status, res.error.message)
                self.d.db.bump("failed_ops")
                self.d.db.op_done(op.id)

    def _committed_local(self, rel: str, p: Prepared) -> None:
        x = self._sent_x.pop(rel) if rel in self._sent_x else self._exec_now(rel, p)
        with self.d.db.tx():
            self.d.db.put_local(LocalRow(rel, FILE, p.size, p.mtime_ns, p.inode, x))
            self.d.db.set_chunks(rel, p.refs)

    def _committed(self, rel: str, entry: Entry, p: Prepared) -> None:
        with self.d.db.tx():
            self._committed_local(rel, p)
            self.d.db.put_synced(
                SyncedRow(
                    rel,
                    entry.namespace_id,
                    entry.file_id,
                    FILE,
                    agreed_revision(rel, entry.path, entry.revision),
                    entry.size,
                    p.content_hash,
                    entry.executable,
                )
            )
            self.d.db.put_remote(remote_row(entry, p.content_hash))
        self.d.progress.file_done(rel, p.size, "up")

    async def _conflict(self, op: Op, rel: str, p: Prepared, ns_id: str, ns_path: str) -> None:
        """Our parent was stale: keep our bytes as a conflicted copy; the winner comes down."""
        try:
            head: Entry | None = await self.d.client.stat(ns_path, namespace_id=ns_id)
        except NotFoundError:
            head = None
        if head is None or head.deleted:
            self.d.db.drop_synced(rel)  # it was deleted meanwhile: recreate it next time
            self.d.db.op_failed(op.id)
            return
        if not head.is_folder and head.content_hash == p.content_hash:
            mine = self._sent_x.get(rel, head.executable)
            self._committed(rel, head, p)  # both sides wrote the same bytes
            self.d.db.op_done(op.id)
            if mine != head.executable:
                self.d.db.add_op("upload", rel)  # our chmod goes on top of theirs
            return
        copy = self.conflicted_copy(rel)
        self.fs.rename(rel, copy)
        with self.d.db.tx():
            self.d.db.drop_local(rel)
            self.d.db.put_local(
                LocalRow(copy, FILE, p.size, p.mtime_ns, p.inode, self._sent_x.pop(rel, False))
            )
            self.d.db.op_done(op.id)
            self.d.db.add_op("upload", copy)
            self.d.db.bump("conflicts")
        self.d.progress.conflict(rel, copy)
        log.warning("conflict on %s: your version is kept as %s", rel, copy)

    def conflicted_copy(self, rel: str) -> str:
        """A free local name for the conflicted copy of ``rel`` (``conflicts.free_copy_path``)."""
        return free_copy_path(
            rel,
            self.d.device_name,
            dt.date.today(),
            lambda p: self.fs.lexists(p) or self.d.db.synced(p) is not None,
        )

    # -- folders, deletes, moves -------------------------------------------------------------
    async def _mkdir(self, op: Op) -> None:
        e = self.d.indexer.stat(op.path)
        if e is None or e.kind != FOLDER:
            self.d.db.op_done(op.id)
            return
        ns_id, ns_path = self.d.mounts.remote(op.path)
        if not ns_path:  # a mount point itself
            self.d.db.op_done(op.id)
            return
        entry = await self.d.client.make_folder(
            ns_path,
            namespace_id=ns_id,
            operation_id=op.op_id,
            parent_folder_id=self._folder_id(op.path, ns_id),
        )
        with self.d.db.tx():
            self.d.db.put_synced(
                SyncedRow(
                    op.path,
                    entry.namespace_id,
                    entry.file_id,
                    FOLDER,
                    agreed_revision(op.path, entry.path, entry.revision),
                    0,
                    entry.content_hash,
                )
            )
            self.d.db.put_remote(remote_row(entry))
            self.d.db.op_done(op.id)

    async def _delete(self, op: Op) -> None:
        rel = op.path
        s = self.d.db.synced(rel)
        now = self.d.indexer.stat(rel)
        if s is None or (now is not None and now.kind == s.kind):
            self.d.db.op_done(op.id)  # back again, or never synced: nothing to delete
            return
        if s.kind == FOLDER and self._remote_children_kept(rel):
            self.d.db.drop_synced(rel)  # a child was edited elsewhere: keep the folder
            self.d.db.op_done(op.id)
            return
        ns_path = self.d.mounts.remote(rel)[1]
        try:
            resp = await self.d.client.delete_seen(
                ns_path,
                seen_seq=self._seen(s.ns_id, ns_path),
                namespace_id=s.ns_id,
                parent_revision=s.revision if s.kind == FILE else "",
                operation_id=op.op_id,
            )
        except ConflictError:
            log.info("%s was changed elsewhere; keeping that edit instead of deleting it", rel)
            self.d.db.drop_synced(rel)  # the edit wins: it downloads again
            self.d.db.op_done(op.id)
            return
        except NotFoundError:
            self.d.db.drop_synced(rel, subtree=True)
            self.d.db.op_done(op.id)
            return
        entry = resp.entry
        with self.d.db.tx():
            self.d.db.drop_synced(rel, subtree=s.kind == FOLDER)
            self.d.db.put_remote(remote_row(entry))  # kept: the folder is live, it comes back
            self.d.db.op_done(op.id)
        if resp.kept:
            log.warning(
                "%s: kept %d entries added or changed elsewhere after this device last looked",
                rel,
                resp.kept,
            )
        self.d.progress.file_done(rel, 0, "delete")

    def _seen(self, ns_id: str, ns_path: str) -> int:
        """What this device saw of a namespace below ``ns_path``: its journal cursor, less any
        change it recorded but has not applied to the disk yet (the server keeps newer ones)."""
        seen = self.d.db.cursors().get(ns_id, 0)
        oldest = self.d.db.oldest_unapplied(ns_id, ns_path)
        return seen if oldest is None else min(seen, oldest - 1)

    def _remote_children_kept(self, rel: str) -> bool:
        """Does the remote tree hold live children of this folder that we did not delete?"""
        for row in self.d.db.synced_subtree(rel):
            r = self.d.db.remote_by_id(row.ns_id, row.file_id)
            if r is not None and not r.deleted:
                return True
        return False

    async def _move(self, op: Op) -> None:
        old, new = op.path, op.dest
        s = self.d.db.synced(old)
        ns_a, pa = self.d.mounts.remote(old)
        ns_b, pb = self.d.mounts.remote(new)
        if s is None or ns_a != ns_b or not pa or not pb:
            self._reupload(old, new)
            self.d.db.op_done(op.id)
            return
        try:
            entry = await self.d.client.move(
                pa,
                pb,
                namespace_id=ns_a,
                operation_id=op.op_id,
                parent_revision=s.revision if s.kind == FILE else "",
            )
        except SyncError as e:
            if is_network(e) or e.status is grpc.StatusCode.UNIMPLEMENTED:
                if not is_network(e):
                    self._reupload(old, new)
                    self.d.db.op_done(op.id)
                    return
                raise
            log.info(
                "move %s -> %s refused (%s): uploading it at the new place instead",
                old,
                new,
                e.message,
            )
            self._reupload(old, new)
            self.d.db.op_done(op.id)
            return
        with self.d.db.tx():
            self.d.db.move_local(old, new, synced=True)
            self.d.db.put_synced(
                SyncedRow(
                    new,
                    entry.namespace_id,
                    entry.file_id,
                    s.kind,
                    entry.revision,
                    entry.size,
                    s.content_hash,
                    entry.executable,
                )
            )
            self.d.db.put_remote(remote_row(entry, s.content_hash))
            self.d.db.op_done(op.id)
        self.d.progress.file_done(new, 0, "move")

    def _reupload(self, old: str, new: str) -> None:
        """Fall back from a move to uploading what is at ``new`` (the old place stays as it is)."""
        with self.d.db.tx():
            self.d.db.drop_synced(old, subtree=True)
            self.requeue(new)

    def requeue(self, new: str) -> None:
        """Queue the upload of the local entry at ``new`` and of everything in it."""
        with self.d.db.tx():
            top = self.d.db.local(new)
            rows = ([top] if top else []) + self.d.db.local_rows(new)
            for r in sorted(rows, key=lambda r: key_of(r.path).count("/")):
                self.d.db.add_op("mkdir" if r.kind == FOLDER else "upload", r.path)
