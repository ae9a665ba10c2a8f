"""One retry policy for network calls: exponential backoff with full jitter, within a budget.

A ``RetryPolicy`` says how many tries a call gets, how long to wait between them (attempt
``n`` waits a uniformly random time in ``[0, min(cap, base * 2**n))``: "full jitter", so
clients that failed together do not come back together), how much waiting in all it may
spend (the budget), and which gRPC status codes are worth another try. Loops that keep
their own shape (the SDK's put failover, the daemon's reconnect) take their waits from
``delay``; a single call is retried with ``call`` (asyncio) or ``call_sync`` (blocking
stubs). The database's serialization retry is not a network retry: see ``metanode.db``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

T = TypeVar("T")

# Failures of the network or of a node, not of the request: another try may succeed.
TRANSIENT_CODES: frozenset[grpc.StatusCode] = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter.

    Attributes:
        base: The first wait's upper bound, seconds.
        cap: No wait's upper bound exceeds this, seconds.
        attempts: Tries in all (the first included).
        budget: Seconds of waiting in all across the retries of one call (None: no limit).
        retry_on: Status codes worth another try.
    """

    base: float = 0.1
    cap: float = 2.0
    attempts: int = 6
    budget: float | None = None
    retry_on: Collection[grpc.StatusCode] = field(default=TRANSIENT_CODES)

    def ceiling(self, attempt: int) -> float:
        """The longest wait after ``attempt`` failures in a row (``attempt`` from 0)."""
        return min(self.cap, self.base * (1 << min(max(attempt, 0), 30)))

    def delay(self, attempt: int) -> float:
        """A jittered wait after ``attempt`` failures in a row: uniform in ``[0, ceiling)``."""
        return self.ceiling(attempt) * random.random()

    def retryable(self, error: BaseException) -> bool:
        """Is this failure one another try may cure?"""
        return isinstance(error, grpc.RpcError) and error.code() in self.retry_on

    def _waits(self) -> list[float]:
        """The waits of one call's retries, cut to the budget."""
        waits: list[float] = []
        spent = 0.0
        for attempt in range(self.attempts - 1):
            wait = self.delay(attempt)
            if self.budget is not None and spent + wait > self.budget:
                wait = max(0.0, self.budget - spent)
            waits.append(wait)
            spent += wait
        return waits

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()``, trying again after a retryable failure; the last failure is raised."""
        waits = self._waits()
        for wait in waits:
            try:
                return await fn()
            except grpc.RpcError as e:
                if not self.retryable(e):
                    raise
            await asyncio.sleep(wait)
        return await fn()

    def call_sync(self, fn: Callable[[], T]) -> T:
        """``call`` for blocking stubs."""
        waits = self._waits()
        for wait in waits:
            try:
                return fn()
            except grpc.RpcError as e:
                if not self.retryable(e):
                    raise
            time.sleep(wait)
        return fn()


# A lost etcd watch is re-established at once, then after growing waits of at most 2 s.
ETCD_WATCH = RetryPolicy(base=0.25, cap=2.0, attempts=1 << 30)
