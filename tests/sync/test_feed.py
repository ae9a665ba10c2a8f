"""The sync node's feed (pure logic, a fake journal source): replay, follow, bounded buffering,
revocation, hand-off on ring changes."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import pytest

from syncnode.feed import AccessLost, Behind, Feed, Heartbeat, Moved, NamespaceHead, Removed, Resync


@dataclass(frozen=True)
class FakeChange:
    seq: int


class FakeSource:
    """Journals in memory: ns -> head; a namespace can be revoked or trimmed."""

    def __init__(self) -> None:
        self.heads: dict[str, int] = {"ns": 0}
        self.oldest: dict[str, int] = {"ns": 1}
        self.revoked: set[str] = set()

    async def namespaces(self, user_id: str) -> list[NamespaceHead]:
        return [
            NamespaceHead(n, h, self.oldest[n])
            for n, h in self.heads.items()
            if n not in self.revoked
        ]

    async def changes(
        self, user_id: str, ns_id: str, after: int, limit: int
    ) -> tuple[list[FakeChange], bool, bool]:
        if ns_id in self.revoked:
            raise AccessLost(ns_id)
        if after + 1 < self.oldest[ns_id]:
            return [], False, True
        end = min(self.heads[ns_id], after + limit)
        return [FakeChange(s) for s in range(after + 1, end + 1)], end < self.heads[ns_id], False


def feed(source: FakeSource, **kw: object) -> Feed:
    opts: dict[str, object] = {"owns": lambda _u: True, "heartbeat": 0.05, "poll_interval": 10.0}
    opts.update(kw)
    return Feed(source, **opts)  # type: ignore[arg-type]


async def test_replays_then_follows_without_repeats() -> None:
    src = FakeSource()
    src.heads["ns"] = 3
    f = feed(src)
    seen: list[int] = []

    async def consume() -> None:
        async with contextlib.aclosing(f.follow("u", {"ns": 1})) as events:
            async for ev in events:
                if isinstance(ev, FakeChange):
                    seen.append(ev.seq)
                    if ev.seq == 5:
                        return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    src.heads["ns"] = 5
    f.notify("ns", ["u"], 5)
    f.notify("ns", ["u"], 5)  # a duplicate notification costs nothing
    await asyncio.wait_for(task, 2)
    assert seen == [2, 3, 4, 5]
    assert f.stream_count == 0


async def test_heartbeats_on_idle_streams() -> None:
    f = feed(FakeSource())
    agen = f.follow("u", {})
    ev = await asyncio.wait_for(agen.__anext__(), 2)
    assert isinstance(ev, Heartbeat)
    await agen.aclose()


async def test_slow_client_ends_with_behind_and_bounded_memory() -> None:
    src = FakeSource()
    src.heads["ns"] = 10_000
    f = feed(src, max_queue=50, stall_timeout=0.2)
    agen = f.follow("u", {})
    await agen.__anext__()
    await asyncio.sleep(0.5)  # the client stops reading
    with pytest.raises(Behind):
        for _ in range(200):  # it drains at most the bounded buffer
            await asyncio.wait_for(agen.__anext__(), 2)
    assert f.ended_behind == 1


async def test_revoked_share_is_removed_at_once() -> None:
    src = FakeSource()
    src.heads["shared"], src.oldest["shared"] = 2, 1
    f = feed(src)
    agen = f.follow("u", {"ns": 0, "shared": 2})
    await asyncio.sleep(0.05)
    src.revoked.add("shared")
    f.notify("shared", ["u"], 0)  # membership changed
    ev = await asyncio.wait_for(agen.__anext__(), 2)
    while isinstance(ev, Heartbeat):
        ev = await asyncio.wait_for(agen.__anext__(), 2)
    assert ev == Removed("shared")
    await agen.aclose()


async def test_trimmed_cursor_gets_resync() -> None:
    src = FakeSource()
    src.heads["ns"], src.oldest["ns"] = 50, 20
    f = feed(src)
    agen = f.follow("u", {"ns": 5})
    ev = await asyncio.wait_for(agen.__anext__(), 2)
    assert ev == Resync("ns")
    src.heads["ns"] = 51
    f.notify("ns", ["u"], 51)
    ev = await asyncio.wait_for(agen.__anext__(), 2)
    while isinstance(ev, Heartbeat):
        ev = await asyncio.wait_for(agen.__anext__(), 2)
    assert ev == FakeChange(51)  # follows on from the head after the resync
    await agen.aclose()


async def test_ring_change_moves_the_stream() -> None:
    owner = {"yes": True}
    f = feed(FakeSource(), owns=lambda _u: owner["yes"])
    agen = f.follow("u", {})
    await asyncio.wait_for(agen.__anext__(), 2)
    owner["yes"] = False
    f.ring_changed()
    with pytest.raises(Moved):
        while True:
            await asyncio.wait_for(agen.__anext__(), 2)
    with pytest.raises(Moved):
        await f.follow("u", {}).__anext__()
