"""Per-user change feeds, with no gRPC in them.

A subscription keeps one cursor per namespace and a set of namespaces known to have moved
forward ("dirty"). Notifications only mark namespaces dirty and wake the subscription; the
changes themselves are pulled from the journal page by page by a producer task into a bounded
queue that the stream drains. A client that reads slower than the journal grows that queue
only up to ``max_queue`` events: when it stays full for ``stall_timeout`` seconds the stream
ends with ``Behind`` (the client resumes from its cursor), so a slow client never grows the
node's memory without bound. A slow poll of the heads covers a lost notification, and a
namespace the user can no longer see is dropped (``Removed``) as soon as the journal refuses
it, or on the next membership notification or poll.
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
    """A namespace the user can see, and its journal bounds."""

    ns_id: str
    head_seq: int
    oldest_seq: int


@dataclass(frozen=True)
class Heartbeat:
    """Sent on an idle stream."""

    at_us: int


@dataclass(frozen=True)
class Removed:
    """The user lost access to a namespace: the device forgets it."""

    ns_id: str


@dataclass(frozen=True)
class Resync:
    """The device's cursor is older than the journal keeps: it must list the namespace."""

    ns_id: str


class Moved(Exception):
    """This node no longer owns the user: the client must find the new owner."""


class Behind(Exception):
    """The client reads too slowly: the stream ends and the client resumes from its cursor."""


class AccessLost(Exception):
    """The journal source refuses a namespace to this user (share revoked)."""


class JournalSource(Protocol):
    """Where journals come from (the metanode, on behalf of the user)."""

    async def namespaces(self, user_id: str) -> list[NamespaceHead]:
        """The namespaces the user can see, with their heads."""
        ...

    async def changes(
        self, user_id: str, ns_id: str, after: int, limit: int
    ) -> tuple[list[Any], bool, bool]:
        """(changes with .seq after ``after``, has_more, resync_required); AccessLost if revoked."""
        ...


@dataclass(eq=False)
class Subscription:
    """One open stream's state, shared between the producer and the notifier."""

    user_id: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dirty: set[str] = field(default_factory=set)
    refresh: bool = False  # re-read the namespace list (membership changed)
    moved: bool = False
    queue: asyncio.Queue[Any] | None = None  # events buffered for the stream


