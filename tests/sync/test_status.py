"""Issue 9, failure 9: the status is true. During a slowed 64 MiB upload (and its download on
the other device) the running daemons say what is left and how far each transfer is, over their
owner-only status socket; "up to date" comes only once the file is on the server (or on disk)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any

import pytest

from client import Client
from client._blocks import BlockPool
from client._errors import NotFoundError
from syncd.status import request
from tests.integration.helpers import new_user
from tests.sync.helpers import Device, converge, run_cli

pytestmark = pytest.mark.cluster

SIZE = 64 * 1024 * 1024


async def test_status_is_truthful_during_a_large_transfer(
    devices, cluster, monkeypatch, tmp_path
) -> None:
    a, b = await devices(2)
    await converge([a, b])
    st = os.stat(a.state / "status.sock")
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == os.getuid()
    assert os.stat(a.state).st_mode & 0o777 == 0o700
    assert (await request(a.state, {"cmd": "status"}))["up_to_date"]
    assert "error" in await request(a.state, {"cmd": "exclude", "paths": ["../outside"]})
    assert "error" in await request(a.state, {"cmd": "nonsense"})

    put, get = BlockPool.put, BlockPool.get

    async def slow_put(self: BlockPool, chunks: list[Any]) -> Any:
        await asyncio.sleep(0.5)
        return await put(self, chunks)

    async def slow_get(self: BlockPool, ticket: Any, hashes: Any) -> Any:
        async for item in get(self, ticket, hashes):
            await asyncio.sleep(0.03)
            yield item

    monkeypatch.setattr(BlockPool, "put", slow_put)
    monkeypatch.setattr(BlockPool, "get", slow_get)
    data = os.urandom(SIZE)
    digest = hashlib.sha256(data).hexdigest()
    staged = a.folder.parent / "big.staged"
    staged.write_bytes(data)
    os.rename(staged, a.p("big.bin"))

    seen: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    done: dict[str, bool] = {"a": False, "b": False}
    async with await Client.connect(cluster.meta_address, token=a.cfg.token) as c:
        for _ in range(2400):  # bounded: 120 s at most
            for name, dev in (("a", a), ("b", b)):
                if done[name]:
                    continue
                rep = await request(dev.state, {"cmd": "status"})
                noticed = any(not r["up_to_date"] for r in seen[name])
                seen[name].append(rep)
                if rep["up_to_date"] and noticed:
                    done[name] = True
                    if name == "a":  # up to date: the server has it
                        try:
                            assert (await c.stat("big.bin")).size == SIZE
                        except NotFoundError:
                            raise AssertionError(
                                "a said up to date before big.bin was committed"
                            ) from None
                    else:  # up to date: the file is here
                        assert hashlib.sha256(b.p("big.bin").read_bytes()).hexdigest() == digest
            if all(done.values()):
                break
            await asyncio.sleep(0.05)
    assert all(done.values()), {k: v[-1] for k, v in seen.items()}

    up = [
        r
        for r in seen["a"]
        if any(t["path"] == "big.bin" and t["direction"] == "up" for t in r["transfers"])
    ]
    assert up, "no snapshot showed the upload in flight"
    mid = [r for r in up if 0 < r["transfers"][0]["done"] < SIZE]
    assert mid, [r["transfers"] for r in up]
    for r in up:
        assert r["state"] == "syncing" and not r["up_to_date"]
        assert r["up"]["files"] == 1 and r["transfers"][0]["total"] == SIZE
        assert r["up"]["bytes"] == SIZE - r["transfers"][0]["done"]

    down = [
        r
        for r in seen["b"]
        if any(t["path"] == "big.bin" and t["direction"] == "down" for t in r["transfers"])
    ]
    assert down, "no snapshot showed the download in flight"
    for r in down:
        assert r["state"] == "syncing" and not r["up_to_date"] and r["down"]["files"] == 1
        assert r["down"]["bytes"] == SIZE - r["transfers"][0]["done"]
    assert any(0 < r["transfers"][0]["done"] < SIZE for r in down)

    rc, stdout = await run_cli("sync", "status", "--state-dir", str(a.state), "--json")
    assert rc == 0, stdout
    rep = json.loads(stdout)
    assert (
        rep["state"] == "up to date"
        and rep["up"] == {"files": 0, "bytes": 0}
        and rep["transfers"] == []
    )
    rc, stdout = await run_cli("sync", "status", "--state-dir", str(a.state))
    assert rc == 0 and "up to date" in stdout and "to upload:   0 files" in stdout, stdout
    rc, stdout = await run_cli("sync", str(a.folder), "--state-dir", str(a.state))
    assert rc == 1 and "already running" in stdout, stdout  # never two daemons on one state


async def test_status_lists_view_only_edits_kept_here(cluster, tmp_path) -> None:
    a_name, a_token = await new_user(cluster.meta_address, cluster.admin_token, prefix="vwa")
    b_name, b_token = await new_user(cluster.meta_address, cluster.admin_token, prefix="vwb")
    a = Device("owner", tmp_path, cluster.meta_address, a_token)
    b = Device("viewer", tmp_path, cluster.meta_address, b_token)
    await a.start()
    await b.start()
    try:
        a.write("team/readme.txt", b"read me")
        await converge([a])
        async with await Client.connect(cluster.meta_address, token=a_token) as ca:
            shared_ns = await ca.share("team", b_name, role="viewer")
        async with await Client.connect(cluster.meta_address, token=b_token) as cb:
            mount = {n.namespace_id: n.mount_path for n in await cb.namespaces()}[shared_ns]
        for _ in range(600):  # bounded: 30 s
            if b.p(f"{mount}/readme.txt").exists():
                break
            await asyncio.sleep(0.05)
        b.write(f"{mount}/readme.txt", b"a viewer's edit")
        rep: dict[str, Any] = {}
        for _ in range(600):
            rep = await request(b.state, {"cmd": "status"})
            if rep["view_only"]:
                break
            await asyncio.sleep(0.05)
        assert [x["path"] for x in rep["view_only"]] == [f"{mount}/readme.txt"], rep
        assert b.p(f"{mount}/readme.txt").read_bytes() == b"a viewer's edit"  # kept here
        assert a.p("team/readme.txt").read_bytes() == b"read me"
        rc, out = await run_cli("sync", "status", "--state-dir", str(b.state))
        assert rc == 0 and "view-only edits kept here: 1" in out, out
    finally:
        await a.stop()
        await b.stop()
