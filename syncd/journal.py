"""The daemon's side of the journals: change records into the remote tree, exactly once and
in order per namespace; catching up through ``ListChanges``; listing a namespace afresh when
its journal was trimmed; which namespace is mounted where. Mixed into ``Daemon``."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from client import Change, Cursor, FeedEvent
from syncd.localdb import RemoteRow
from syncd.mounts import Mounts

log = logging.getLogger(__name__)


class JournalFollower:
    """Journal handling for ``Daemon`` (which provides ``db``, ``mounts``, ``client``, ``_wake``)."""

    db: Any
    mounts: Any
    client: Any
    _wake: asyncio.Event
    _delivered: bool

    async def _on_event(self, ev: FeedEvent) -> None:
        kind = ev.kind
        self._delivered = True
        if ev.change is not None:
            await self.apply_change(ev.change)
        elif kind == "removed":
            ns_id = ev.namespace_id
            log.warning(
                "access to a shared folder was removed: unchanged files of it leave this device"
            )
            self.db.namespace_removed(ns_id)
            self._wake.set()
        elif kind == "resync":
            await self.resync(ev.namespace_id)

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
        shadowed = ch.namespace_id == self.mounts.root_ns and self.mounts.shadowed(ch.entry.path)
        self.db.record_change(ch, shadowed=shadowed)

    async def catch_up(self, ns_id: str, *, upto: int | None = None) -> None:
        """Read a namespace's journal after the saved cursor through ListChanges."""
        while True:
            cursor = self.db.cursors().get(ns_id, 0)
            if upto is not None and cursor >= upto:
                return
            changes, _, has_more, resync = await self.client.list_changes(
                Cursor(ns_id, cursor), limit=1000
            )
            if resync:
                await self.resync(ns_id)
                return
            for ch in changes:
                if ch.seq == self.db.cursors().get(ns_id, 0) + 1:
                    self._record(ch)
            if changes:
                self._wake.set()
            if not has_more:
                return

    async def resync(self, ns_id: str) -> None:
        """The journal no longer reaches back to our cursor: list the namespace instead."""
        log.warning(
            "journal of namespace %s was trimmed past this device's cursor: listing it afresh",
            ns_id,
        )
        head = next(
            (n.head_seq for n in await self.client.namespaces() if n.namespace_id == ns_id), None
        )
        if head is None:
            return
        entries = await self.client.list_tree(namespace_id=ns_id)
        self.db.replace_remote_namespace(
            ns_id,
            [
                RemoteRow(
                    ns_id,
                    e.file_id,
                    e.path,
                    int(e.kind),
                    e.revision,
                    e.size,
                    e.content_hash,
                    False,
                    e.seq,
                    e.executable,
                )
                for e in entries
            ],
            head,
        )
        self._wake.set()

    async def _refresh_mounts(self) -> None:
        mounts = {n.namespace_id: n.mount_path for n in await self.client.namespaces()}
        self.mounts = Mounts(self.client.root_namespace_id, mounts)
        self.db.set_meta("mounts", json.dumps(mounts))
        self._adopt_mounts()

    def _adopt_mounts(self) -> None:
        """Root-namespace rows inside a mount belong to the mounted namespace now."""
        for ns_id, mount in self.mounts.by_ns.items():
            if ns_id != self.mounts.root_ns and mount:
                self.db.adopt_mount(self.mounts.root_ns, ns_id, mount)
