"""The sync daemon: keeps one folder identical to the user's tree on the cluster.

One asyncio task (the engine) does everything that touches the trees, in passes: index what
the watcher (or a rescan) says changed and queue ops; replay the op queue; apply the remote
changes. A second task keeps the link (backoff with jitter while the cluster is away) and
follows the change stream from the saved cursors (re-locating the owner sync node when told,
catching up through ``ListChanges`` while none answers). A change goes into the remote tree
with its cursor in one SQLite transaction, so a restart resumes exactly where it stopped.

If the folder's root marker is missing (unmounted, deleted, replaced) the daemon pauses: it
says so, deletes nothing, and resumes by itself once the folder is back. Its state ("up to
date" only when nothing is queued, in flight or waiting remotely) is computed live
(``report``) and served on a local socket for ``tessera sync status`` (``syncd.status``).
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
from typing import Any

import grpc

from client import (
    AuthenticationError,
    Client,
    ClientConfig,
    SyncError,
    UnavailableError,
)
from syncd.apply import Applier
from syncd.backoff import Backoff
from syncd.indexer import FolderVanished, Ignore, Indexer, check_root
from syncd.journal import JournalFollower
from syncd.localdb import LocalDB, RemoteRow, SyncedRow
from syncd.mounts import Mounts
from syncd.ops import OpRunner, is_network
from syncd.progress import Progress
from syncd.selective import Selective
from syncd.status import VIEW_ONLY, StatusServer, control, status_report
from syncd.transfer import Transfer
from syncd.watcher import Watcher

log = logging.getLogger(__name__)

ROOT_CHECK = 1.0  # seconds between looks at the root marker while idle


@dataclass(frozen=True)
class DaemonConfig:
    """Everything one daemon needs; defaults suit a person's laptop."""

    folder: Path
    state_dir: Path
    endpoint: str
    token: str
    device_name: str = field(default_factory=socket.gethostname)
    settle: float = 1.0  # seconds a file must rest (unless seen closed)
    rescan_interval: float = 300.0  # full rescan as a safety net under the watcher
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    download_concurrency: int = 8
    watch: bool = True
    status_socket: bool = True  # serve ``tessera sync status`` (``run`` only)


