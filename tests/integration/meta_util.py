"""Small helpers for the metadata-service tests (test_meta_*.py)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest

from client import Change, Client, Cursor, FileVersion, SyncError


def md(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata with a bearer token."""
    return (("authorization", f"Bearer {token}"),)


async def put_bytes(c: Client, tmp: Path, remote: str, data: bytes, **kwargs: Any) -> FileVersion:
    """Upload ``data`` as ``remote`` through a temporary local file."""
    local = tmp / f"up-{uuid.uuid4().hex}"
    local.write_bytes(data)
    try:
        return await c.put_file(local, remote, **kwargs)
    finally:
        local.unlink(missing_ok=True)


async def get_bytes(c: Client, tmp: Path, remote: str, **kwargs: Any) -> bytes:
    """Download ``remote`` and return its bytes."""
    local = tmp / f"down-{uuid.uuid4().hex}"
    await c.get_file(remote, local, **kwargs)
    try:
        return local.read_bytes()
    finally:
        local.unlink(missing_ok=True)


async def journal(c: Client, ns: str, after: int = 0) -> list[Change]:
    """Every journal record of a namespace after ``after`` (all pages)."""
    out: list[Change] = []
    cursor = Cursor(ns, after)
    while True:
        changes, cursor, more, resync = await c.list_changes(cursor, limit=1000)
        assert not resync
        out.extend(changes)
        if not more:
            return out


async def status_of(coro: Awaitable[Any]) -> grpc.StatusCode:
    """The status an SDK call or raw stub call fails with (fails the test if it succeeds)."""
    try:
        await coro
    except SyncError as e:
        return e.status
    except grpc.aio.AioRpcError as e:
        return e.code()
    pytest.fail("the call succeeded")


async def error_of(coro: Awaitable[Any]) -> SyncError:
    """The SDK error a call raises."""
    with pytest.raises(SyncError) as info:
        await coro
    return info.value
