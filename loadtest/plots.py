"""PNG plots of a run (matplotlib, Agg backend: no display needed).

Five figures, each a file in the output folder:

- ``latency.png``: latency CDF of each operation (log scale), p50/p95/p99 in the legend.
- ``timeline.png``: operations per second over time, stacked by operation; below, every
  operation's latency over time, errors marked with a cross (red unexpected, orange
  expected: a conflict between two devices, an operation the cluster does not implement).
- ``propagation.png``: sync propagation latency, histogram and CDF by kind (same user's
  other devices, another user through a share).
- ``bytes.png``: cumulative logical bytes committed, bytes sent and bytes received; the gap
  between the first two is what deduplication and delta-free edits saved.
- ``sizes.png``: sizes of the files the run created (log bins) against the profile's cap.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from loadtest.profiles import LOAD_OPS  # noqa: E402
from loadtest.stats import OK, Recorder, percentile  # noqa: E402

DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # legends placed outside the axes too
    plt.close(fig)
    return path


def _ops(recorder: Recorder) -> list[str]:
    seen = {s.op for s in recorder.samples if s.in_load}
    return [op for op in LOAD_OPS if op in seen] + sorted(seen - set(LOAD_OPS))


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def plot_latency(recorder: Recorder, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 5.5))
    drawn = False
    for op in _ops(recorder):
        ms = sorted(s.latency * 1000 for s in recorder.samples if s.op == op and s.status == OK)
        if not ms:
            continue
        ys = [(i + 1) / len(ms) for i in range(len(ms))]
        label = (
            f"{op} (n={len(ms)}; p50 {percentile(ms, 50):.0f}, "
            f"p95 {percentile(ms, 95):.0f}, p99 {percentile(ms, 99):.0f} ms)"
        )
        ax.step(ms, ys, where="post", label=label)
        drawn = True
    if drawn:
        ax.set_xscale("log")
        ax.legend(fontsize=8, loc="lower right")
    else:
        _empty(ax, "no successful operations")
    for q in (0.5, 0.95, 0.99):
        ax.axhline(q, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of operations")
    ax.set_title("Operation latency CDF (successful operations)")
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_timeline(recorder: Recorder, report: dict[str, Any], path: Path) -> Path:
    duration = max(float(report.get("duration_s") or 0.0), 1e-3)
    width = max(1.0, duration / 60)
    n_buckets = max(1, math.ceil(duration / width))
    ops = _ops(recorder)
    counts: dict[str, list[float]] = {op: [0.0] * n_buckets for op in ops}
    for s in recorder.samples:
        if s.in_load and s.op in counts:
            end = s.t + s.latency
            counts[s.op][min(int(end // width), n_buckets - 1)] += 1 / width
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True)
    xs = [i * width for i in range(n_buckets + 1)]  # the last bucket's right edge too
    if ops:
        series = [counts[op] + counts[op][-1:] for op in ops]
        top.stackplot(xs, *series, labels=ops, step="post", alpha=0.85)
        top.legend(fontsize=8, loc="upper right", ncol=4)
    else:
        _empty(top, "no operations")
    top.set_ylabel("operations / s")
    top.set_title(
        f"Throughput ({report['totals']['ops_per_s']:.1f} ops/s overall, {width:.0f} s buckets)"
    )
    top.grid(True, alpha=0.3)
    for op in ops:
        pts = [(s.t, s.latency * 1000) for s in recorder.samples if s.op == op and s.in_load]
        bottom.scatter([p[0] for p in pts], [p[1] for p in pts], s=6, label=op, alpha=0.6)
    for expected, colour, label in ((False, "red", "error"), (True, "orange", "expected error")):
        errors = [
            (s.t, s.latency * 1000)
            for s in recorder.samples
            if s.status != OK and s.in_load and s.expected is expected
        ]
        if errors:
            bottom.scatter(
                [e[0] for e in errors],
                [e[1] for e in errors],
                marker="x",
                c=colour,
                s=30,
                label=label,
                zorder=3,
            )
    if ops:
        bottom.set_yscale("log")
        bottom.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=10)
    bottom.set_xlabel("seconds since the load started")
    bottom.set_ylabel("latency (ms, log scale)")
    bottom.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_propagation(recorder: Recorder, report: dict[str, Any], path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
    by_kind: dict[str, list[float]] = defaultdict(list)
    for _, seconds, kind in recorder.propagation:
        by_kind[kind].append(seconds * 1000)
    sync = report["sync"]
    if by_kind:
        everything = sorted(v for vs in by_kind.values() for v in vs)
        left.hist(
            [by_kind[k] for k in sorted(by_kind)], bins=40, stacked=True, label=sorted(by_kind)
        )
        left.legend(fontsize=8)
        for q in (50, 95, 99):
            v = percentile(everything, q)
            left.axvline(v, color="black", lw=0.8, ls="--")
            left.text(v, left.get_ylim()[1] * 0.95, f" p{q}", fontsize=8, va="top")
        for kind in sorted(by_kind):
            ms = sorted(by_kind[kind])
            right.step(ms, [(i + 1) / len(ms) for i in range(len(ms))], where="post", label=kind)
        right.legend(fontsize=8, loc="lower right")
    else:
        _empty(left, "no propagation measured")
        _empty(right, "no propagation measured")
    left.set_xlabel("commit returned on A → change on B (ms)")
    left.set_ylabel("arrivals")
    left.set_title(
        f"Sync propagation: {sync.get('observed', 0)} of {sync.get('expected', 0)} arrivals, "
        f"{sync.get('missing', 0)} missing"
    )
    right.set_xlabel("propagation latency (ms)")
    right.set_ylabel("fraction of arrivals")
    right.set_title("Propagation CDF by kind")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_bytes(recorder: Recorder, report: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 5))
    transfers = sorted(recorder.transfers, key=lambda t: t.t)
    if transfers:
        xs, logical, sent, received = [], [], [], []
        lo = se = re = 0
        for t in transfers:
            lo, se, re = lo + t.logical, se + t.sent, re + t.received
            xs.append(t.t)
            logical.append(lo / 1e6)
            sent.append(se / 1e6)
            received.append(re / 1e6)
        ax.plot(xs, logical, label="logical bytes committed")
        ax.plot(xs, sent, label="bytes sent (chunks uploaded)")
        ax.plot(xs, received, label="bytes received (downloads)")
        ax.fill_between(xs, sent, logical, alpha=0.15, label="saved by deduplication")
        ax.legend(fontsize=9, loc="upper left")
    else:
        _empty(ax, "no bytes moved")
    ratio = report["bytes"].get("dedup_ratio")
    ax.set_title(
        "Bytes over time (dedup ratio " + (f"{ratio:.2f}" if ratio is not None else "n/a") + ")"
    )
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("MB (cumulative)")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_sizes(recorder: Recorder, report: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 5))
    sizes = [s for s in recorder.file_sizes if s > 0]
    cap = int(report["profile"]["max_file_bytes"])
    if sizes:
        lo, hi = math.log10(max(1, min(sizes))), math.log10(max(max(sizes), cap) + 1)
        bins = [10 ** (lo + (hi - lo) * i / 40) for i in range(41)]
        ax.hist(sizes, bins=bins, color="tab:blue", alpha=0.8)
        ax.set_xscale("log")
        ordered = sorted(float(s) for s in sizes)
        for q, style in ((50, "--"), (95, ":")):
            ax.axvline(percentile(ordered, q), color="black", ls=style, lw=1, label=f"p{q}")
        ax.axvline(cap, color="red", lw=1, label=f"cap {cap / 2**20:.0f} MiB")
        ax.legend(fontsize=9)
    else:
        _empty(ax, "no files created")
    ax.set_xlabel("file size (bytes, log scale)")
    ax.set_ylabel("files created")
    median = int(report["profile"]["median_file_bytes"]) / 1024
    ax.set_title(f"Created file sizes (n={len(sizes)}, log-normal around {median:.0f} KiB, capped)")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def write_plots(recorder: Recorder, report: dict[str, Any], out: Path) -> list[Path]:
    """Write every plot into ``out``; returns their paths."""
    return [
        plot_latency(recorder, out / "latency.png"),
        plot_timeline(recorder, report, out / "timeline.png"),
        plot_propagation(recorder, report, out / "propagation.png"),
        plot_bytes(recorder, report, out / "bytes.png"),
        plot_sizes(recorder, report, out / "sizes.png"),
    ]
