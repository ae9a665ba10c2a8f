"""The shared retry policy and channel pool (``tessera.retry``, ``tessera.channels``)."""

from __future__ import annotations

import ast
from pathlib import Path

import grpc
import pytest

from tessera.channels import ChannelPool
from tessera.retry import TRANSIENT_CODES, RetryPolicy
from tessera.rpc import ChannelSecurity

ROOT = Path(__file__).resolve().parents[2]


def _rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="test")


def test_full_jitter_stays_under_the_growing_ceiling() -> None:
    policy = RetryPolicy(base=0.1, cap=1.0)
    assert [policy.ceiling(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for n in range(6):
        delays = [policy.delay(n) for _ in range(200)]
        assert all(0.0 <= d < policy.ceiling(n) for d in delays)
        assert max(delays) > policy.ceiling(n) / 2  # spread over the whole range


def test_budget_bounds_the_total_wait() -> None:
    policy = RetryPolicy(base=1.0, cap=5.0, attempts=10, budget=2.5)
    for _ in range(50):
        waits = policy._waits()
        assert len(waits) == 9
        assert sum(waits) <= 2.5 + 1e-9


async def test_call_retries_transient_codes_then_succeeds() -> None:
    policy = RetryPolicy(base=0.001, cap=0.002, attempts=4)
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _rpc_error(grpc.StatusCode.UNAVAILABLE)
        return "ok"

    assert await policy.call(flaky) == "ok"
    assert len(calls) == 3


async def test_call_gives_up_after_attempts_and_on_other_codes() -> None:
    policy = RetryPolicy(base=0.001, cap=0.002, attempts=3)
    calls: list[grpc.StatusCode] = []

    async def failing(code: grpc.StatusCode) -> None:
        calls.append(code)
        raise _rpc_error(code)

    with pytest.raises(grpc.aio.AioRpcError) as e:
        await policy.call(lambda: failing(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert e.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED and len(calls) == 3
    calls.clear()
    with pytest.raises(grpc.aio.AioRpcError):
        await policy.call(lambda: failing(grpc.StatusCode.PERMISSION_DENIED))
    assert calls == [grpc.StatusCode.PERMISSION_DENIED]
    assert grpc.StatusCode.PERMISSION_DENIED not in TRANSIENT_CODES


def test_call_sync_uses_the_same_policy() -> None:
    policy = RetryPolicy(base=0.001, cap=0.002, attempts=5, retry_on={grpc.StatusCode.UNAVAILABLE})
    calls: list[int] = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) < 5:
            raise _rpc_error(grpc.StatusCode.UNAVAILABLE)
        return len(calls)

    assert policy.call_sync(flaky) == 5


async def test_pool_keeps_one_channel_per_address_and_security() -> None:
    pool = ChannelPool()
    tls = ChannelSecurity(tls=True)
    try:
        a = pool.channel("127.0.0.1:1")
        assert pool.channel("127.0.0.1:1") is a
        assert pool.channel("127.0.0.1:1", tls) is not a
        assert pool.channel("127.0.0.1:2") is not a
        stub = pool.stub("127.0.0.1:1", _Stub)
        assert pool.stub("127.0.0.1:1", _Stub) is stub and stub.channel is a
        assert len(pool) == 3
        pool.discard("127.0.0.1:1", grace=0.1)
        assert pool.channel("127.0.0.1:1") is not a
        assert pool.stub("127.0.0.1:1", _Stub) is not stub
    finally:
        await pool.close()
    assert len(pool) == 0


class _Stub:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel


# Modules that dial the cluster; they take channels from tessera.channels (or open_channel),
# never build credentials or channels themselves.
DIALLERS = ("blocknode", "metanode", "syncnode", "client")
RAW = {"insecure_channel", "secure_channel", "ssl_channel_credentials"}


def test_no_node_or_sdk_module_dials_on_its_own() -> None:
    offenders = []
    for package in DIALLERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in RAW:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.attr}")
    assert offenders == []
