"""Kill the sync node a device subscribes to: the device resumes from its cursor, with no
missed and no repeated change."""

from __future__ import annotations

import asyncio

import pytest

from tests.sync.helpers import converge

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


async def test_device_resumes_after_sync_node_dies(cluster, devices) -> None:
    a, b = await devices(2)
    for i in range(5):
        a.write(f"before/{i}.txt", f"before {i}".encode())
    await converge([a, b])
    streamed = b.counters().get("changes_applied", 0)
    assert streamed >= 6

    cluster.kill("sync", 0)
    try:
        for i in range(5):
            a.write(f"during/{i}.txt", f"during {i}".encode())
        await converge([a, b], timeout=60)  # caught up through ListChanges meanwhile
    finally:
        await asyncio.to_thread(cluster.restart, "sync", 0)
    for i in range(5):
        a.write(f"after/{i}.txt", f"after {i}".encode())
    t = await converge([a, b], timeout=60)
    assert len([p for p in t if p.endswith(".txt")]) == 15

    c = b.counters()
    assert c.get("repeated_changes", 0) == 0, c
    assert c.get("gaps", 0) == 0, c
    assert c.get("stream_restarts", 0) >= 1, c
    cursors = b.daemon.db.cursors()
    assert sum(cursors.values()) == c["changes_applied"], (cursors, c)  # every seq exactly once
