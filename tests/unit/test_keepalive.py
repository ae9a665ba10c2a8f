"""Client and server keepalive agree: an idle connection is never dropped for "too_many_pings".

gRPC's ping policing depends only on the ratio of the client's ping interval to the server's
minimum accepted interval (and the strike count), so the project's settings scaled down to
a 0.5 s ping are the same policy seen 60 times faster. A real grpc.aio server and channel on
loopback; the control case (gRPC's default server policy, what every node ran before) must
see the GOAWAY, which proves the check can fail.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tessera.rpc import (
    KEEPALIVE_TIME_MS,
    channel_options,
    keepalive_options,
    server_options,
)

PING_MS = 500  # the scaled-down client ping interval
WATCH = 8 * PING_MS / 1000  # seconds: well past the 3 pings after which a strict server says GOAWAY


async def _state_changes(server_opts: list[tuple[str, Any]], seconds: float) -> list[str]:
    """Connect, make one call, then stay idle: the connectivity changes seen meanwhile."""
    server = grpc.aio.server(options=server_opts)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=keepalive_options(PING_MS, server=False)
    )
    changes: list[str] = []
    try:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        state = channel.get_state()
        assert state is grpc.ChannelConnectivity.READY
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not changes:
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), left)
            except TimeoutError:
                break
            state = channel.get_state()
            changes.append(state.name)
    finally:
        await channel.close()
        await server.stop(0)
    return changes


async def test_idle_connection_is_not_dropped_with_the_project_settings() -> None:
    assert await _state_changes(keepalive_options(PING_MS, server=True), WATCH) == []


async def test_a_server_with_grpc_defaults_drops_the_same_client() -> None:
    changes = await _state_changes([("grpc.keepalive_permit_without_calls", 1)], WATCH)
    assert changes and changes[0] == "IDLE"  # GOAWAY too_many_pings


def test_one_place_for_both_ends() -> None:
    client, server = dict(channel_options(1 << 20)), dict(server_options(1 << 20))
    assert client["grpc.keepalive_time_ms"] == KEEPALIVE_TIME_MS
    assert server["grpc.http2.min_ping_interval_without_data_ms"] < client["grpc.keepalive_time_ms"]
    assert server["grpc.keepalive_permit_without_calls"] == 1
    assert dict(keepalive_options(server=True)).items() <= server.items()
