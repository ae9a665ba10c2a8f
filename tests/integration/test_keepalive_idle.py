"""An idle client connection to each node kind stays open for 3 minutes: no GOAWAY.

Before client and server keepalive agreed, every idle client got GOAWAY ENHANCE_YOUR_CALM
"too_many_pings" after about 90 s (three 30 s pings against gRPC's default 5-minute minimum),
which shows as the channel leaving READY. ``tests/unit/test_keepalive.py`` checks the same
policy 60 times faster; this is the real thing, on the real cluster, with the real settings.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from tessera.pb import block_pb2, block_pb2_grpc, meta_pb2, meta_pb2_grpc
from tessera.rpc import auth_metadata, open_channel

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

IDLE = 180.0


async def _watch(channel: grpc.aio.Channel, seconds: float) -> list[str]:
    """Connectivity changes of a channel over ``seconds`` (none is what we want)."""
    changes: list[str] = []
    state = channel.get_state()
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), left)
        except TimeoutError:
            break
        state = channel.get_state()
        changes.append(state.name)
    return changes


async def test_idle_connections_stay_open_for_three_minutes(cluster) -> None:
    md = auth_metadata(cluster.admin_token)
    health = "/grpc.health.v1.Health/Check"
    async with (
        open_channel(cluster.meta_address) as meta,
        open_channel(cluster.block_addresses[0]) as block,
        open_channel(cluster.sync_addresses[0]) as sync,
    ):
        await meta_pb2_grpc.MetadataStub(meta).WhoAmI(meta_pb2.WhoAmIRequest(), metadata=md)
        await block_pb2_grpc.BlockStub(block).GetRing(block_pb2.GetRingRequest(), metadata=md)
        await sync.unary_unary(health)(b"", timeout=5)  # an empty HealthCheckRequest
        channels = {"meta": meta, "block": block, "sync": sync}
        assert {n: c.get_state() for n, c in channels.items()} == dict.fromkeys(
            channels, grpc.ChannelConnectivity.READY
        )
        seen = await asyncio.gather(*(_watch(c, IDLE) for c in channels.values()))
        assert dict(zip(channels, seen, strict=True)) == dict.fromkeys(channels, [])
        # Still the same connection, and it works.
        await meta_pb2_grpc.MetadataStub(meta).WhoAmI(meta_pb2.WhoAmIRequest(), metadata=md)
        assert meta.get_state() is grpc.ChannelConnectivity.READY
