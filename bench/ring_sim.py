"""Simulate the block ring at thousands of nodes: balance, movement, zones and speed.

Run ``.venv/bin/python bench/ring_sim.py`` (under 3 minutes) or ``--quick`` (under 20 s).
Everything is exact: loads are arc lengths of the 2**64 hash space, movement is measured with
``diff_rings`` (which evaluates owners around every changed point), never by sampling keys.

For each cluster size the number of vnodes is the ring's ``DEFAULT_VNODES`` unless that would
exceed ``--max-points`` points in the ring, in which case it is the largest power of two that
fits (a big cluster has to choose a smaller ``vnodes``: every process holds every point).
The figures go to a table on stdout and to ``bench/results/ring_sim.json``; ``--baseline``
compares with an earlier JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tessera.ring import (  # noqa: E402
    DEFAULT_VNODES,
    RING_SPACE,
    Member,
    Ring,
    build_ring,
    diff_rings,
    primary_arcs,
    update_ring,
)

RF = 3
ZONES = ("zone-a", "zone-b", "zone-c")
MIXED_WEIGHTS = (0.5, 1.0, 1.5)  # e.g. servers of 12, 24 and 36 disks
RESULTS = Path(__file__).resolve().parent / "results" / "ring_sim.json"

Scenario = dict[str, Any]


def members_for(count: int, *, mixed: bool = False, uneven: bool = False) -> list[Member]:
    """``count`` block nodes round-robin over three zones (or 45/45/10% with ``uneven``)."""
    out = []
    for i in range(count):
        if uneven:
            zone = ZONES[2] if i % 20 in (0, 1) else ZONES[i % 2]
        else:
            zone = ZONES[i % 3]
        weight = MIXED_WEIGHTS[(i // 3) % 3] if mixed else 1.0
        out.append(
            Member(f"blk-{i:05d}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:7100", zone, weight)
        )
    return out


def vnodes_for(count: int, max_points: int) -> int:
    """DEFAULT_VNODES, or the largest power of two that keeps the ring under ``max_points``."""
    if count * DEFAULT_VNODES <= max_points:
        return DEFAULT_VNODES
    v = 1
    while count * v * 2 <= max_points:
        v *= 2
    return max(v, 16)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run ``fn``; return its result, wall seconds and CPU seconds."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def load_stats(loads: dict[str, float], members: Sequence[Member]) -> dict[str, float]:
    """Loads relative to each node's fair share (its weight over the total), as ratios."""
    total_weight = sum(m.weight for m in members)
    rel = [loads[m.node_id] / (m.weight / total_weight) for m in members if m.weight > 0]
    mean = statistics.fmean(rel)
    rel = [r / mean for r in rel]
    return {
        "max_over_mean": max(rel),
        "min_over_mean": min(rel),
        "spread": max(rel) - min(rel),
        "stddev": statistics.pstdev(rel),
    }


def replica_pass(ring: Ring) -> tuple[dict[str, float], float]:
    """Exact RF-replica load per node and the fraction of space whose set spans RF zones."""
    arcs = dict.fromkeys((m.node_id for m in ring.members), 0)
    zone_of = {m.node_id: m.zone for m in ring.members}
    distinct = 0
    prev = ring.points[-1][0] - RING_SPACE
    for pos, _ in ring.points:
        length, prev = pos - prev, pos
        owners = ring.owners(pos, RF)
        for node in owners:
            arcs[node] += length
        if len({zone_of[n] for n in owners}) == RF:
            distinct += length
    share = {n: a / (RF * RING_SPACE) for n, a in arcs.items()}
    return share, distinct / RING_SPACE


def movement(old: Ring, new: Ring, ideal: float) -> dict[str, float]:
    """Primary and replica movement of a change, as fractions and as multiples of the ideal."""
    d, wall, _ = timed(lambda: diff_rings(old, new, RF))
    primary = d.primary_moved / RING_SPACE
    replicas = d.replicas_moved / (RF * RING_SPACE)
    return {
        "ideal": ideal,
        "primary_moved": primary,
        "primary_vs_ideal": primary / ideal,
        "replicas_moved": replicas,
        "replicas_vs_ideal": replicas / ideal,
        "sets_changed": d.sets_changed / RING_SPACE,
        "churn": (d.primary_churn + d.replica_churn) / RING_SPACE,
        "diff_seconds": wall,
    }


