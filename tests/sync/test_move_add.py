"""Issue 9, failure 6: a folder move and a concurrent add converge, the added files in the
moved folder on every device and on the server (Dropbox semantics)."""

from __future__ import annotations

import asyncio

import pytest

from client import Client
from tests.sync.helpers import converge

pytestmark = pytest.mark.cluster


async def test_files_added_to_a_folder_moved_meanwhile_land_in_the_moved_folder(
    devices, cluster
) -> None:
    x, y = await devices(2)
    x.write("subdir/base.txt", b"on both")
    await converge([x, y])

    y.daemon.disconnect()  # Y adds before it sees the move
    added = {f"new-{i}.txt": f"added on Y {i}".encode() for i in range(5)}
    for name, data in added.items():
        y.write(f"subdir/{name}", data)
    y.write("subdir/deeper/nested.txt", b"in a new folder inside")
    await asyncio.sleep(0.6)
    assert len(y.daemon.db.ops()) >= 6

    x.p("subdir").rename(x.p("subdir2"))
    await converge([x], timeout=30)
    y.daemon.reconnect()
    t = await converge([x, y])

    assert "subdir" not in t and "subdir2/base.txt" in t
    for name, data in added.items():
        assert x.p(f"subdir2/{name}").read_bytes() == data
    assert x.p("subdir2/deeper/nested.txt").read_bytes() == b"in a new folder inside"
    async with await Client.connect(cluster.meta_address, token=x.cfg.token) as c:
        assert [e.path for e in await c.list()] == ["subdir2"]
        assert {e.name for e in await c.list("subdir2")} == {"base.txt", "deeper", *added}
