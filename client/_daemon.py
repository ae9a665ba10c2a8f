"""The sync daemon: keeps one folder identical to the user's tree on the cluster.

One asyncio task (the engine) does everything that touches the trees, in passes: index what
the watcher (or a rescan) says changed and queue ops; replay the op queue in order; apply the
remote changes the journal brought. A second task keeps the link: it connects with
exponential backoff and jitter while the cluster is away, and follows the change stream from
the saved cursors (re-locating the owner sync node when told to, and catching up through
``ListChanges`` while no sync node answers). Changes are applied to the remote tree and the
cursor advanced in one SQLite transaction, so a restart resumes exactly where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from client._apply import Applier
from client._client import Client, ClientConfig, _call
from client._errors import AuthenticationError, SyncError, UnavailableError
from client._indexer import FolderVanished, Ignore, Indexer
from client._localdb import FOLDER, LocalDB, RemoteRow
from client._ops import OpRunner, is_network
from client._progress import Progress
from client._transfer import Transfer
from client._types import Change, ChangeOp, Entry
from client._watcher import Watcher
from tessera.pb import common_pb2, meta_pb2, sync_pb2, sync_pb2_grpc
from tessera.rpc import open_channel

log = logging.getLogger(__name__)

MOVED_PREFIX = "moved:"


@dataclass(frozen=True)
class DaemonConfig:
    """Everything one daemon needs; defaults suit a person's laptop."""

    folder: Path
    state_dir: Path
    endpoint: str
    token: str
    device_name: str = field(default_factory=socket.gethostname)
    settle: float = 1.0               # seconds a file must rest (unless seen closed)
    rescan_interval: float = 300.0    # full rescan as a safety net under the watcher
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    download_concurrency: int = 8
    mass_delete_min: int = 3
    watch: bool = True


class Mounts:
    """Where each namespace lives in the folder ("" for the user's root namespace)."""

    def __init__(self, root_ns: str, mounts: dict[str, str]) -> None:
        self.root_ns = root_ns
        self.by_ns = dict(mounts)
        self.by_ns.setdefault(root_ns, "")

    def local(self, ns_id: str, ns_path: str) -> str | None:
        """The local relative path of a namespace path (None: not mounted)."""
        mount = self.by_ns.get(ns_id)
        if mount is None:
            return None
        return f"{mount}/{ns_path}" if mount and ns_path else (mount or ns_path)

    def remote(self, rel: str) -> tuple[str, str]:
        """(namespace, path inside it) of a local relative path: the deepest mount wins."""
        best, best_mount = self.root_ns, ""
        for ns_id, mount in self.by_ns.items():
            if mount and (rel == mount or rel.startswith(mount + "/")) and len(mount) > len(best_mount):
                best, best_mount = ns_id, mount
        return best, rel[len(best_mount) + 1:] if best_mount else rel

    def shadowed(self, root_path: str) -> bool:
        """A root-namespace path strictly inside another namespace's mount (history from before
        the folder was shared: those files now live in the shared namespace)."""
        ns_id, inner = self.remote(root_path)
        return ns_id != self.root_ns and inner != ""


