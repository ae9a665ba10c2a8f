"""Revoking a share reaches open subscriptions at once, not on the sync node's slow poll."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from client import Client
from tessera.pb import common_pb2, sync_pb2, sync_pb2_grpc
from tessera.rpc import auth_metadata, open_channel
from tests.integration.helpers import new_user

pytestmark = pytest.mark.cluster

POLL_INTERVAL = 30.0  # the sync node's default slow poll: revocation must beat it by far


async def test_unshare_ends_delivery_to_an_open_subscription(cluster, tmp_path: Path) -> None:
    _, ta = await new_user(cluster.meta_address, cluster.admin_token)
    nb, tb = await new_user(cluster.meta_address, cluster.admin_token)
    async with (
        await Client.connect(cluster.meta_address, token=ta) as a,
        await Client.connect(cluster.meta_address, token=tb) as b,
    ):
        f = tmp_path / "plan.txt"
        f.write_text("v1")
        await a.put_file(f, "Team/plan.txt")
        shared = await a.share("Team", nb, role="editor")

        events: asyncio.Queue[sync_pb2.SyncEvent] = asyncio.Queue()
        address = await b._sync_address()
        async with open_channel(address) as channel:
            stream = sync_pb2_grpc.SyncStub(channel).Subscribe(
                sync_pb2.SubscribeRequest(
                    cursors=[common_pb2.Cursor(namespace_id=b.root_namespace_id, seq=0)]
                ),
                metadata=auth_metadata(tb),
            )

            async def pump() -> None:
                async for ev in stream:
                    await events.put(ev)

            pumping = asyncio.create_task(pump())
            try:
                # B sees the shared folder's contents through the stream first.
                deadline = time.monotonic() + 20
                while True:
                    ev = await asyncio.wait_for(events.get(), max(0.1, deadline - time.monotonic()))
                    if (
                        ev.WhichOneof("event") == "change"
                        and ev.change.namespace_id == shared
                        and ev.change.entry.path.endswith("plan.txt")
                    ):
                        break

                start = time.monotonic()
                await a.unshare("Team", nb)
                removed_after = None
                while removed_after is None:
                    ev = await asyncio.wait_for(events.get(), POLL_INTERVAL / 3)
                    if ev.WhichOneof("event") == "removed" and ev.removed.namespace_id == shared:
                        removed_after = time.monotonic() - start
                assert removed_after < POLL_INTERVAL / 3

                # Nothing from the shared folder reaches B any more.
                f.write_text("v2, after B left")
                await a.put_file(f, "Team/plan.txt")
                await asyncio.sleep(1.5)
                while not events.empty():
                    ev = events.get_nowait()
                    assert not (
                        ev.WhichOneof("event") == "change" and ev.change.namespace_id == shared
                    )
            finally:
                pumping.cancel()