class Feed:
    """Registry of live subscriptions; the service calls ``follow`` and ``notify``."""

    def __init__(
        self,
        source: JournalSource,
        *,
        owns: Callable[[str], bool],
        heartbeat: float,
        poll_interval: float,
        max_queue: int = 2 * PAGE,
        stall_timeout: float = 30.0,
    ) -> None:
        """Create the feed.

        Args:
            source: where namespaces and journals are read from.
            owns: whether this node owns a user on the sync ring now.
            heartbeat: seconds of silence before a heartbeat.
            poll_interval: seconds between slow polls of the heads.
            max_queue: events buffered per stream at most.
            stall_timeout: seconds a full buffer may stay full before the stream ends.
        """
        self._source = source
        self._owns = owns
        self._heartbeat = heartbeat
        self._poll = poll_interval
        self._max_queue = max(1, max_queue)
        self._stall = stall_timeout
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self.ended_behind = 0

    @property
    def stream_count(self) -> int:
        """Open subscriptions on this node."""
        return sum(len(s) for s in self._subs.values())

    def _queues(self) -> list[int]:
        return [s.queue.qsize() for subs in self._subs.values() for s in subs if s.queue]

    @property
    def queued_events(self) -> int:
        """Events buffered for all open streams, not yet sent."""
        return sum(self._queues())

    @property
    def longest_queue(self) -> int:
        """Events buffered for the most backed-up stream."""
        return max(self._queues(), default=0)

    def notify(self, ns_id: str, user_ids: list[str], seq: int = -1) -> None:
        """A namespace moved forward (``seq`` > 0) or its membership changed (``seq`` == 0)."""
        for uid in user_ids:
            for sub in self._subs.get(uid, ()):
                sub.dirty.add(ns_id)
                if seq == 0:
                    sub.refresh = True
                sub.wake.set()

    def ring_changed(self) -> None:
        """Re-check ownership of every subscribed user; streams of users now owned elsewhere end."""
        for uid, subs in self._subs.items():
            if not self._owns(uid):
                for sub in subs:
                    sub.moved = True
                    sub.wake.set()

    async def follow(self, user_id: str, cursors: dict[str, int]) -> AsyncIterator[Any]:
        """Replay from the cursors, then follow: yields changes, Heartbeat, Removed and Resync.

        Raises:
            Moved: this node does not (or no longer) own the user.
            Behind: the client did not keep up with a full buffer for ``stall_timeout``.
        """
        if not self._owns(user_id):
            raise Moved(user_id)
        sub = Subscription(user_id)
        self._subs[user_id].add(sub)  # registered before replay: nothing slips between
        queue: asyncio.Queue[Any] = asyncio.Queue(self._max_queue)
        sub.queue = queue
        producer = asyncio.create_task(self._produce(sub, dict(cursors), queue))
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            producer.cancel()
            with contextlib.suppress(BaseException):
                await producer
            self._subs[user_id].discard(sub)
            if not self._subs[user_id]:
                del self._subs[user_id]

    async def _put(self, queue: asyncio.Queue[Any], item: Any) -> None:
        try:
            await asyncio.wait_for(queue.put(item), self._stall)
        except TimeoutError:
            self.ended_behind += 1
            raise Behind(f"client fell more than {self._max_queue} events behind") from None

    async def _produce(
        self, sub: Subscription, known: dict[str, int], queue: asyncio.Queue[Any]
    ) -> None:
        """Pull journals into the queue; any failure is handed to the consumer to raise."""
        try:
            user_id = sub.user_id
            for item in self._reconcile(known, await self._source.namespaces(user_id), sub):
                await self._put(queue, item)
            last_poll = last_sent = time.monotonic()
            while True:
                if sub.refresh:
                    sub.refresh = False
                    last_poll = time.monotonic()
                    for item in self._reconcile(known, await self._source.namespaces(user_id), sub):
                        await self._put(queue, item)
                while sub.dirty:
                    ns_id = sub.dirty.pop()
                    if ns_id not in known:
                        sub.refresh = True  # a namespace we did not know: a new share?
                        continue
                    async for item in self._drain(user_id, ns_id, known):
                        last_sent = time.monotonic()
                        await self._put(queue, item)
                if sub.moved or not self._owns(user_id):
                    raise Moved(user_id)
                if sub.refresh:
                    continue
                now = time.monotonic()
                if now - last_poll >= self._poll:
                    sub.refresh = True
                    continue
                if now - last_sent >= self._heartbeat:
                    last_sent = now
                    if queue.empty():  # a client with unread events is not idle
                        await self._put(queue, Heartbeat(int(time.time() * 1_000_000)))
                    continue
                timeout = min(self._heartbeat - (now - last_sent), self._poll - (now - last_poll))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.wake.wait(), max(0.01, timeout))
                sub.wake.clear()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - handed over to the stream
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(e)
            if queue.full():  # make room: the error matters more than a buffered event
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        queue.get_nowait()
                queue.put_nowait(e)

    def _reconcile(
        self, known: dict[str, int], heads: list[NamespaceHead], sub: Subscription
    ) -> list[Any]:
        """Mark namespaces with new changes dirty; report namespaces the user lost."""
        out: list[Any] = []
        visible = {h.ns_id for h in heads}
        for ns_id in [n for n in known if n not in visible]:
            del known[ns_id]
            sub.dirty.discard(ns_id)
            out.append(Removed(ns_id))
        for h in heads:
            after = known.setdefault(h.ns_id, 0)
            if h.head_seq > after:
                sub.dirty.add(h.ns_id)
        return out

    async def _drain(self, user_id: str, ns_id: str, known: dict[str, int]) -> AsyncIterator[Any]:
        while ns_id in known:
            try:
                changes, more, resync = await self._source.changes(
                    user_id, ns_id, known[ns_id], PAGE
                )
            except AccessLost:
                del known[ns_id]
                yield Removed(ns_id)
                return
            if resync:
                heads = {h.ns_id: h for h in await self._source.namespaces(user_id)}
                if ns_id in heads:
                    known[ns_id] = heads[ns_id].head_seq  # the client lists, then follows from here
                yield Resync(ns_id)
                return
            for change in changes:
                if change.seq <= known[ns_id]:
                    continue
                known[ns_id] = change.seq
                yield change
            if not more:
                return