class Daemon:
    """``await Daemon(cfg).run()`` syncs until ``stop()``; ``run_once()`` syncs and returns."""

    def __init__(self, cfg: DaemonConfig, progress: Progress | None = None) -> None:
        self.cfg = cfg
        self.root = cfg.folder.resolve()
        self.device_name = cfg.device_name
        self.db = LocalDB(cfg.state_dir / "state.sqlite3")
        self.device_id = self.db.get_meta("device_id") or f"{cfg.device_name[:32]}-{random.getrandbits(48):012x}"
        self.db.set_meta("device_id", self.device_id)
        self.progress = progress or Progress()
        self.indexer = Indexer(self.root, self.db, Ignore(self.root, cfg.state_dir), settle=cfg.settle,
                               closed=self._closed, mass_delete_min=cfg.mass_delete_min)
        self.ops = OpRunner(self)
        self.applier = Applier(self, concurrency=cfg.download_concurrency)
        saved = json.loads(self.db.get_meta("mounts", "{}"))
        self.mounts = Mounts(self.db.get_meta("root_ns"), saved)
        self.client: Client = None  # type: ignore[assignment]
        self.transfer: Transfer = None  # type: ignore[assignment]
        self.online = False
        self.error = ""
        self._blocked = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._went_offline = asyncio.Event()
        self._dirty: set[str] = set()
        self._full_scan = True
        self._deferred: dict[str, float] = {}
        self._watcher: Watcher | None = None
        self._sub_task: asyncio.Task[None] | None = None
        self._idle = False
        self._last_rescan = 0.0
        self.last_error = ""

    # -- hooks for the parts -------------------------------------------------------------
    def _closed(self, rel: str, mtime_ns: int) -> bool:
        return self._watcher is not None and self._watcher.closed_after(rel, mtime_ns)

    def mark_dirty(self, rel: str) -> None:
        """Ask the indexer to look at a path on the next pass."""
        self._dirty.add(rel)
        self._wake.set()

    def defer(self, rel: str) -> None:
        """A file is still being written: look again once it may have settled."""
        self._deferred[rel] = time.monotonic() + max(0.05, self.cfg.settle)

    def wake(self) -> None:
        """Run a pass soon."""
        self._wake.set()

    @property
    def idle(self) -> bool:
        """Online, nothing queued, nothing to apply, nothing waiting to settle."""
        return self._idle

    def status(self) -> dict[str, object]:
        """A snapshot for tests and ``--once`` reports."""
        return {"online": self.online, "ops": len(self.db.ops()), "diff": self.applier.actionable(),
                "deferred": len(self._deferred), "counters": self.db.counters(), "error": self.error}

    # -- test hooks: a network cut at the client's edge --------------------------------------
    def disconnect(self) -> None:
        """Behave as if the network went away (every call fails as UNAVAILABLE until reconnect)."""
        self._blocked = True
        self._offline("network cut")

    def reconnect(self) -> None:
        """Let the link come back."""
        self._blocked = False
        self._wake.set()

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        """Sync until ``stop()``; raises FolderVanished or AuthenticationError to stop for good."""
        if self.cfg.watch:
            self._watcher = Watcher(self.root, asyncio.get_running_loop(), self._wake.set)
            self._watcher.start()
        link = asyncio.create_task(self._keep_linked())
        try:
            while not self._stopping:
                if link.done():
                    link.result()
                await self._pass()
                await self._sleep()
        finally:
            link.cancel()
            await self._shutdown()

    def stop(self) -> None:
        """Ask ``run`` to return."""
        self._stopping = True
        self._wake.set()

    async def _shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._sub_task is not None:
            self._sub_task.cancel()
            with contextlib.suppress(BaseException):
                await self._sub_task
        if self.client is not None:
            await self.client.close()
        self.progress.set_state("stopped")
        self.db.close()

    async def run_once(self, *, timeout: float = 600.0) -> bool:
        """Sync once: index, catch up with the journals, replay, apply; True if fully synced."""
        deadline = time.monotonic() + timeout
        try:
            await self._connect()
        except UnavailableError as e:
            self.indexer.detect(None)
            self.progress.set_state("offline", f"{e.message}; {len(self.db.ops())} changes queued for later")
            await self._shutdown()
            return False
        try:
            while time.monotonic() < deadline:
                for ns_id in list(self.mounts.by_ns):
                    await self.catch_up(ns_id)
                await self._pass()
                if self._idle:
                    return True
                await asyncio.sleep(0.05 if not self._deferred else max(0.05, min(self._deferred.values()) - time.monotonic()))
            return False
        finally:
            await self._shutdown()

    # -- the link ------------------------------------------------------------------------
    async def _connect(self) -> None:
        if self._blocked:
            raise UnavailableError("network cut")
        client = await Client.connect(self.cfg.endpoint, token=self.cfg.token, config=ClientConfig.from_env(device_id=self.device_id))
        try:
            resp = await _call(client._meta.ListNamespaces(meta_pb2.ListNamespacesRequest(), metadata=client._md, timeout=30))
            await client._block_pool()        # once, up front: concurrent first calls would race
        except BaseException:
            await client.close()
            raise
        mounts = {n.namespace_id: n.mount_path for n in resp.namespaces}
        self.mounts = Mounts(client.root_namespace_id, mounts)
        self.db.set_meta("root_ns", client.root_namespace_id)
        self.db.set_meta("mounts", json.dumps(mounts))
        self._adopt_mounts()
        if self.client is not None:
            await self.client.close()
        self.client = client
        self.transfer = Transfer(client, self.db, self.root, on_bytes=self.progress.add_bytes)
        self.online = True
        self._went_offline.clear()
        self.progress.set_state("syncing")

    def _offline(self, why: str) -> None:
        if self.online:
            log.info("offline: %s; changes stay queued and go out when the cluster is back", why)
        self.online = False
        self.last_error = why
        self.progress.set_state("offline", why)
        self._went_offline.set()
        if self._sub_task is not None:
            self._sub_task.cancel()
            self._sub_task = None

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter (half to full of the capped exponential)."""
        delay = min(self.cfg.backoff_cap, self.cfg.backoff_base * 2 ** min(attempt, 20))
        return delay * (0.5 + random.random() / 2)

    async def _keep_linked(self) -> None:
        attempt = 0
        while not self._stopping:
            if self.online:
                if self._sub_task is not None and self._sub_task.done() and not self._sub_task.cancelled():
                    err = self._sub_task.exception()  # the stream ended for good: credentials revoked
                    if isinstance(err, grpc.aio.AioRpcError) and err.code() is grpc.StatusCode.UNAUTHENTICATED:
                        self.error = f"not authorised: {err.details()}"
                        self.progress.set_state("stopped", self.error)
                        self._wake.set()  # ``run`` checks on this task between passes
                        raise AuthenticationError(err.details() or "credentials revoked", err.code())
                if self._sub_task is None or self._sub_task.done():
                    self._sub_task = asyncio.create_task(self._follow())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._went_offline.wait(), 1.0)
                continue
            try:
                await self._connect()
                attempt = 0
                self._wake.set()
            except AuthenticationError as e:
                self.error = f"not authorised: {e.message}"
                self.progress.set_state("stopped", self.error)
                raise
            except SyncError as e:
                attempt += 1
                delay = self._backoff(attempt)
                self.last_error = e.message
                self.progress.set_state("offline", f"{e.message}; retrying in {delay:.1f}s")
                await asyncio.sleep(delay)

    async def _sync_address(self) -> str:
        return await self.client._sync_address()

    async def _follow(self) -> None:
        """Follow the change stream from the saved cursors; re-locate, resume, catch up."""
        attempt = 0
        while self.online:
            try:
                address = await self._sync_address()
                async with open_channel(address, self.client.security, max_message_bytes=64 * 1024 * 1024) as channel:
                    cursors = [common_pb2.Cursor(namespace_id=k, seq=v) for k, v in self.db.cursors().items()]
                    req = sync_pb2.SubscribeRequest(cursors=cursors, device_id=self.device_id)
                    async for ev in sync_pb2_grpc.SyncStub(channel).Subscribe(req, metadata=self.client._md):
                        attempt = 0
                        await self._on_event(ev)
                attempt += 1
            except grpc.aio.AioRpcError as e:
                details = e.details() or ""
                if e.code() is grpc.StatusCode.FAILED_PRECONDITION and details.startswith(MOVED_PREFIX):
                    log.info("sync node handed this account over: re-locating")
                    self.db.bump("stream_moved")
                    continue
                if e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                    self.db.bump("stream_behind")
                    continue
                if e.code() is grpc.StatusCode.UNAUTHENTICATED:
                    raise
                attempt += 1
                log.info("change stream lost (%s): resuming from the saved cursors", e.code().name)
            except SyncError as e:
                if not is_network(e):
                    raise
                attempt += 1
            self.db.bump("stream_restarts")
            try:                                    # while no sync node answers, poll the journal
                for ns_id in list(self.mounts.by_ns):
                    await self.catch_up(ns_id)
            except SyncError as e:
                if is_network(e):
                    self._offline(e.message)
                    return
            await asyncio.sleep(self._backoff(attempt) if attempt > 1 else 0.05)

    # -- journal -------------------------------------------------------------------------
    async def _on_event(self, ev: sync_pb2.SyncEvent) -> None:
        kind = ev.WhichOneof("event")
        if kind == "change":
            await self.apply_change(Change.from_pb(ev.change))
        elif kind == "removed":
            ns_id = ev.removed.namespace_id
            log.warning("access to a shared folder was removed: unchanged files of it leave this device")
            with self.db.tx() as db:
                db.execute("UPDATE remote SET deleted = 1 WHERE ns_id = ?", (ns_id,))
                db.execute("DELETE FROM cursors WHERE ns_id = ?", (ns_id,))
            self._wake.set()
        elif kind == "resync":
            await self.resync(ev.resync.namespace_id)

    async def apply_change(self, ch: Change) -> None:
        """Apply one journal record to the remote tree; exactly once, in order, per namespace."""
        cursor = self.db.cursors().get(ch.namespace_id, 0)
        if ch.seq <= cursor:
            self.db.bump("repeated_changes")
            return
        if ch.seq > cursor + 1:
            self.db.bump("gaps")
            await self.catch_up(ch.namespace_id, upto=ch.seq - 1)
            if ch.seq <= self.db.cursors().get(ch.namespace_id, 0):
                return
        if ch.namespace_id not in self.mounts.by_ns:
            await self._refresh_mounts()
        self._record(ch)
        self._wake.set()

    def _record(self, ch: Change) -> None:
        e = ch.entry
        deleted = e.deleted or ch.op is ChangeOp.DELETE
        row = RemoteRow(ch.namespace_id, e.file_id, e.path, int(e.kind), e.revision, e.size, e.content_hash, deleted, ch.seq)
        if ch.namespace_id == self.mounts.root_ns and self.mounts.shadowed(e.path):
            with self.db.tx():          # the mounted namespace's own journal carries these files
                self.db.set_cursor(ch.namespace_id, ch.seq)
                self.db.bump("changes_applied")
            return
        with self.db.tx():
            if ch.op is ChangeOp.MOVE and ch.old_path and e.kind == FOLDER:
                self.db.move_remote_subtree(ch.namespace_id, ch.old_path, e.path)
            if deleted and e.kind == FOLDER:
                self.db.delete_remote_subtree(ch.namespace_id, e.path, ch.seq)
            self.db.put_remote(row)
            self.db.set_cursor(ch.namespace_id, ch.seq)
            self.db.bump("changes_applied")

    async def catch_up(self, ns_id: str, *, upto: int | None = None) -> None:
        """Read a namespace's journal after the saved cursor through ListChanges."""
        while True:
            cursor = self.db.cursors().get(ns_id, 0)
            if upto is not None and cursor >= upto:
                return
            req = meta_pb2.ListChangesRequest(cursor=common_pb2.Cursor(namespace_id=ns_id, seq=cursor), limit=1000)
            resp = await _call(self.client._meta.ListChanges(req, metadata=self.client._md, timeout=self.client.config.timeout))
            if resp.resync_required:
                await self.resync(ns_id)
                return
            for c in resp.changes:
                ch = Change.from_pb(c)
                if ch.seq == self.db.cursors().get(ns_id, 0) + 1:
                    self._record(ch)
            if resp.changes:
                self._wake.set()
            if not resp.has_more:
                return

    async def resync(self, ns_id: str) -> None:
        """The journal no longer reaches back to our cursor: list the namespace instead."""
        log.warning("journal of namespace %s was trimmed past this device's cursor: listing it afresh", ns_id)
        resp = await _call(self.client._meta.ListNamespaces(meta_pb2.ListNamespacesRequest(), metadata=self.client._md, timeout=30))
        head = next((n.head_seq for n in resp.namespaces if n.namespace_id == ns_id), None)
        if head is None:
            return
        entries: list[Entry] = []
        folders = [""]
        while folders:
            folder = folders.pop()
            for e in await self.client.list(folder, namespace_id=ns_id):
                entries.append(e)
                if e.is_folder:
                    folders.append(e.path)
        seen = {e.file_id for e in entries}
        with self.db.tx() as db:
            db.execute("UPDATE remote SET deleted = 1 WHERE ns_id = ?", (ns_id,))
            for e in entries:
                db.execute("DELETE FROM remote WHERE ns_id = ? AND file_id = ?", (ns_id, e.file_id))
                self.db.put_remote(RemoteRow(ns_id, e.file_id, e.path, int(e.kind), e.revision, e.size, e.content_hash, False, e.seq))
            for path, file_id, kind, rev in db.execute("SELECT path, file_id, kind, revision FROM synced WHERE ns_id = ?", (ns_id,)).fetchall():
                if file_id not in seen and self.db.remote_by_id(ns_id, file_id) is None:
                    self.db.put_remote(RemoteRow(ns_id, file_id, path, kind, rev + "-gone", 0, b"", True, head))
            self.db.set_cursor(ns_id, head)
        self._wake.set()

    async def _refresh_mounts(self) -> None:
        resp = await _call(self.client._meta.ListNamespaces(meta_pb2.ListNamespacesRequest(), metadata=self.client._md, timeout=30))
        mounts = {n.namespace_id: n.mount_path for n in resp.namespaces}
        self.mounts = Mounts(self.client.root_namespace_id, mounts)
        self.db.set_meta("mounts", json.dumps(mounts))
        self._adopt_mounts()

    def _adopt_mounts(self) -> None:
        """Root-namespace rows inside a mount belong to the mounted namespace now."""
        for ns_id, mount in self.mounts.by_ns.items():
            if ns_id != self.mounts.root_ns and mount:
                self.db.adopt_mount(self.mounts.root_ns, ns_id, mount)

    # -- the engine ----------------------------------------------------------------------
    async def _sleep(self) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        timeout = self.cfg.rescan_interval - (now - self._last_rescan)
        if self._deferred:
            timeout = min(timeout, min(self._deferred.values()) - now)
        if self.db.ops() and self.online:
            timeout = min(timeout, self._backoff(1))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.005, timeout))
        self._wake.clear()
        await asyncio.sleep(0.005)        # let a burst of events land in one pass

    async def _pass(self) -> None:
        """Index, replay ops, apply remote changes. One at a time, never concurrently."""
        now = time.monotonic()
        scopes: set[str] | None = set(self._dirty)
        self._dirty.clear()
        if self._watcher is not None:
            scopes |= self._watcher.take()          # type: ignore[operator]
        for rel, due in list(self._deferred.items()):
            if due <= now:
                del self._deferred[rel]
                scopes.add(rel)                     # type: ignore[union-attr]
        if self._full_scan or now - self._last_rescan >= self.cfg.rescan_interval:
            scopes, self._full_scan, self._last_rescan = None, False, now
        try:
            detected = self.indexer.detect(scopes) if scopes is None or scopes else None
        except FolderVanished as e:
            self.error = str(e)
            self.progress.set_state("stopped", self.error)
            log.error("%s", e)
            raise
        if detected is not None:
            for rel in detected.deferred:
                self.defer(rel)
        work = 0
        if self.online and not self._blocked:
            try:
                work += await self.ops.run_all()
                work += await self.applier.reconcile()
            except SyncError as e:
                if not is_network(e):
                    raise
                self._offline(e.message)
            except grpc.aio.AioRpcError as e:
                self._offline(e.details() or e.code().name)
        ops = self.db.ops()
        diff = self.applier.actionable()
        self.progress.queue(len(ops) + diff, 0)
        self._idle = (self.online and not ops and not self._deferred and not self._dirty and work == 0
                      and (diff == 0 or not self._wake.is_set()))
        if self._idle and diff == 0:
            self.progress.set_state("synced")
        elif self.online:
            self.progress.set_state("syncing")
