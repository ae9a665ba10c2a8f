"""A new user's first hour: the README's SDK example runs as written, `tessera up` says where
every node's metrics are and how to type `tessera`, a restarted local cluster keeps its
address (and a client that dials a stale one is told where the cluster went), and the
repository carries its own design documents."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from client import Client, SyncError

if TYPE_CHECKING:
    from devcluster import LocalCluster

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def readme_sdk_example() -> str:
    text = README.read_text()
    after = text.split("The same with the Python SDK", 1)[1]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match, "the README has a Python SDK example"
    return match.group(1)


@pytest.mark.cluster
async def test_readme_sdk_example_runs_as_written(cluster: LocalCluster, tmp_path: Path) -> None:
    # The README's CLI steps just before it create alice with this password.
    async with await Client.connect(cluster.meta_address, token=cluster.admin_token) as admin:
        try:
            await admin.create_user("alice", "correct horse")
        except SyncError as e:
            if e.status is not grpc.StatusCode.ALREADY_EXISTS:
                raise
    script = tmp_path / "example.py"
    script.write_text(readme_sdk_example())
    env = {**os.environ, "TESSERA_ENDPOINT": cluster.meta_address}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "read back: quarterly numbers" in done.stdout
    assert "stored docs/report.txt revision" in done.stdout
    assert "UPSERT docs/report.txt" in done.stdout  # the change feed delivered the commit
    assert (tmp_path / "report-copy.txt").read_text() == "quarterly numbers\n"


@pytest.mark.cluster
def test_up_prints_every_metrics_address_and_a_command_that_works(
    cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.cluster import _usage

    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "tessera").write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [".venv/bin/tessera", "up"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no tessera on the PATH
    text = _usage(cluster, cluster.dir, None, detach=True)
    for kind in ("meta", "block", "sync"):
        for node in cluster.nodes(kind):
            assert f"http://{node['metrics']}/metrics" in text, node["name"]
    assert "  .venv/bin/tessera login alice --switch" in text
    assert "source .venv/bin/activate" in text
    assert "\n  tessera " not in text  # no hint that would say "command not found"


def test_a_restarted_local_cluster_keeps_its_address(tmp_path: Path) -> None:
    from devcluster import LocalCluster

    where = tmp_path / "c"
    with LocalCluster.start(where, block_nodes=1, sync_nodes=0, meta_port=0, fast=True) as c:
        first = c.meta_address
    with LocalCluster.start(where, block_nodes=1, sync_nodes=0, meta_port=0, fast=True) as c:
        assert c.meta_address == first
        # A client that dials another address is told where the local cluster listens.
        env = {
            **os.environ,
            "TESSERA_CLUSTER_DIR": str(where),
            "TESSERA_ENDPOINT": "127.0.0.1:1",
            "TESSERA_TOKEN": c.admin_token,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
        done = subprocess.run(
            [sys.executable, "-m", "cli", "ls"], env=env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"listens on {first}" in lines[0], done.stderr


def test_the_repository_points_nowhere_outside_itself() -> None:
    assert (ROOT / "docs" / "design.md").is_file()
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = re.compile(r"\.\./shared|/work/shared")
    offenders = [
        name
        for name in tracked
        if name.endswith((".md", ".py", ".yaml", ".toml", ".txt", ".json", "Makefile"))
        and name != "tests/integration/test_everyday.py"
        and outside.search((ROOT / name).read_text(errors="replace"))
    ]
    assert not offenders, offenders
    ignored = (ROOT / ".gitignore").read_text().split()
    for written in ("loadtest-out/", ".tessera/", "bench/results/", ".venv/"):
        assert written in ignored, written
