"""The harness's pure parts: sizes, edits, percentiles, propagation matching, bounds, CLI."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from pathlib import Path

import pytest

from loadtest.__main__ import build_parser, main, parse_size, resolve_target
from loadtest.profiles import PROFILES, KiB, MiB, Profile, get_profile
from loadtest.runner import SetupError, Target, check_addresses, is_loopback, run
from loadtest.sim import Budget
from loadtest.stats import Recorder, percentile, summarize_ms
from loadtest.sync import PropagationTracker
from loadtest.workload import (
    EditKind,
    apply_edit,
    conflicted_copy_name,
    sample_size,
    sha256_file,
    write_random,
)


def test_profiles_are_valid_and_bounded() -> None:
    for name, profile in PROFILES.items():
        assert profile.validated() is profile
        assert profile.name == name
    small = get_profile("small")
    assert small.users * small.devices_per_user <= 6
    assert small.max_file_bytes <= 8 * MiB
    assert small.duration + small.setup_timeout < 60
    assert get_profile("large").files_per_user == 200
    with pytest.raises(KeyError, match="small"):
        get_profile("huge")
    with pytest.raises(ValueError, match="max_ops"):
        small.replace(max_ops=0).validated()
    assert small.replace(duration=None).duration == small.duration


def test_sizes_follow_the_workload_and_respect_the_cap() -> None:
    rng = random.Random(7)
    profile = get_profile("medium")
    sizes = sorted(sample_size(rng, profile) for _ in range(20_000))
    assert 1 <= sizes[0] and sizes[-1] <= profile.max_file_bytes
    median = percentile(sizes, 50)
    assert 80 * KiB < median < 125 * KiB  # around 100 KiB
    assert percentile(sizes, 99) > 2 * MiB  # a long tail
    capped = profile.replace(max_file_bytes=256 * KiB)
    assert max(sample_size(rng, capped) for _ in range(2000)) == 256 * KiB


def test_edits_change_what_they_say(tmp_path: Path) -> None:
    rng = random.Random(3)
    profile = get_profile("small")
    src = tmp_path / "src"
    digest = write_random(src, 300 * KiB, rng)
    assert digest == sha256_file(src)
    size = src.stat().st_size
    seen_sizes = {}
    for kind in EditKind:
        dst = tmp_path / f"dst-{kind.value}"
        done, new_digest = apply_edit(src, dst, rng, profile, kind)
        assert done is kind
        assert new_digest == sha256_file(dst) != digest
        seen_sizes[kind] = dst.stat().st_size
    assert 4 * KiB <= seen_sizes[EditKind.APPEND] - size <= 64 * KiB
    assert 100 <= seen_sizes[EditKind.INSERT] - size <= 4 * KiB
    assert seen_sizes[EditKind.OVERWRITE] == size
    assert src.stat().st_size == size and sha256_file(src) == digest  # the source is untouched
    # An append past the cap becomes an overwrite.
    tight = profile.replace(max_file_bytes=size)
    done, _ = apply_edit(src, tmp_path / "capped", rng, tight, EditKind.APPEND)
    assert done is EditKind.OVERWRITE and (tmp_path / "capped").stat().st_size == size


def test_conflicted_copy_names() -> None:
    got = conflicted_copy_name("a/b/report.pdf", "dev1", "2026-01-02 030405")
    assert got == "a/b/report (conflicted copy, dev1, 2026-01-02 030405).pdf"
    assert conflicted_copy_name("Makefile", "d", "x") == "Makefile (conflicted copy, d, x)"


def test_percentiles_are_ordered_and_interpolated() -> None:
    assert math.isnan(percentile([], 50))
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    rng = random.Random(1)
    values = [rng.expovariate(1.0) for _ in range(999)]
    s = summarize_ms(values)
    assert s["count"] == 999
    assert s["min"] <= s["p50"] <= s["p95"] <= s["p99"] <= s["max"]
    assert summarize_ms([])["p50"] is None


async def test_propagation_matches_commits_and_arrivals() -> None:
    rec = Recorder()
    rec.start_load()
    tracker = PropagationTracker(rec)
    done = tracker.committed("r1", [("b", "device"), ("c", "share")], at=time.monotonic() - 0.05)
    tracker.arrived("r1", "b")
    tracker.arrived("r1", "b")  # a repeat (a reconnect's replay) counts once
    assert not done.is_set() and tracker.outstanding() == 1
    tracker.arrived("r1", "c")
    assert done.is_set() and tracker.outstanding() == 0
    # The change beats the commit's own answer: it counts, as zero, once the commit returns.
    tracker.arrived("r2", "b")
    tracker.committed("r2", [("b", "device")])
    # A warm-up marker is waited for but not reported.
    marker = tracker.committed("m", [("b", "device")], measure=False)
    tracker.arrived("m", "b")
    assert marker.is_set()
    tracker.committed("r3", [("b", "device")])  # never arrives
    assert not await tracker.drain(0.05)
    summary = tracker.summary()
    assert summary == {"expected": 4, "observed": 3, "missing": 1, "early": 1}
    kinds = sorted(k for _, _, k in rec.propagation)
    assert kinds == ["device", "device", "share"]
    assert all(s >= 0 for _, s, _ in rec.propagation)
    assert 0.04 < max(s for _, s, _ in rec.propagation) < 5


async def test_budget_stops_on_operations_and_on_time() -> None:
    by_ops = Budget(3, 60)
    assert [by_ops.take() for _ in range(5)] == [True, True, True, False, False]
    assert by_ops.stopped_by == "max_ops"
    by_time = Budget(10**6, 0.05)
    taken = 0
    for _ in range(10**6):
        if not by_time.take():
            break
        taken += 1
        await asyncio.sleep(0.01)
    assert by_time.stopped_by == "duration" and 0 < taken < 50


def test_report_of_an_empty_run_is_well_formed() -> None:
    rec = Recorder()
    rec.start_load()
    rec.record("get", time.monotonic(), "UNAVAILABLE", detail="down")
    rec.record("edit", time.monotonic(), "ABORTED", expected=True)
    rec.stop_load()
    report = rec.report()
    assert report["errors"]["unexpected"] == {"UNAVAILABLE": 1}
    assert report["errors"]["expected"] == {"ABORTED": 1}
    assert report["errors"]["examples"] == [
        {"op": "get", "status": "UNAVAILABLE", "detail": "down"}
    ]
    assert report["bytes"]["dedup_ratio"] is None
    assert report["sync"]["propagation_ms"]["count"] == 0
    json.dumps(report)


def test_loopback_only_unless_allowed() -> None:
    for address in ("127.0.0.1:7420", "localhost:1", "[::1]:7420", "127.3.2.1:9"):
        assert is_loopback(address), address
    for address in ("10.0.0.5:7420", "192.168.1.2:7420", "example.com:443", "8.8.8.8:53"):
        assert not is_loopback(address), address
    check_addresses(["127.0.0.1:1", "10.0.0.5:2"], allow_remote=True)
    with pytest.raises(SetupError, match="10.0.0.5"):
        check_addresses(["127.0.0.1:1", "10.0.0.5:2"], allow_remote=False)


async def test_run_refuses_a_remote_endpoint_before_any_call(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="loopback"):
        await run(Target("10.255.0.1:7420", "token"), get_profile("small"), tmp_path)
    assert not (tmp_path / "report.json").exists()


def test_cli_sizes_and_target_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_size("4MiB") == 4 * MiB and parse_size("512k") == 512 * KiB
    assert parse_size("1000") == 1000
    monkeypatch.delenv("TESSERA_ENDPOINT", raising=False)
    monkeypatch.delenv("TESSERA_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "cluster.json").write_text(
        json.dumps({"meta": [{"grpc": "127.0.0.1:4321"}], "admin": {"token": "adm"}})
    )
    args = build_parser().parse_args(["--cluster-dir", str(tmp_path)])
    target = resolve_target(args)
    assert (target.endpoint, target.admin_token, target.users) == ("127.0.0.1:4321", "adm", ())
    # Another endpoint does not get the local cluster's admin token.
    args = build_parser().parse_args(["--cluster-dir", str(tmp_path), "--endpoint", "127.0.0.1:9"])
    assert resolve_target(args).admin_token == ""
    users = tmp_path / "users.json"
    users.write_text(json.dumps([{"name": "a", "password": "p"}, {"name": "b", "token": "t"}]))
    args = build_parser().parse_args(["--cluster-dir", str(tmp_path), "--users-file", str(users)])
    assert [u.name for u in resolve_target(args).users] == ["a", "b"]
    users.write_text(json.dumps([{"name": "a"}]))
    with pytest.raises(SetupError, match="password or a token"):
        resolve_target(args)


def test_cli_refuses_remote_and_bad_bounds(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--endpoint", "10.9.8.7:7420", "--admin-token", "x", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "loopback" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--endpoint", "127.0.0.1:1", "--duration", "0"])
    assert exit_.value.code == 2  # argparse: must be positive


def test_profile_replace_ignores_none() -> None:
    p = Profile(name="x", users=1, devices_per_user=1, files_per_user=1, max_file_bytes=1,
                duration=1, max_ops=1)  # fmt: skip
    assert p.replace(users=None, max_ops=5).max_ops == 5
