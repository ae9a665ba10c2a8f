"""Reconnect backoff for the sync daemon: exponential, jittered, capped; reset on real success."""

from __future__ import annotations

import random

from tessera.retry import RetryPolicy


class Backoff:
    """Exponential backoff with jitter: try ``n`` waits between half and all of
    ``min(cap, base * 2**n)``. ``attempts`` keeps the time of every try (tests and status)."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self._policy = RetryPolicy(base=base, cap=cap)
        self.attempt = 0
        self.attempts: list[float] = []

    def delay(self, attempt: int) -> float:
        """The jittered delay after ``attempt`` failures in a row."""
        # Equal jitter, not the policy's full jitter: a daemon waits at least half the step,
        # so a fleet of devices does not redial a cluster that is away in a tight loop.
        return self._policy.ceiling(attempt) * (0.5 + random.random() / 2)

    def next_delay(self) -> float:
        """One more failure: how long to wait before the next try."""
        self.attempt += 1
        if len(self.attempts) > 1000:
            del self.attempts[:500]
        return self.delay(self.attempt)

    def succeeded(self) -> None:
        """The link held: start again from the base."""
        self.attempt = 0
