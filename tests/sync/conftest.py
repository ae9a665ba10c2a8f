"""Fixtures for sync tests: a fresh user per test and devices that stop afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.integration.helpers import new_user
from tests.sync.helpers import Device


@pytest.fixture
async def devices(cluster, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[list[Device]]]]:
    """``await devices(n, **overrides)``: n running daemons of one fresh user."""
    started: list[Device] = []

    async def make(n: int, **overrides: object) -> list[Device]:
        _, token = await new_user(cluster.meta_address, cluster.admin_token)
        out = [
            Device(f"dev{i}", tmp_path, cluster.meta_address, token, **overrides) for i in range(n)
        ]
        for d in out:
            await d.start()
        started.extend(out)
        return out

    yield make
    for d in started:
        await d.stop()
