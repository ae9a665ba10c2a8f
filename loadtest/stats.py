"""What a run measured, and the figures the report gives.

The recorder keeps every sample (a run is bounded in operations, so this is bounded too) and
computes exact percentiles at the end, with linear interpolation between ranks (numpy's
default), so p50 <= p95 <= p99 always holds.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from loadtest.profiles import LOAD_OPS, READ_OPS, WRITE_OPS

OK = "OK"
MAX_ERROR_EXAMPLES = 20


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of already sorted values; NaN when there are none."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize_ms(seconds: Iterable[float]) -> dict[str, float | int | None]:
    """count, mean, min, p50, p95, p99 and max of durations given in seconds, in milliseconds."""
    values = sorted(s * 1000.0 for s in seconds)
    if not values:
        return {
            "count": 0,
            "mean": None,
            "min": None,
            "p50": None,
            "p95": None,
            "p99": None,
            "max": None,
        }
    return {
        "count": len(values),
        "mean": round(sum(values) / len(values), 3),
        "min": round(values[0], 3),
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(values[-1], 3),
    }


@dataclass(frozen=True)
class OpSample:
    """One finished operation."""

    t: float  # seconds since the load phase started (since the recorder was made, in setup)
    op: str
    latency: float  # seconds
    status: str  # "OK" or a gRPC status name (or a harness status such as DATA_MISMATCH)
    expected: bool  # an outcome the workload expects (a conflict between two devices)
    phase: str = "load"  # "setup", "load" or "drain" (after the load, while changes settle)

    @property
    def in_load(self) -> bool:
        return self.phase == "load"


@dataclass(frozen=True)
class Transfer:
    """Bytes one successful operation moved."""

    t: float
    logical: int  # bytes of file content committed (the file's size)
    sent: int  # chunk bytes actually uploaded
    received: int  # chunk bytes downloaded


class Recorder:
    """Collects samples from every worker of one run (single event loop: no locking)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.load_started: float | None = None
        self.load_stopped: float | None = None
        self.samples: list[OpSample] = []
        self.transfers: list[Transfer] = []
        self.propagation: list[tuple[float, float, str]] = []  # (t, seconds, "device" | "share")
        self.file_sizes: list[int] = []
        self.chunks = 0
        self.chunks_sent = 0
        self.unverified_reads = 0
        self.edit_kinds: Counter[str] = Counter()
        self.error_examples: list[dict[str, str]] = []  # the first of each (op, status)
        self._example_keys: set[tuple[str, str]] = set()
        self.notes: dict[str, str] = {}

    def now(self) -> float:
        """Seconds since the load phase started (since the recorder was made before that)."""
        return time.monotonic() - (self.load_started if self.load_started is not None else self.t0)

    def start_load(self) -> None:
        self.load_started = time.monotonic()

    def stop_load(self) -> None:
        self.load_stopped = time.monotonic()

    def record(
        self,
        op: str,
        started: float,
        status: str = OK,
        *,
        expected: bool = False,
        detail: str = "",
        ended: float | None = None,
    ) -> None:
        """One operation that began at monotonic time ``started`` ended (now, by default)."""
        end = time.monotonic() if ended is None else ended
        if self.load_started is None:
            phase, base = "setup", self.t0
        else:
            phase, base = ("load" if self.load_stopped is None else "drain"), self.load_started
        self.samples.append(OpSample(started - base, op, end - started, status, expected, phase))
        if status != OK and not expected:
            key = (op, status)
            if key not in self._example_keys and len(self.error_examples) < MAX_ERROR_EXAMPLES:
                self._example_keys.add(key)
                self.error_examples.append({"op": op, "status": status, "detail": detail[:300]})

    def transfer(self, *, logical: int = 0, sent: int = 0, received: int = 0) -> None:
        self.transfers.append(Transfer(self.now(), logical, sent, received))

    def propagated(self, seconds: float, kind: str) -> None:
        self.propagation.append((self.now(), seconds, kind))

    # -- the report ---------------------------------------------------------------------------
    def load_seconds(self) -> float:
        if self.load_started is None:
            return 0.0
        end = self.load_stopped if self.load_stopped is not None else time.monotonic()
        return max(end - self.load_started, 1e-9)

    def report(self) -> dict[str, Any]:
        """Every figure of the run as JSON-ready data (see docs/loadtest.md for the fields)."""
        load_s = self.load_seconds()
        by_op: dict[str, list[OpSample]] = defaultdict(list)
        for s in self.samples:
            by_op[s.op].append(s)
        ops: dict[str, Any] = {}
        for op in sorted(by_op, key=_op_order):
            samples = by_op[op]
            ok = [s for s in samples if s.status == OK]
            in_load = [s for s in samples if s.in_load]
            ops[op] = {
                "phase": "load" if in_load else samples[0].phase,
                "count": len(samples),
                "ok": len(ok),
                "expected_errors": sum(1 for s in samples if s.expected),
                "errors": sum(1 for s in samples if s.status != OK and not s.expected),
                "ops_per_s": round(len(in_load) / load_s, 3) if in_load else None,
                "latency_ms": summarize_ms(s.latency for s in ok),
            }
        load_samples = [s for s in self.samples if s.in_load]
        reads = sum(1 for s in load_samples if s.op in READ_OPS)
        writes = sum(1 for s in load_samples if s.op in WRITE_OPS)
        logical = sum(t.logical for t in self.transfers)
        sent = sum(t.sent for t in self.transfers)
        received = sum(t.received for t in self.transfers)
        by_status: Counter[str] = Counter(s.status for s in self.samples if s.status != OK)
        unexpected: Counter[str] = Counter(
            s.status for s in self.samples if s.status != OK and not s.expected
        )
        expected: Counter[str] = Counter(s.status for s in self.samples if s.expected)
        prop = [p for _, p, _ in self.propagation]
        return {
            "duration_s": round(load_s, 3),
            "ops": ops,
            "totals": {
                "ops": len(load_samples),
                "ops_per_s": round(len(load_samples) / load_s, 3),
                "ok": sum(1 for s in load_samples if s.status == OK),
                "reads": reads,
                "writes": writes,
                "read_write_ratio": round(reads / writes, 3) if writes else None,
            },
            "sync": {
                "propagation_ms": summarize_ms(prop),
                "by_kind": {
                    kind: summarize_ms(p for _, p, k in self.propagation if k == kind)
                    for kind in sorted({k for _, _, k in self.propagation})
                },
            },
            "bytes": {
                "logical_committed": logical,
                "sent": sent,
                "received": received,
                "dedup_ratio": round(logical / sent, 3) if sent else None,
                "chunks_committed": self.chunks,
                "chunks_sent": self.chunks_sent,
                "send_rate_mb_s": round(sent / load_s / 1e6, 3),
                "receive_rate_mb_s": round(received / load_s / 1e6, 3),
            },
            "files": {
                "created": len(self.file_sizes),
                "size_bytes": _size_summary(self.file_sizes),
                "edit_kinds": dict(sorted(self.edit_kinds.items())),
                "unverified_reads": self.unverified_reads,
            },
            "errors": {
                "by_status": dict(sorted(by_status.items())),
                "unexpected": dict(sorted(unexpected.items())),
                "unexpected_total": sum(unexpected.values()),
                "expected": dict(sorted(expected.items())),
                "examples": self.error_examples,
            },
        }


def _op_order(op: str) -> tuple[int, str]:
    return (LOAD_OPS.index(op), op) if op in LOAD_OPS else (len(LOAD_OPS), op)


def _size_summary(sizes: list[int]) -> dict[str, int | float | None]:
    values = sorted(float(s) for s in sizes)
    if not values:
        return {
            "count": 0,
            "total": 0,
            "mean": None,
            "p50": None,
            "p95": None,
            "p99": None,
            "max": None,
        }
    return {
        "count": len(values),
        "total": int(sum(values)),
        "mean": round(sum(values) / len(values)),
        "p50": round(percentile(values, 50)),
        "p95": round(percentile(values, 95)),
        "p99": round(percentile(values, 99)),
        "max": int(values[-1]),
    }
