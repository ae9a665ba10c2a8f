"""Per-user change feeds, with no gRPC in them.

A subscription keeps one cursor per namespace and a set of namespaces known to have moved
forward ("dirty"). Notifications only mark namespaces dirty and wake the subscription; the
changes themselves are pulled from the journal page by page, so a slow client holds at most
one page in memory and a burst of notifications costs nothing extra. A slow poll of the heads
covers a lost notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

PAGE = 500


@dataclass(frozen=True)
class NamespaceHead:
    ns_id: str
    head_seq: int
    oldest_seq: int


@dataclass(frozen=True)
class Heartbeat:
    at_us: int


@dataclass(frozen=True)
class Removed:
    ns_id: str


@dataclass(frozen=True)
class Resync:
    ns_id: str


class Moved(Exception):
    """This node no longer owns the user: the client must find the new owner."""


class JournalSource(Protocol):
    """Where journals come from (the metanode, on behalf of the user)."""

    async def namespaces(self, user_id: str) -> list[NamespaceHead]: ...

    async def changes(
        self, user_id: str, ns_id: str, after: int, limit: int
    ) -> tuple[list[Any], bool, bool]:
        """(changes with .seq after ``after``, has_more, resync_required)."""
        ...


@dataclass(eq=False)
class Subscription:
    user_id: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dirty: set[str] = field(default_factory=set)
    moved: bool = False


class Feed:
    """Registry of live subscriptions; the service calls ``follow`` and ``notify``."""

    def __init__(
        self,
        source: JournalSource,
        *,
        owns: Callable[[str], bool],
        heartbeat: float,
        poll_interval: float,
    ) -> None:
        self._source = source
        self._owns = owns
        self._heartbeat = heartbeat
        self._poll = poll_interval
        self._subs: dict[str, set[Subscription]] = defaultdict(set)

    @property
    def stream_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def notify(self, ns_id: str, user_ids: list[str]) -> None:
        for uid in user_ids:
            for sub in self._subs.get(uid, ()):
                sub.dirty.add(ns_id)
                sub.wake.set()

    def ring_changed(self) -> None:
        """Re-check ownership of every subscribed user; streams of users now owned elsewhere end."""
        for uid, subs in self._subs.items():
            if not self._owns(uid):
                for sub in subs:
                    sub.moved = True
                    sub.wake.set()

    async def follow(self, user_id: str, cursors: dict[str, int]) -> AsyncIterator[Any]:
        """Replay from the cursors, then follow: yields changes, Heartbeat, Removed and Resync."""
        if not self._owns(user_id):
            raise Moved(user_id)
        sub = Subscription(user_id)
        self._subs[user_id].add(sub)  # registered before replay: nothing slips between
        try:
            known = dict(cursors)
            heads = await self._source.namespaces(user_id)
            for item in self._reconcile(known, heads, sub):
                yield item
            last_poll = last_sent = time.monotonic()
            while True:
                while sub.dirty:
                    ns_id = sub.dirty.pop()
                    if ns_id not in known:
                        continue
                    async for item in self._drain(user_id, ns_id, known):
                        last_sent = time.monotonic()
                        yield item
                if sub.moved:
                    raise Moved(user_id)
                now = time.monotonic()
                if now - last_poll >= self._poll:
                    last_poll = now
                    heads = await self._source.namespaces(user_id)
                    for item in self._reconcile(known, heads, sub):
                        yield item
                    continue
                if now - last_sent >= self._heartbeat:
                    last_sent = now
                    yield Heartbeat(int(time.time() * 1_000_000))
                    continue
                timeout = min(self._heartbeat - (now - last_sent), self._poll - (now - last_poll))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.wake.wait(), max(0.01, timeout))
                sub.wake.clear()
        finally:
            self._subs[user_id].discard(sub)
            if not self._subs[user_id]:
                del self._subs[user_id]

    def _reconcile(
        self, known: dict[str, int], heads: list[NamespaceHead], sub: Subscription
    ) -> list[Any]:
        """Mark namespaces with new changes dirty; report namespaces the user lost."""
        out: list[Any] = []
        visible = {h.ns_id for h in heads}
        for ns_id in [n for n in known if n not in visible]:
            del known[ns_id]
            out.append(Removed(ns_id))
        for h in heads:
            after = known.setdefault(h.ns_id, 0)
            if h.head_seq > after:
                sub.dirty.add(h.ns_id)
        return out

    async def _drain(self, user_id: str, ns_id: str, known: dict[str, int]) -> AsyncIterator[Any]:
        while True:
            changes, more, resync = await self._source.changes(user_id, ns_id, known[ns_id], PAGE)
            if resync:
                yield Resync(ns_id)
                return
            for change in changes:
                if change.seq <= known[ns_id]:
                    continue
                known[ns_id] = change.seq
                yield change
            if not more:
                return
