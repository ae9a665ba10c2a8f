"""Issue 9, failure 2: a folder delete removes only what the deleting device had seen."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from client import Client
from tests.sync.helpers import converge

pytestmark = pytest.mark.cluster


async def test_folder_delete_keeps_files_the_device_never_saw(devices, cluster) -> None:
    x, y = await devices(2)
    x.write("subdir/old.txt", b"both devices have this")
    x.write("elsewhere.txt", b"keeps the folder from looking unmounted")
    await converge([x, y])

    x.daemon.disconnect()  # X stops hearing about changes
    added = {f"subdir/new-{i}.txt": f"added on Y {i}".encode() * 1000 for i in range(3)}
    for rel, data in added.items():
        y.write(rel, data)
    await converge([y], timeout=30)  # committed on the server

    shutil.rmtree(x.p("subdir"))  # X deletes the folder it knew, never having seen Y's files
    await asyncio.sleep(0.6)
    assert any(op.kind == "delete" for op in x.daemon.db.ops())
    x.daemon.reconnect()
    t = await converge([x, y])

    assert "subdir/old.txt" not in t  # what X saw is deleted everywhere
    for rel, data in added.items():  # what it did not see survives, on Y's disk and back on X
        assert y.p(rel).read_bytes() == data
        assert x.p(rel).read_bytes() == data
    async with await Client.connect(cluster.meta_address, token=x.cfg.token) as c:
        assert sorted(e.path for e in await c.list("subdir")) == sorted(added)
