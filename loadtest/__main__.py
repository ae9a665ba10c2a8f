"""``python -m loadtest`` (or ``tessera-loadtest``): load a running cluster and report.

Finds the cluster the way the ``tessera`` CLI does: ``--endpoint``, else ``TESSERA_ENDPOINT``,
else the local cluster's ``cluster.json`` (``--cluster-dir``, ``TESSERA_CLUSTER_DIR`` or
``.tessera/cluster``), else the user config that ``tessera up`` / ``tessera login`` wrote,
else ``127.0.0.1:7420``. The admin token comes from ``--admin-token``,
``TESSERA_ADMIN_TOKEN``, ``cluster.json`` or the user config (when it is the admin's);
``--users-file`` gives pre-made users instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from cli import userconfig
from cli.cluster import default_dir
from loadtest.profiles import PROFILES, GiB, KiB, MiB, get_profile
from loadtest.runner import SetupError, Target, UserSpec, run
from tessera.config import DEFAULT_META_ENDPOINT

UNITS = {"": 1, "b": 1, "k": KiB, "kib": KiB, "m": MiB, "mib": MiB, "g": GiB, "gib": GiB}


def parse_size(text: str) -> int:
    """``4MiB``, ``512k``, ``1G`` or plain bytes."""
    raw = text.strip().lower().replace(" ", "")
    digits = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(digits) :]
    if not digits or unit not in UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 4MiB or 512k")
    return int(float(digits) * UNITS[unit])


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} must be positive")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tessera-loadtest",
        description="Drive a running Tessera cluster with simulated users and devices; write "
        "report.json, samples.csv and PNG plots to --out.",
    )
    p.add_argument("--endpoint", help="metanode host:port [default: see module doc]")
    p.add_argument("--admin-token", help="admin bearer token (creates the run's users)")
    p.add_argument(
        "--users-file",
        type=Path,
        help='JSON list of pre-made users: [{"name": ..., "password": ...} or {"name": ..., "token": ...}]',
    )
    p.add_argument("--cluster-dir", type=Path, help="local cluster directory holding cluster.json")
    p.add_argument("--profile", choices=sorted(PROFILES), default="small")
    p.add_argument("--duration", type=_positive(float), help="seconds of load")
    p.add_argument("--max-ops", type=_positive(int), help="operations in all")
    p.add_argument("--users", type=_positive(int), help="simulated users")
    p.add_argument("--devices", type=_positive(int), help="devices per user")
    p.add_argument("--workers", type=_positive(int), help="operations in flight per device")
    p.add_argument("--files-per-user", type=_positive(int))
    p.add_argument("--max-file-size", type=parse_size, help="cap of the size tail, e.g. 64MiB")
    p.add_argument(
        "--think-time", type=float, help="mean seconds between one worker's operations [default: 0]"
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--no-share", action="store_true", help="do not share folders between users")
    p.add_argument("--out", type=Path, help="output folder [default: ./loadtest-out/<time>]")
    p.add_argument("--no-plots", action="store_true", help="JSON and CSV only")
    p.add_argument("--keep-work", action="store_true", help="keep the local file copies in --out")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback endpoint (a deployed cluster); refused otherwise",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_target(args: argparse.Namespace) -> Target:
    """Endpoint, admin token and users from flags, environment, cluster.json and user config."""
    state = _read_json((args.cluster_dir or default_dir()) / "cluster.json")
    metas = state.get("meta") or []
    local_endpoint = str(metas[0].get("grpc", "")) if metas and isinstance(metas[0], dict) else ""
    local_token = str((state.get("admin") or {}).get("token", ""))
    cfg = userconfig.load()
    endpoint = (
        args.endpoint
        or os.environ.get("TESSERA_ENDPOINT")
        or local_endpoint
        or cfg.endpoint
        or DEFAULT_META_ENDPOINT
    )
    token = args.admin_token or os.environ.get("TESSERA_ADMIN_TOKEN", "")
    if not token and local_token and endpoint == local_endpoint:
        token = local_token
    if not token and cfg.user == "admin" and cfg.token and endpoint == (cfg.endpoint or endpoint):
        token = cfg.token
    users: tuple[UserSpec, ...] = ()
    if args.users_file:
        try:
            raw = json.loads(args.users_file.read_text())
        except (OSError, ValueError) as e:
            raise SetupError(f"cannot read --users-file {args.users_file}: {e}") from None
        items = raw.get("users", []) if isinstance(raw, dict) else raw
        try:
            users = tuple(
                UserSpec(str(u["name"]), str(u.get("password", "")), str(u.get("token", "")))
                for u in items
            )
        except (TypeError, KeyError, AttributeError):
            raise SetupError(
                "--users-file: each user needs a name and a password or token"
            ) from None
        if any(not (u.password or u.token) for u in users):
            raise SetupError("--users-file: each user needs a password or a token")
    return Target(endpoint, token, users, allow_remote=args.allow_remote)


def summary_lines(report: dict[str, Any], out: Path) -> list[str]:
    """A short human summary of a report."""
    lines = [
        f"{report['profile']['name']} profile: {report['users']} users, {report['devices']} devices, "
        f"{report['totals']['ops']} ops in {report['duration_s']:.1f} s "
        f"({report['totals']['ops_per_s']:.1f} ops/s, stopped by {report['stopped_by']})",
        f"{'op':<10}{'count':>7}{'ops/s':>9}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'errors':>8}",
    ]
    for op, o in report["ops"].items():
        lat = o["latency_ms"]

        def fmt(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        rate = "-" if o["ops_per_s"] is None else f"{o['ops_per_s']:.2f}"
        lines.append(
            f"{op:<10}{o['count']:>7}{rate:>9}{fmt(lat['p50']):>10}{fmt(lat['p95']):>10}"
            f"{fmt(lat['p99']):>10}{o['errors']:>8}"
        )
    s, b = report["sync"], report["bytes"]
    p = s["propagation_ms"]
    if p["count"]:
        lines.append(
            f"sync propagation: p50 {p['p50']:.1f} / p95 {p['p95']:.1f} / p99 {p['p99']:.1f} ms "
            f"({s['observed']} of {s['expected']} arrivals, {s['missing']} missing)"
        )
    ratio = "n/a" if b["dedup_ratio"] is None else f"{b['dedup_ratio']:.2f}"
    lines.append(
        f"bytes: {b['logical_committed'] / 1e6:.1f} MB committed, {b['sent'] / 1e6:.1f} MB sent, "
        f"{b['received'] / 1e6:.1f} MB received; dedup ratio {ratio}"
    )
    e = report["errors"]
    lines.append(f"errors: unexpected {e['unexpected'] or 0}, expected {e['expected'] or 0}")
    for op, why in report["skipped"].items():
        lines.append(f"skipped {op}: {why}")
    lines.append(f"report: {out / 'report.json'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exits 0 on a clean run, 1 with unexpected errors, 2 if it cannot start."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    profile = get_profile(args.profile).replace(
        duration=args.duration,
        max_ops=args.max_ops,
        users=args.users,
        devices_per_user=args.devices,
        workers_per_device=args.workers,
        files_per_user=args.files_per_user,
        max_file_bytes=args.max_file_size,
        seed=args.seed,
        think_time=args.think_time,
        share=False if args.no_share else None,
    )
    out = args.out or Path("loadtest-out") / datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        profile.validated()
    except ValueError as e:
        print(f"tessera-loadtest: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        target = resolve_target(args)
        report = asyncio.run(
            run(target, profile, out, plots=not args.no_plots, keep_work=args.keep_work)
        )
    except SetupError as e:
        print(f"tessera-loadtest: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("tessera-loadtest: interrupted", file=sys.stderr)
        sys.exit(130)
    print("\n".join(summary_lines(report, out)))
    sys.exit(1 if report["errors"]["unexpected_total"] else 0)


if __name__ == "__main__":
    main()
