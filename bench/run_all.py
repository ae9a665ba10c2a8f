"""Run the benchmarks, print their figures, and compare with ``bench/baseline.json``.

Each benchmark prints a human table; a line ``RESULT {json}`` (a flat object of numbers) is
what gets compared. Figures are measurements on a shared, noisy machine: the comparison
reports deltas, it never fails a build.

    .venv/bin/python bench/run_all.py [--quick] [--only NAME ...] [--save-baseline]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"
RESULTS = HERE / "results"

# name -> (script, full args, quick args)
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "ring_sim": ("ring_sim.py", [], ["--quick"]),
    "blocknode": ("blocknode_bench.py", [], ["--mib", "64"]),
    "meta": ("meta_bench.py", [], ["--fast"]),
    "sync": (
        "sync_bench.py",
        [],
        ["--trials", "20", "--files", "200", "--big-mib", "64", "--huge-mib", "128"],
    ),
}


def parse_result(output: str) -> dict[str, float]:
    """The last ``RESULT {...}`` line of a benchmark's output, numbers only."""
    for line in reversed(output.splitlines()):
        if line.startswith("RESULT "):
            data = json.loads(line[len("RESULT ") :])
            return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}
    return {}


def compare(name: str, now: dict[str, float], base: dict[str, float]) -> list[str]:
    """Lines of 'metric: now (baseline, +x%)'."""
    lines = []
    for key, value in sorted(now.items()):
        if key in base and base[key]:
            delta = (value - base[key]) / abs(base[key]) * 100
            lines.append(f"  {name}.{key}: {value:.4g}  (baseline {base[key]:.4g}, {delta:+.1f}%)")
        else:
            lines.append(f"  {name}.{key}: {value:.4g}  (no baseline)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (minutes, not tens of minutes)"
    )
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run only these")
    parser.add_argument(
        "--save-baseline", action="store_true", help="store these figures as the new baseline"
    )
    args = parser.parse_args()
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    RESULTS.mkdir(exist_ok=True)
    summary: list[str] = []
    figures: dict[str, dict[str, float]] = {}
    for name in args.only or list(BENCHES):
        script, full, quick = BENCHES[name]
        cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            summary.append(f"  {name}: FAILED (exit {proc.returncode})")
            continue
        (RESULTS / f"{name}.txt").write_text(proc.stdout)
        figures[name] = parse_result(proc.stdout)
        summary.append(f"  {name}: {time.monotonic() - start:.0f}s")
        summary.extend(compare(name, figures[name], baseline.get(name, {})))
    print("\n== summary")
    print("\n".join(summary))
    if args.save_baseline:
        baseline.update({k: v for k, v in figures.items() if v})
        BASELINE.write_text(json.dumps(baseline, indent=2, sort_keys=True) + "\n")
        print(f"baseline saved to {BASELINE.relative_to(HERE.parent)}")
    return 0 if all("FAILED" not in s for s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
