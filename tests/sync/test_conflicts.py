"""Offline edits on two devices, then reconnection: nothing anyone wrote is lost."""

from __future__ import annotations

import asyncio

import pytest

from tests.sync.helpers import converge

pytestmark = pytest.mark.cluster


async def test_both_offline_edit_same_file(devices) -> None:
    a, b = await devices(2)
    a.write("shared.txt", b"base\n")
    await converge([a, b])

    a.daemon.disconnect()
    b.daemon.disconnect()
    a.write("shared.txt", b"edited on A while offline\n")
    b.write("shared.txt", b"edited on B while offline\n")
    a.write("only-a.txt", b"queued on A")
    await asyncio.sleep(0.6)
    assert a.daemon.db.ops() and b.daemon.db.ops(), "offline changes are queued"

    a.daemon.reconnect()
    await converge([a], timeout=30)
    b.daemon.reconnect()
    t = await converge([a, b])

    copies = [p for p in t if "conflicted copy" in p]
    assert len(copies) == 1 and "dev1" in copies[0], t
    contents = {a.p(p).read_bytes() for p in ("shared.txt", copies[0])}
    assert contents == {b"edited on A while offline\n", b"edited on B while offline\n"}
    assert "only-a.txt" in t
    assert b.counters().get("conflicts") == 1


async def test_edit_against_delete_keeps_the_edit(devices) -> None:
    a, b = await devices(2)
    a.write("keep.txt", b"v1")
    a.write("gone-here.txt", b"v1")
    await converge([a, b])

    a.daemon.disconnect()
    b.daemon.disconnect()
    a.p("keep.txt").unlink()  # A deletes, B edits
    b.write("keep.txt", b"v2 edited on B")
    a.write("gone-here.txt", b"v2 edited on A")  # A edits, B deletes
    b.p("gone-here.txt").unlink()
    await asyncio.sleep(0.6)

    a.daemon.reconnect()
    await converge([a], timeout=30)
    b.daemon.reconnect()
    t = await converge([a, b])
    assert a.p("keep.txt").read_bytes() == b"v2 edited on B"
    assert b.p("gone-here.txt").read_bytes() == b"v2 edited on A"
    assert not [p for p in t if "conflicted" in p]