def lookups_per_second(ring: Ring, seconds: float = 0.5) -> float:
    """``owners(p, RF)`` calls per CPU second on random positions (one core)."""
    rnd = random.Random(7)
    probes = [rnd.getrandbits(64) for _ in range(10_000)]
    done, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for p in probes:
            ring.owners(p, RF)
        done += len(probes)
    return done / (time.process_time() - start)


def bytes_per_point() -> float:
    """Memory the ring holds per point (tracemalloc, on a 100k-point ring)."""
    members = members_for(100)
    tracemalloc.start()
    ring = build_ring(members, vnodes=1000)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return current / len(ring.points)


def run_size(count: int, max_points: int, *, full: bool) -> list[Scenario]:
    """All scenarios for one cluster size."""
    vnodes = vnodes_for(count, max_points)
    out: list[Scenario] = []
    members = members_for(count)
    ring, build_wall, build_cpu = timed(lambda: build_ring(members, vnodes, 1))
    arcs = primary_arcs(ring)
    primary = load_stats({n: a / RING_SPACE for n, a in arcs.items()}, members)
    base: Scenario = {
        "name": f"{count} nodes, equal weights",
        "nodes": count,
        "vnodes": vnodes,
        "points": len(ring.points),
        "build_seconds": build_wall,
        "build_cpu_seconds": build_cpu,
        "owners_per_second": lookups_per_second(ring),
        "primary": primary,
    }
    if full:
        replica, zone_distinct = replica_pass(ring)
        base["replica"] = load_stats(replica, members)
        base["rf3_distinct_zones"] = zone_distinct

    rnd = random.Random(count)
    k = max(1, count // 100)
    joiners = [Member(f"new-{i:04d}", zone=ZONES[i % 3]) for i in range(k)]
    leavers = {m.node_id for m in rnd.sample(members, k)}
    changes = {
        "join_1": ([*members, joiners[0]], 1 / (count + 1)),
        "leave_1": ([m for m in members if m.node_id != members[count // 2].node_id], 1 / count),
        "join_1pct": ([*members, *joiners], k / (count + k)),
        "leave_1pct": ([m for m in members if m.node_id not in leavers], k / count),
    }
    update_wall, update_cpu = [], []
    for key, (after, ideal) in changes.items():
        new, wall, cpu = timed(lambda after=after: update_ring(ring, after, 2))
        update_wall.append(wall)
        update_cpu.append(cpu)
        base[key] = movement(ring, new, ideal)
    base["update_seconds"] = statistics.fmean(update_wall)
    base["update_cpu_seconds"] = statistics.fmean(update_cpu)
    out.append(base)

    mixed_members = members_for(count, mixed=True)
    mixed = build_ring(mixed_members, vnodes, 1)
    m_arcs = primary_arcs(mixed)
    scenario: Scenario = {
        "name": f"{count} nodes, weights 0.5/1/1.5",
        "nodes": count,
        "vnodes": vnodes,
        "points": len(mixed.points),
        "primary": load_stats({n: a / RING_SPACE for n, a in m_arcs.items()}, mixed_members),
    }
    out.append(scenario)
    return out


def run_uneven(count: int, max_points: int) -> Scenario:
    """Zones of 45%, 45% and 10% of the nodes: the small zone's nodes carry 4.5x the replicas."""
    vnodes = vnodes_for(count, max_points)
    members = members_for(count, uneven=True)
    ring = build_ring(members, vnodes, 1)
    replica, zone_distinct = replica_pass(ring)
    return {
        "name": f"{count} nodes, zones 45/45/10%",
        "nodes": count,
        "vnodes": vnodes,
        "points": len(ring.points),
        "primary": load_stats({n: a / RING_SPACE for n, a in primary_arcs(ring).items()}, members),
        "replica": load_stats(replica, members),
        "rf3_distinct_zones": zone_distinct,
    }


def run_trim(count: int, vnodes: int, rounds: int = 3, damping: float = 0.7) -> Scenario:
    """A proposal, not what the cluster does yet: trim effective weights from measured loads.

    Each round sets ``weight *= (fair share / RF=3 replica share) ** damping`` and rebuilds:
    the replica share is what fills a node's disks (primary share barely matters for that). A
    node's points are a prefix of one fixed sequence, so a trim adds or drops points of that
    node only; the data each round moves is measured with ``diff_rings``.
    """
    members = members_for(count)
    total = sum(m.weight for m in members)
    fair = {m.node_id: m.weight / total for m in members}
    ring = build_ring(members, vnodes, 1)
    replica, _ = replica_pass(ring)

    def loads(r: Ring, rep: dict[str, float]) -> dict[str, Any]:
        primary = {n: a / RING_SPACE for n, a in primary_arcs(r).items()}
        return {"primary": load_stats(primary, members), "replica": load_stats(rep, members)}

    rounds_out: list[dict[str, Any]] = [{"round": 0, **loads(ring, replica)}]
    for i in range(1, rounds + 1):
        trimmed = [
            Member(
                m.node_id,
                m.address,
                m.zone,
                m.weight * (fair[m.node_id] / replica[m.node_id]) ** damping,
            )
            for m in ring.members
        ]
        trimmed_ring = update_ring(ring, trimmed, i + 1)
        moved = movement(ring, trimmed_ring, 1.0)["replicas_moved"]
        ring = trimmed_ring
        replica, _ = replica_pass(ring)
        rounds_out.append({"round": i, **loads(ring, replica), "moved": moved})
    return {
        "name": f"{count} nodes, weight trim x{rounds}",
        "nodes": count,
        "vnodes": vnodes,
        "points": len(ring.points),
        "primary": rounds_out[-1]["primary"],
        "replica": rounds_out[-1]["replica"],
        "rf3_distinct_zones": replica_pass(ring)[1],
        "trim_rounds": rounds_out,
    }


def pct(x: float, digits: int = 2) -> str:
    """A fraction as a percentage."""
    return f"{100 * x:.{digits}f}%"


def print_tables(scenarios: list[Scenario]) -> None:
    """The human-readable report."""
    print("\nBalance (load relative to fair share; exact arc lengths)")
    head = f"{'scenario':32} {'vnodes':>6} {'points':>9}  {'primary max/min/sd':>24}  {'RF=3 replica max/min/sd':>24}  {'3 zones':>7}"
    print(head)
    print("-" * len(head))
    for s in scenarios:
        p = s["primary"]
        line = f"{s['name']:32} {s['vnodes']:>6} {s['points']:>9}  {p['max_over_mean']:>7.3f} {p['min_over_mean']:>7.3f} {pct(p['stddev']):>8}"
        if "replica" in s:
            r = s["replica"]
            line += f"  {r['max_over_mean']:>7.3f} {r['min_over_mean']:>7.3f} {pct(r['stddev']):>8}  {pct(s['rf3_distinct_zones']):>7}"
        print(line)

    print("\nMovement (fraction of hash space / of all RF=3 replicas; ideal = k/(N+k) or k/N)")
    head = f"{'scenario':32} {'change':>10} {'ideal':>7} {'primary':>7} {'x ideal':>7} {'replicas':>8} {'x ideal':>7} {'churn':>6}"
    print(head)
    print("-" * len(head))
    for s in scenarios:
        for key in ("join_1", "leave_1", "join_1pct", "leave_1pct"):
            if key in s:
                m = s[key]
                print(
                    f"{s['name']:32} {key:>10} {pct(m['ideal'], 3):>7} "
                    f"{pct(m['primary_moved'], 3):>7} "
                    f"{m['primary_vs_ideal']:>7.3f} {pct(m['replicas_moved'], 3):>8} "
                    f"{m['replicas_vs_ideal']:>7.3f} {m['churn']:>6.0%}"
                )

    for s in scenarios:
        if "trim_rounds" in s:
            print(f"\nWeight trimming (proposal), {s['nodes']} nodes, {s['vnodes']} vnodes")
            print(
                f"{'round':>5}  {'RF=3 replica max/min/sd':>24}  {'primary max/min/sd':>24}"
                f"  {'replicas moved':>14}"
            )
            for r in s["trim_rounds"]:
                p, q = r["replica"], r["primary"]
                moved = pct(r["moved"]) if "moved" in r else "-"
                print(
                    f"{r['round']:>5}  {p['max_over_mean']:>7.3f} {p['min_over_mean']:>7.3f} "
                    f"{pct(p['stddev']):>8}  {q['max_over_mean']:>7.3f} "
                    f"{q['min_over_mean']:>7.3f} {pct(q['stddev']):>8}  {moved:>14}"
                )

    print("\nSpeed (one core; CPU seconds, so that a busy machine does not distort them)")
    head = (
        f"{'scenario':32} {'points':>9} {'build_ring':>10} {'update_ring':>11} "
        f"{'owners()/s':>11} {'build wall':>10}"
    )
    print(head)
    print("-" * len(head))
    for s in scenarios:
        if "build_seconds" in s:
            print(
                f"{s['name']:32} {s['points']:>9} {s['build_cpu_seconds']:>9.2f}s "
                f"{s['update_cpu_seconds']:>10.2f}s {s['owners_per_second']:>11,.0f} "
                f"{s['build_seconds']:>9.2f}s"
            )


def flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    """Numeric leaves of a scenario as ``a.b.c`` keys."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}.{k}" if prefix else k, v, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            flatten(f"{prefix}[{i}]", v, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix] = float(value)


def compare(baseline: dict[str, Any], current: dict[str, Any]) -> None:
    """Print the metrics that differ from the baseline, scenario by scenario."""
    old = {s["name"]: s for s in baseline.get("scenarios", [])}
    print(f"\nCompared with baseline ({baseline.get('meta', {}).get('date', '?')})")
    for s in current["scenarios"]:
        if s["name"] not in old:
            print(f"  {s['name']}: not in baseline")
            continue
        a: dict[str, float] = {}
        b: dict[str, float] = {}
        flatten("", old[s["name"]], a)
        flatten("", s, b)
        for key in sorted(a.keys() & b.keys()):
            if a[key] != b[key] and not (a[key] == 0 and b[key] == 0):
                rel = (b[key] - a[key]) / abs(a[key]) if a[key] else float("inf")
                print(f"  {s['name']:32} {key:34} {a[key]:>14.6g} -> {b[key]:>14.6g} ({rel:+.1%})")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulation; print tables; write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, under 20 s")
    ap.add_argument("--sizes", default="", help="comma-separated node counts")
    ap.add_argument("--max-points", type=int, default=0, help="cap on points per ring")
    ap.add_argument("--baseline", type=Path, help="earlier ring_sim.json to compare with")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = ap.parse_args(argv)

    sizes = [int(x) for x in args.sizes.split(",") if x] or (
        [100, 1000] if args.quick else [1000, 3000, 10000]
    )
    max_points = args.max_points or (300_000 if args.quick else 2_600_000)
    started = time.perf_counter()
    scenarios: list[Scenario] = []
    for count in sizes:
        print(f"simulating {count} nodes ...", file=sys.stderr, flush=True)
        scenarios += run_size(count, max_points, full=not args.quick)
    if not args.quick:
        scenarios.append(run_uneven(1000, 1_000_000))
        scenarios.append(run_trim(1000, 256))
    result = {
        "meta": {
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg_1m": os.getloadavg()[0],
            "default_vnodes": DEFAULT_VNODES,
            "max_points": max_points,
            "rf": RF,
            "bytes_per_point": bytes_per_point(),
            "seconds": 0.0,
        },
        "scenarios": scenarios,
    }
    result["meta"]["seconds"] = time.perf_counter() - started
    print_tables(scenarios)
    m = result["meta"]
    print(
        f"\nDEFAULT_VNODES={DEFAULT_VNODES}, ring memory ~{m['bytes_per_point']:.0f} bytes/point, "
        f"{m['cpus']} CPUs, load {m['loadavg_1m']:.1f}, {m['seconds']:.0f} s in all"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    if args.baseline:
        compare(json.loads(args.baseline.read_text()), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