class Daemon(JournalFollower):
    """``await Daemon(cfg).run()`` syncs until ``stop()``; ``run_once()`` syncs and returns."""

    def __init__(self, cfg: DaemonConfig, progress: Progress | None = None) -> None:
        self.cfg = cfg
        self.root = cfg.folder.resolve()
        self.device_name = cfg.device_name
        self.db = LocalDB(cfg.state_dir / "state.sqlite3")
        self.device_id = (
            self.db.get_meta("device_id") or f"{cfg.device_name[:32]}-{random.getrandbits(48):012x}"
        )
        self.db.set_meta("device_id", self.device_id)
        self.progress = progress or Progress()
        self.progress.report = self.report
        self.progress.on_done = self.db.unskip_under
        self.selective = Selective(self)
        self.indexer = Indexer(
            self.root,
            self.db,
            Ignore(self.root, cfg.state_dir),
            settle=cfg.settle,
            closed=self._closed,
            hidden=self.selective.hidden,
            twin_name=lambda rel: self.ops.conflicted_copy(rel),
        )
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
        self.backoff = Backoff(cfg.backoff_base, cfg.backoff_cap)
        self.paused = ""  # why the folder is not synced now (root marker missing)
        self._heads: dict[str, int] = {}  # namespace -> journal head when last connected
        self._status_server: StatusServer | None = None
        self._stop_event = asyncio.Event()
        self._online_since = 0.0
        self._delivered = False

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
        return {
            "online": self.online,
            "ops": len(self.db.ops()),
            "diff": self.applier.actionable(),
            "deferred": len(self._deferred),
            "counters": self.db.counters(),
            "error": self.error,
            "paused": self.paused,
        }

    def note_failed(self, rel: str, status: grpc.StatusCode | None, message: str) -> None:
        """A local change the cluster refused: keep it here and list it in the status."""
        if status is grpc.StatusCode.PERMISSION_DENIED:
            self.db.skip(
                rel,
                f"{VIEW_ONLY}: you cannot edit this shared folder; your change is kept on this device only",
            )
        else:
            self.db.skip(rel, f"not synced: {message}")

    def rescan(self) -> None:
        """Index the whole folder on the next pass."""
        self._full_scan = True
        self._wake.set()

    def pending_paths(self) -> set[str]:
        """Local paths seen changing but not indexed yet (settling or dirty)."""
        out = set(self._deferred) | set(self._dirty)
        if self._watcher is not None:
            out |= self._watcher.pending
        return out

    def waits(self, rel: str) -> bool:
        """Remote changes at ``rel`` are not applied here: excluded, or the daemon's own file."""
        return self.selective.covers(rel) or self.indexer.ignore.reserved(rel)

    def remote_todo(self) -> list[tuple[RemoteRow, SyncedRow | None]]:
        """Remote changes still to apply on this device (not excluded, mounted here)."""
        out = []
        for r, s in self.db.remote_diff():
            rel = self.mounts.local(r.ns_id, r.path)
            if rel is None or self.waits(rel) or (s is not None and self.waits(s.path)):
                continue
            out.append((r, s))
        return out

    def _behind(self) -> bool:
        cursors = self.db.cursors()
        return any(
            cursors.get(ns, 0) < head for ns, head in self._heads.items() if ns in self.mounts.by_ns
        )

    @property
    def up_to_date(self) -> bool:
        """Online, and nothing queued, settling, in flight, excluding or waiting remotely."""
        return (
            self.online
            and not self.paused
            and not self.error
            and not self.db.ops()
            and not self.pending_paths()
            and not self.progress.transfers
            and not self._behind()
            and not self.remote_todo()
            and all(state != "excluding" for state in self.selective.paths.values())
        )

    def state(self) -> tuple[str, str]:
        """(state, detail): stopped, paused, offline, up to date or syncing."""
        if self.error:
            return "stopped", self.error
        if self.paused:
            return "paused", self.paused
        if not self.online:
            return "offline", self.last_error
        return ("up to date", "") if self.up_to_date else ("syncing", "")

    def report(self) -> dict[str, Any]:
        """What ``tessera sync status`` prints (``syncd.status.report``)."""
        return status_report(self)

    async def control(self, req: dict[str, Any]) -> dict[str, Any]:
        """Answer one request on the status socket."""
        return await control(self, req)

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
        """Sync until ``stop()``; raises AuthenticationError to stop for good (a missing folder
        pauses instead: see ``_check_root``)."""
        self._start_watcher()
        if self.cfg.status_socket:
            self._status_server = StatusServer(self.cfg.state_dir, self.control)
            if not await self._status_server.start():
                self._status_server = None
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
        self._stop_event.set()
        self._wake.set()

    def _start_watcher(self) -> None:
        if self.cfg.watch and self._watcher is None and self.root.is_dir():
            self._watcher = Watcher(self.root, asyncio.get_running_loop(), self._wake.set)
            self._watcher.start()

    async def _shutdown(self) -> None:
        if self._status_server is not None:
            await self._status_server.stop()
            self._status_server = None
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
            if self._check_root():
                self.indexer.detect(None)
                self.progress.set_state(
                    "offline", f"{e.message}; {len(self.db.ops())} changes queued for later"
                )
            await self._shutdown()
            return False
        try:
            while time.monotonic() < deadline:
                for ns_id in list(self.mounts.by_ns):
                    await self.catch_up(ns_id)
                await self._pass()
                if self._idle:
                    return True
                if self.paused:
                    return False
                await asyncio.sleep(
                    0.05
                    if not self._deferred
                    else max(0.05, min(self._deferred.values()) - time.monotonic())
                )
            return False
        finally:
            await self._shutdown()

    # -- the link ------------------------------------------------------------------------
    async def _connect(self) -> None:
        if self._blocked:
            raise UnavailableError("network cut")
        client = await Client.connect(
            self.cfg.endpoint,
            token=self.cfg.token,
            config=ClientConfig.from_env(device_id=self.device_id),
        )
        try:
            namespaces = await client.namespaces()
            await client.connect_blocks()  # once, up front: a cluster without block nodes is away
        except BaseException:
            await client.close()
            raise
        mounts = {n.namespace_id: n.mount_path for n in namespaces}
        self._heads = {n.namespace_id: n.head_seq for n in namespaces}
        self.mounts = Mounts(client.root_namespace_id, mounts)
        self.db.set_meta("root_ns", client.root_namespace_id)
        self.db.set_meta("mounts", json.dumps(mounts))
        self._adopt_mounts()
        if self.client is not None:
            await self.client.close()
        self.client = client
        self.transfer = Transfer(
            client, self.db, self.root, on_bytes=self.progress.add_bytes, progress=self.progress
        )
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
        """One jittered delay of this daemon's backoff (see ``Backoff``)."""
        return Backoff(self.cfg.backoff_base, self.cfg.backoff_cap).delay(attempt)

    async def _try_connect(self) -> str | None:
        """One connection attempt: None on success, else why it failed (as text only: holding
        the exception would hold the failed call, and gRPC keeps redialling for a live call)."""
        self.backoff.attempts.append(time.monotonic())
        try:
            await self._connect()
        except AuthenticationError as e:
            self._stop_unauthorised(e.message)
            raise
        except SyncError as e:
            return e.message
        self._online_since = time.monotonic()
        self._delivered = False
        return None

    def _stop_unauthorised(self, why: str) -> None:
        self.error = f"not authorised: {why}"
        self.progress.set_state("stopped", self.error)
        self._wake.set()  # ``run`` checks on the link task between passes

    def _link_held(self) -> bool:
        """The link did real work (delivered a change, finished an op) or stayed up a while."""
        return self._delivered or time.monotonic() - self._online_since >= max(
            5.0, self.cfg.backoff_cap
        )

    async def _keep_linked(self) -> None:
        """Stay connected; while the cluster is away, retry with growing jittered delays.

        The backoff resets only once a link held (``_link_held``): a cluster that accepts the
        connection and fails right after does not make the daemon redial at full speed."""
        while not self._stopping:
            if self.online:
                if (
                    self._sub_task is not None
                    and self._sub_task.done()
                    and not self._sub_task.cancelled()
                ):
                    err = (
                        self._sub_task.exception()
                    )  # the stream ended for good: credentials revoked
                    if isinstance(err, AuthenticationError):
                        self._stop_unauthorised(err.message or "credentials revoked")
                        raise AuthenticationError(err.message or "credentials revoked", err.status)
                if self._sub_task is None or self._sub_task.done():
                    self._sub_task = asyncio.create_task(self._follow())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._went_offline.wait(), 1.0)
                if self.online and self._link_held():
                    self.backoff.succeeded()
                elif not self.online and not self._link_held():
                    await self._wait(
                        self.backoff.next_delay()
                    )  # up, then down at once: not a success
                continue
            why = await self._try_connect()
            if why is None:
                self._wake.set()
                continue
            delay = self.backoff.next_delay()
            self.last_error = why
            self.progress.set_state("offline", f"{why}; retrying in {delay:.1f}s")
            await self._wait(delay)

    async def _wait(self, seconds: float) -> None:
        """Sleep, unless asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)

    async def _follow(self) -> None:
        """Follow the change stream from the saved cursors; re-locate, resume, catch up."""
        attempt = 0
        while self.online:
            try:
                async for ev in self.client.changes(self.db.cursors):
                    if ev.kind == "moved":
                        log.info("sync node handed this account over: re-located")
                        self.db.bump("stream_moved")
                    elif ev.kind == "behind":
                        self.db.bump("stream_behind")
                    else:
                        attempt = 0
                        await self._on_event(ev)
                attempt += 1
            except AuthenticationError:
                raise
            except SyncError as e:
                attempt += 1
                log.info("change stream lost (%s): resuming from the saved cursors", e.message)
            self.db.bump("stream_restarts")
            try:  # while no sync node answers, poll the journal
                for ns_id in list(self.mounts.by_ns):
                    await self.catch_up(ns_id)
            except SyncError as e:
                if is_network(e):
                    self._offline(e.message)
                    return
            await asyncio.sleep(self._backoff(attempt) if attempt > 1 else 0.05)

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
        timeout = min(timeout, ROOT_CHECK)  # notice an unmounted folder, or its return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.005, timeout))
        self._wake.clear()
        await asyncio.sleep(0.005)  # let a burst of events land in one pass

    def _check_root(self) -> bool:
        """Is the folder there with its marker? If not, pause (and say so) until it is back."""
        try:
            check_root(self.root, self.db)
        except FolderVanished as e:
            if self.paused != str(e):
                log.warning("%s", e)
            self.paused = str(e)
            self.progress.set_state("paused", self.paused)
            if self._watcher is not None:
                self._watcher.stop()
                self._watcher = None
            return False
        if self.paused:
            log.warning("%s is back: syncing again", self.root)
            self.paused = ""
            self._full_scan = True
            self._start_watcher()
        return True

    async def _pass(self) -> None:
        """Index, replay ops, apply remote changes. One at a time, never concurrently."""
        if not self._check_root():
            self._idle = False
            return
        now = time.monotonic()
        scopes: set[str] | None = set(self._dirty)
        self._dirty.clear()
        if self._watcher is not None:
            scopes |= self._watcher.take()  # type: ignore[operator]
        for rel, due in list(self._deferred.items()):
            if due <= now:
                del self._deferred[rel]
                scopes.add(rel)  # type: ignore[union-attr]
        if self._full_scan or now - self._last_rescan >= self.cfg.rescan_interval:
            scopes, self._full_scan, self._last_rescan = None, False, now
        try:
            detected = self.indexer.detect(scopes) if scopes is None or scopes else None
        except FolderVanished:
            self._check_root()  # vanished since the check above: pause
            self._idle = False
            return
        if detected is not None:
            for rel in detected.deferred:
                self.defer(rel)
        work = 0
        if self.online and not self._blocked:
            if (detected is not None and detected.ops) or self._wake.is_set():
                self.progress.set_state("syncing")
            try:
                work += await self.ops.run_all()
                work += await self.applier.reconcile()
                work += await self.selective.settle()
            except SyncError as e:
                if not is_network(e):
                    raise
                self._offline(e.message)
            except grpc.aio.AioRpcError as e:
                self._offline(e.details() or e.code().name)
        if work:
            self._delivered = True
        ops = self.db.ops()
        diff = self.applier.actionable()
        self.progress.queue(len(ops) + diff, 0)
        self._idle = (
            self.online
            and not ops
            and not self._deferred
            and not self._dirty
            and work == 0
            and (diff == 0 or not self._wake.is_set())
        )
        if self.online:
            self.progress.set_state(
                *(("syncing", "") if ops or diff or self._deferred else self.state())
            )
