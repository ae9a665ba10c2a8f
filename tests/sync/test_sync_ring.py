"""Sync-node ring change on a real cluster: when a second sync node joins, the streams of users
it now owns end on the former owner with FAILED_PRECONDITION "moved:", the SDK re-locates the
new owner and keeps delivering (no gap, no repeat), and users that did not move keep their stream.

This test starts its own cluster: it adds a sync node, which must not leak into the session one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from client import Client
from client._types import Change
from devcluster import LocalCluster
from tessera.errors import error_detail
from tessera.pb import errors_pb2, sync_pb2, sync_pb2_grpc
from tessera.ring import SYNC_VNODES, Member, build_ring, key_position
from tessera.rpc import PLAINTEXT, auth_metadata, open_channel
from tests.integration.helpers import new_user

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

USERS = 12


@pytest.fixture
def ring_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster.start(
        tmp_path / "cluster", block_nodes=1, sync_nodes=1, meta_port=0, fast=True
    )
    try:
        yield c
    finally:
        c.stop()


@dataclass
class Watcher:
    """One user: a raw Subscribe stream on the first sync node and an SDK subscription."""

    name: str
    client: Client
    raw: list[tuple[str, int]] = field(default_factory=list)
    sdk: list[tuple[str, int]] = field(default_factory=list)
    raw_status: grpc.StatusCode | None = None
    raw_details: str = ""
    raw_moved: errors_pb2.RingMoved | None = None  # the typed detail the stream ended with
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def _raw_stream(w: Watcher, address: str, token: str) -> None:
    async with open_channel(address, PLAINTEXT) as channel:
        stub = sync_pb2_grpc.SyncStub(channel)
        try:
            async for ev in stub.Subscribe(
                sync_pb2.SubscribeRequest(device_id="raw"), metadata=auth_metadata(token)
            ):
                if ev.WhichOneof("event") == "change":
                    w.raw.append((ev.change.namespace_id, ev.change.seq))
        except grpc.aio.AioRpcError as e:
            w.raw_status, w.raw_details = e.code(), e.details() or ""
            w.raw_moved = error_detail(e, errors_pb2.RingMoved)
            return
        w.raw_status = grpc.StatusCode.OK


async def _sdk_stream(w: Watcher) -> None:
    async for change in w.client.subscribe():
        assert isinstance(change, Change)
        w.sdk.append((change.namespace_id, change.seq))


async def _until(pred, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_ring_change_moves_streams(ring_cluster: LocalCluster, tmp_path: Path) -> None:
    c = ring_cluster
    first = c.sync_addresses[0]
    watchers: list[Watcher] = []
    tokens: dict[str, str] = {}
    try:
        for i in range(USERS):
            name, token = await new_user(c.meta_address, c.admin_token, prefix=f"ring{i}-")
            client = await Client.connect(c.meta_address, token=token)
            w = Watcher(name, client)
            watchers.append(w)
            tokens[name] = token
            src = tmp_path / f"{name}.txt"
            src.write_bytes(f"before {name}".encode())
            await client.put_file(src, "before.txt")
        for w in watchers:
            w.tasks.append(asyncio.create_task(_raw_stream(w, first, tokens[w.name])))
            w.tasks.append(asyncio.create_task(_sdk_stream(w)))
        await _until(
            lambda: all(w.raw and w.sdk for w in watchers), 30, "the first change on every stream"
        )
        await asyncio.sleep(0.5)  # let any replay finish
        for w in watchers:
            assert w.raw == w.sdk, (w.name, w.raw, w.sdk)
        before = {w.name: (list(w.raw), list(w.sdk)) for w in watchers}

        joined = await asyncio.to_thread(c.add_sync_node)
        assert joined["name"] == "sync-1" and joined["pid"] and joined["grpc"] in c.sync_addresses
        state = json.loads(c.state_path.read_text())
        assert [n["name"] for n in state["sync"]] == ["sync-0", "sync-1"], state["sync"]
        assert state["sync"][1]["pid"] == joined["pid"]
        probe = watchers[0].client

        async def two_live() -> list:
            info = await probe.cluster_info()
            return [n for n in info.sync_nodes if n.up]

        live: list = []
        for _ in range(200):
            live = await two_live()
            if len(live) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(live) == 2, live
        ring = build_ring(
            [Member(n.id, n.address, n.zone or "default") for n in live], vnodes=SYNC_VNODES
        )
        new_id = str(joined.get("node_id") or joined["name"])
        owner = {w.name: ring.owners(key_position(w.client.user_id), 1)[0] for w in watchers}
        moved = [w for w in watchers if owner[w.name] == new_id]
        stayed = [w for w in watchers if owner[w.name] != new_id]
        assert moved and stayed, (owner, new_id)

        # every moved user's stream to the former owner ends with "moved:"
        await _until(lambda: all(w.tasks[0].done() for w in moved), 30, "moved streams to end")
        for w in moved:
            assert w.raw_status is grpc.StatusCode.FAILED_PRECONDITION, (
                w.name,
                w.raw_status,
                w.raw_details,
            )
            assert w.raw_details.startswith("moved:"), w.raw_details
            assert w.raw_moved == errors_pb2.RingMoved(ring="sync"), w.name

        # a change committed after the join reaches everyone exactly once
        for w in watchers:
            src = tmp_path / f"{w.name}-after.txt"
            src.write_bytes(f"after {w.name}".encode())
            await w.client.put_file(src, "after.txt")
        await _until(
            lambda: all(len(w.sdk) > len(before[w.name][1]) for w in watchers),
            30,
            "the change after the join (SDK)",
        )
        await _until(
            lambda: all(len(w.raw) > len(before[w.name][0]) for w in stayed),
            30,
            "the change after the join (raw, stayed)",
        )
        await asyncio.sleep(1.0)  # room for a repeat to show up
        for w in watchers:
            old = before[w.name][1]
            ns, last = old[-1]
            assert w.sdk == [*old, (ns, last + 1)], (w.name, w.sdk)
            assert [s for _, s in w.sdk] == list(range(1, last + 2)), (
                w.name,
                w.sdk,
            )  # no gap, no repeat
        for w in stayed:
            assert not w.tasks[0].done(), (w.name, w.raw_status, w.raw_details)
            assert w.raw == w.sdk, (w.name, w.raw, w.sdk)
        for w in moved:
            assert w.raw == before[w.name][0], (w.name, w.raw)
    finally:
        for w in watchers:
            for t in w.tasks:
                t.cancel()
            for t in w.tasks:
                with contextlib.suppress(BaseException):
                    await t
            await w.client.close()
