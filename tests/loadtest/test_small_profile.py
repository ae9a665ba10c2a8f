"""The small profile against the session's local cluster: every figure present and sane."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from loadtest import PROFILES, Target, run
from loadtest.profiles import LOAD_OPS

pytestmark = pytest.mark.cluster

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALWAYS = ("create", "edit", "copy", "get", "list", "stat")  # the SDK has these from the start
OPTIONAL = ("move", "delete")  # exercised when the cluster implements them
EXPECTED_STATUSES = {"ABORTED", "UNIMPLEMENTED"}  # conflicts; calls a cluster lacks


def _ordered(lat: dict) -> bool:
    return lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]


@pytest.mark.timeout(120)
async def test_small_profile_reports_every_figure(cluster, tmp_path: Path) -> None:
    profile = PROFILES["small"]
    started = time.monotonic()
    report = await run(Target(cluster.meta_address, cluster.admin_token), profile, tmp_path)
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"the small profile took {elapsed:.1f} s"
    assert json.loads((tmp_path / "report.json").read_text()) == report

    # Bounded and stopped by itself.
    assert report["stopped_by"] in {"max_ops", "duration"}
    assert report["totals"]["ops"] <= profile.max_ops
    assert report["duration_s"] <= profile.duration + profile.op_timeout + 5
    assert report["users"] == profile.users
    assert report["devices"] == profile.users * profile.devices_per_user
    assert report["warmup"]["seen"] == report["warmup"]["markers"] > 0

    # Every operation exercised, with its rate and ordered percentiles.
    ops = report["ops"]
    exercised = ALWAYS + tuple(op for op in OPTIONAL if op not in report["skipped"])
    for op in exercised:
        assert ops[op]["ok"] > 0, (op, ops.get(op))
        assert ops[op]["ops_per_s"] > 0
        assert _ordered(ops[op]["latency_ms"]), (op, ops[op]["latency_ms"])
    assert set(ops) - {"share", "subscribe", "namespaces"} <= set(LOAD_OPS)
    if "share" not in report["skipped"]:
        assert ops["share"]["ok"] == report["shared_folders"] == profile.users
    totals = report["totals"]
    assert totals["ops_per_s"] > 0
    assert 0.5 <= totals["read_write_ratio"] <= 2.0  # reads about as many as writes

    # Devices follow each other.
    sync = report["sync"]
    assert sync["propagation_ms"]["count"] > 0 and _ordered(sync["propagation_ms"])
    assert sync["observed"] == sync["expected"] > 0 and sync["missing"] == 0
    assert report["sync_drained"]
    if "share" not in report["skipped"]:
        assert sync["by_kind"]["share"]["count"] > 0

    # Bytes and deduplication.
    b = report["bytes"]
    assert b["sent"] > 0 and b["received"] > 0
    assert b["logical_committed"] >= b["sent"]
    assert b["dedup_ratio"] >= 1.0
    assert b["chunks_committed"] >= b["chunks_sent"] > 0
    files = report["files"]
    assert files["created"] > 0
    assert files["size_bytes"]["max"] <= profile.max_file_bytes

    # No unexpected errors; expected ones are conflicts or calls the cluster lacks.
    errors = report["errors"]
    assert errors["unexpected_total"] == 0, errors["examples"]
    assert set(errors["expected"]) <= EXPECTED_STATUSES
    assert set(errors["by_status"]) <= EXPECTED_STATUSES

    # Plots written, real PNGs.
    assert sorted(report["plots"]) == sorted(
        ["latency.png", "timeline.png", "propagation.png", "bytes.png", "sizes.png"]
    )
    for name in report["plots"]:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
    lines = (tmp_path / "samples.csv").read_text().splitlines()
    assert lines[0].startswith("t_s,op,latency_ms") and len(lines) > totals["ops"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("work-")]  # scratch removed
