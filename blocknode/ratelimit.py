"""Pacing for background loops: a token bucket for transfers, and a cancellable wait."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """Bytes per second, shared by every background transfer of a node (asyncio, one loop).

    A take larger than the burst is allowed (a chunk is never split) and leaves the bucket in
    debt, which later takes wait out. A rate of 0 or less means unlimited.

    Args:
        rate: Bytes per second.
        burst: Bytes that may go at once after an idle spell (default: a quarter second's worth,
            at least 4 MiB).
    """

    def __init__(self, rate: float, burst: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst or max(rate / 4, 4 * 1024 * 1024)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, amount: int) -> None:
        """Wait until ``amount`` bytes may go."""
        if self.rate <= 0:
            return
        async with self._lock:  # first come, first served
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= amount
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` up to ``timeout`` seconds; True if it was set.

    Unlike ``asyncio.wait_for`` on Python 3.11, a cancellation that arrives just as the event
    is set is never swallowed (a loop that must stop does stop).
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
