"""Devices that follow each other: one change stream per device, and propagation latency.

Propagation latency is the time from a commit *returning* on device A to the change arriving
on device B's ``Subscribe`` stream. The notification can beat the commit's own response back
to A (the metanode notifies the syncnode before it answers); such an arrival is kept until the
commit returns and then counts as zero, and the number of them is reported as ``early``.
Every commit names the devices expected to see it, so the report can also say how many
arrivals never came (``missing``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from client import Client, Cursor, SyncError
from loadtest.stats import Recorder

log = logging.getLogger(__name__)

MAX_EARLY = 50_000  # arrivals kept for commits not (yet) registered
RESUBSCRIBE_ATTEMPTS = 5


@dataclass(eq=False)
class _Pending:
    committed_at: float  # monotonic
    kinds: dict[str, str]  # device still waiting -> "device" (same user) or "share"
    measure: bool  # False for warm-up markers
    done: asyncio.Event = field(default_factory=asyncio.Event)


class PropagationTracker:
    """Matches commits (by revision id) with their arrival on other devices."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._pending: dict[str, _Pending] = {}
        self._early: dict[str, dict[str, float]] = {}
        self.expected = 0  # measured (commit, device) pairs that should arrive
        self.observed = 0
        self.early = 0

    def committed(
        self,
        revision: str,
        expect: Iterable[tuple[str, str]],
        *,
        at: float | None = None,
        measure: bool = True,
    ) -> asyncio.Event:
        """A commit returned at ``at`` (monotonic, default now).

        Args:
            revision: the committed revision id (what the change streams carry).
            expect: (device id, kind) pairs that should see it; kind is "device" for the
                user's other devices, "share" for another user's devices through a share.
            at: when the commit returned; default now.
            measure: False for warm-up markers (waited for, not reported).

        Returns:
            An event set once every expected device has seen the change.
        """
        pending = _Pending(time.monotonic() if at is None else at, dict(expect), measure)
        if measure:
            self.expected += len(pending.kinds)
        for device in self._early.pop(revision, {}):
            kind = pending.kinds.pop(device, None)
            if kind is not None:
                self._observe(0.0, kind, measure, early=True)
        if pending.kinds:
            self._pending[revision] = pending
        else:
            pending.done.set()
        return pending.done

    def arrived(self, revision: str, device: str, at: float | None = None) -> None:
        """Device ``device`` received the change with this revision at ``at`` (default now)."""
        at = time.monotonic() if at is None else at
        pending = self._pending.get(revision)
        if pending is None:
            if len(self._early) < MAX_EARLY:
                self._early.setdefault(revision, {}).setdefault(device, at)
            return
        kind = pending.kinds.pop(device, None)
        if kind is None:
            return
        self._observe(max(0.0, at - pending.committed_at), kind, pending.measure)
        if not pending.kinds:
            del self._pending[revision]
            pending.done.set()

    def _observe(self, seconds: float, kind: str, measure: bool, *, early: bool = False) -> None:
        if not measure:
            return
        self.observed += 1
        self.early += early
        self._recorder.propagated(seconds, kind)

    def outstanding(self) -> int:
        """Measured (commit, device) arrivals still awaited."""
        return sum(len(p.kinds) for p in self._pending.values() if p.measure)

    async def drain(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until nothing measured is outstanding."""
        waits = [asyncio.ensure_future(p.done.wait()) for p in self._pending.values() if p.measure]
        if waits:
            _, late = await asyncio.wait(waits, timeout=timeout)
            for w in late:
                w.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        return not self.outstanding()

    def summary(self) -> dict[str, int]:
        return {
            "expected": self.expected,
            "observed": self.observed,
            "missing": self.expected - self.observed,
            "early": self.early,
        }


async def follow(
    client: Client,
    cursors: list[Cursor],
    tracker: PropagationTracker,
    recorder: Recorder,
) -> None:
    """Follow one device's change stream until cancelled, reporting each arrival.

    The SDK re-locates and reconnects on UNAVAILABLE by itself; any other stream error is
    recorded (op ``subscribe``) and the stream is reopened from the last cursors seen, at most
    ``RESUBSCRIBE_ATTEMPTS`` times.
    """
    known = {c.namespace_id: c.seq for c in cursors}
    for attempt in range(RESUBSCRIBE_ATTEMPTS + 1):
        started = time.monotonic()
        try:
            async for change in client.subscribe(
                [Cursor(ns, seq) for ns, seq in known.items()], heartbeats=True
            ):
                if change is None:
                    continue
                known[change.namespace_id] = change.seq
                if change.entry.device_id != client.device_id:
                    tracker.arrived(change.entry.revision, client.device_id)
            return
        except SyncError as e:
            recorder.record("subscribe", started, e.status.name, detail=e.message)
            log.warning("subscribe on %s failed (%s), attempt %d", client.device_id, e, attempt)
            await asyncio.sleep(0.5)
