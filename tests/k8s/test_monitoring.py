"""Dashboards and alerts as code (k8s/components/monitoring): the alert rules pass promtool and
its rule unit tests, the Grafana dashboard is well formed, and both name only metrics that the
nodes export (the names are taken from the code that registers them)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "k8s" / "components" / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
DASHBOARD = MONITORING / "dashboard.json"
REQUIRED_ALERTS = {
    "TesseraNodeDown",
    "TesseraUnderReplicatedChunks",
    "TesseraBlockDiskNearlyFull",
    "TesseraHighErrorRate",
    "TesseraHighLatencyP99",
}
# Names Prometheus itself or the standard collectors provide (not registered by Tessera code).
STANDARD = {
    "up",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "grpc_server_handled_total",
    "grpc_server_started_total",
    "grpc_server_handling_seconds_bucket",
    "grpc_client_handled_total",
}
PROMQL_WORDS = {
    "sum", "by", "rate", "min", "max", "histogram_quantile", "le", "job", "instance",
    "grpc_service", "grpc_method", "grpc_code", "grpc_type", "label_values", "without", "on", "kind",
}  # fmt: skip


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: `apt-get install prometheus` (make test does this)",
            pytrace=False,
        )
    return path


def test_alert_rules_pass_promtool() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_fire_on_their_own_series() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=MONITORING,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_required_alerts_exist_with_severity_and_summary() -> None:
    rules = _rules()
    assert REQUIRED_ALERTS <= {r["alert"] for r in rules}
    for r in rules:
        assert r["labels"]["severity"] in {"warning", "critical"}, r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _targets(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_is_well_formed() -> None:
    dash = _dashboard()
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "job"} <= variables
    for p in dash["panels"]:
        grid = p["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["type"] in {"timeseries", "stat", "gauge", "table", "bargauge"}, p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
            assert "$job" in t["expr"], f"{p['title']}: every query follows the job variable"
    # No two panels of a row overlap.
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r'"[^"]*"', "", expr)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS and not w.isdigit()}


def _exported_names() -> set[str]:
    """Metric names the node code registers (prometheus_client adds ``_total`` to counters)."""
    names: set[str] = set()
    sources = [
        *ROOT.glob("blocknode/*.py"),
        *ROOT.glob("metanode/*.py"),
        *ROOT.glob("syncnode/*.py"),
    ]
    for path in sources:
        text = path.read_text()
        for kind, name in re.findall(
            r'(Counter|Gauge|Histogram|GaugeMetricFamily)\(\s*f?"(tessera_[a-z_{}]+)"', text
        ):
            fills = {
                "{kind}": ("repair", "rebalance", "handoff"),
                "{stat}": ("pool_size", "pool_available", "requests_waiting"),
            }
            variants = [name]
            for hole, values in fills.items():
                if hole in name:
                    variants = [name.replace(hole, v) for v in values]
            names.update(v + "_total" if kind == "Counter" else v for v in variants)
    return names


def test_dashboard_and_alerts_use_only_exported_metrics() -> None:
    exported = _exported_names() | STANDARD
    exprs = [t["expr"] for t in _targets(_dashboard())] + [r["expr"] for r in _rules()]
    used = set().union(*(_metric_names(e) for e in exprs))
    unknown = used - exported
    assert not unknown, f"not exported by any node: {sorted(unknown)}"
    # and the figures the issue asks for are all on the dashboard
    for needed in (
        "tessera_block_store_bytes",
        "tessera_block_disk_free_bytes",
        "tessera_block_under_replicated_chunks",
        "tessera_block_scrub_progress_ratio",
        "tessera_block_store_files",
        "tessera_meta_file_commits_total",
        "tessera_meta_txn_restarts_total",
        "tessera_meta_db_pool_size",
        "tessera_sync_streams",
        "tessera_sync_queued_events",
    ):
        assert needed in used, needed
