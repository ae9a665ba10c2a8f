"""A daemon whose credentials are revoked stops with a clear error instead of retrying forever."""

from __future__ import annotations

import asyncio
import time

import pytest

from client import AuthenticationError, Client

pytestmark = pytest.mark.cluster


async def test_daemon_stops_when_its_token_is_revoked(cluster, devices) -> None:  # type: ignore[no-untyped-def]
    [d] = await devices(1)
    deadline = time.monotonic() + 30
    while not d.idle:
        assert time.monotonic() < deadline, "the daemon never settled"
        await asyncio.sleep(0.1)
    async with await Client.connect(cluster.meta_address, token=d.cfg.token) as c:
        await c.logout()
    assert d.task is not None and d.daemon is not None
    with pytest.raises(AuthenticationError):
        await asyncio.wait_for(d.task, 10)
    assert d.daemon.error.startswith("not authorised") and "revoked" in d.daemon.error
    d.daemon = d.task = None  # it is stopped already
