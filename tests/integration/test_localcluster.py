"""The local cluster launcher: real etcd, real PostgreSQL, real node processes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devcluster import (
    ClusterError,
    LocalCluster,
    cmdline_names,
    etcd_binary,
    free_port,
    pid_alive,
    proc_start_time,
    stop_from_file,
)
from tessera.pb import meta_pb2, meta_pb2_grpc

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def health(address: str) -> int:
    """The gRPC health status of a node (service "")."""
    with grpc.insecure_channel(address) as channel:
        return (
            health_pb2_grpc.HealthStub(channel)
            .Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            .status
        )


def all_nodes(state: dict) -> list[dict]:
    return [*state["meta"], *state["block"], *state["sync"]]


def pids_named(program: str) -> set[int]:
    """Every live process on the machine whose command line runs ``program``."""
    return {
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and pid_alive(int(p.name)) and cmdline_names(int(p.name), program)
    }


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (a PostgreSQL server and its backends)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and pid_alive(int(p.name)):
            try:
                if os.getpgid(int(p.name)) == pgid:
                    out.append(int(p.name))
            except ProcessLookupError:
                pass
    return out


def wait_dead(pids: list[int], timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while (alive := [p for p in pids if pid_alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[str]:
    """A standalone etcd, started without LocalCluster."""
    client, peer = free_port(), free_port()
    argv = [
        str(etcd_binary()), "--name", "ext", "--data-dir", str(tmp_path / "ext-etcd"),
        "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"ext=http://127.0.0.1:{peer}", "--log-level", "error", "--unsafe-no-fsync",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{client}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                    if json.loads(resp.read())["health"] == "true":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "standalone etcd did not start"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


# -- the session cluster ----------------------------------------------------------------------


def test_every_node_is_serving(cluster: LocalCluster) -> None:
    state = json.loads(cluster.state_path.read_text())
    assert [len(state[k]) for k in ("meta", "block", "sync")] == [1, 3, 1]
    for node in all_nodes(state):
        assert health(node["grpc"]) == health_pb2.HealthCheckResponse.SERVING, node["name"]
        assert pid_alive(node["pid"]), node["name"]
    assert cluster.meta_address == state["meta"][0]["grpc"]
    assert cluster.block_addresses == [n["grpc"] for n in state["block"]]
    assert cluster.sync_addresses == [n["grpc"] for n in state["sync"]]


def test_cluster_json_lists_everything(cluster: LocalCluster) -> None:
    path = cluster.state_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the secret
    state = json.loads(path.read_text())
    assert state["secret"] == cluster.secret and len(cluster.secret) >= 16
    assert state["etcd"] == cluster.etcd_url and state["db"] == cluster.db_dsn
    assert cmdline_names(state["etcd_pid"], "etcd") and pid_alive(state["etcd_pid"])
    assert cmdline_names(state["postgres_pid"], "postgres") and pid_alive(state["postgres_pid"])
    for kind, program in (("meta", "metanode"), ("block", "blocknode"), ("sync", "syncnode")):
        for i, node in enumerate(state[kind]):
            assert node["name"] == node["node_id"] == f"{kind}-{i}"
            assert cmdline_names(node["pid"], program)
            assert node["metrics"] and node["grpc"].startswith("127.0.0.1:")
            ready = json.loads((cluster.dir / "run" / f"{node['name']}.json").read_text())
            assert ready["pid"] == node["pid"] and ready["grpc"] == node["grpc"]
            assert Path(node["log"]).is_file()
    assert [n["zone"] for n in state["block"]] == ["zone-a", "zone-b", "zone-c"]
    assert len({n["data_dir"] for n in state["block"]}) == 3
    assert all(
        str(cluster.secret)
        not in " ".join(Path(f"/proc/{n['pid']}/cmdline").read_text().split("\0"))
        for n in all_nodes(state)
    )


def test_every_node_exports_rpc_metrics(cluster: LocalCluster) -> None:
    state = json.loads(cluster.state_path.read_text())
    for node in all_nodes(state):
        with urllib.request.urlopen(f"http://{node['metrics']}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        assert "grpc_server_handled_total" in text, node["name"]


def test_admin_was_bootstrapped(cluster: LocalCluster) -> None:
    assert cluster.admin_token
    with grpc.insecure_channel(cluster.meta_address) as channel:
        me = meta_pb2_grpc.MetadataStub(channel).WhoAmI(
            meta_pb2.WhoAmIRequest(),
            metadata=(("authorization", f"Bearer {cluster.admin_token}"),),
            timeout=10,
        )
    assert me.name == "admin" and me.is_admin


# -- tessera up --detach / tessera down -------------------------------------------------------


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.cluster", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_up_detach_then_down_leaves_no_process(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    cluster_dir = tmp_path / "c"
    up = run_cli(
        "up",
        "--detach",
        "--dir",
        str(cluster_dir),
        "--meta-port",
        "0",
        "--block-nodes",
        "1",
        "--web-port",
        "0",
        env=env,
    )
    state = (
        json.loads((cluster_dir / "cluster.json").read_text())
        if (cluster_dir / "cluster.json").exists()
        else {}
    )
    pids = [p["pid"] for p in state.get("processes", [])]
    try:
        assert up.returncode == 0, up.stderr
        assert "tessera user add alice" in up.stdout and "healthy in" in up.stdout
        assert len(pids) == 6  # etcd, postgres, meta, block, sync, web
        assert all(pid_alive(p) for p in pids)  # they outlived the detached launcher
        web_url = state["web_url"]
        assert web_url.startswith("http://127.0.0.1:") and f"web       {web_url}" in up.stdout
        with urllib.request.urlopen(f"{web_url}/login", timeout=10) as page:
            assert page.status == 200 and b"Log in" in page.read()
        saved = json.loads((tmp_path / "config" / "tessera" / "config.json").read_text())
        assert (
            saved["endpoint"] == state["meta"][0]["grpc"]
            and saved["user"] == "admin"
            and saved["token"]
            and saved["web_url"] == web_url
        )

        again = run_cli("up", "--detach", "--dir", str(cluster_dir), "--meta-port", "0", env=env)
        assert again.returncode != 0 and "already running" in again.stderr
        assert [line for line in again.stderr.splitlines() if line.startswith("tessera:")] == [
            again.stderr.strip().splitlines()[-1]
        ]

        down = run_cli("down", "--dir", str(cluster_dir), env=env)
        assert down.returncode == 0, down.stderr
        assert wait_dead(pids, timeout=1) == []
        assert group_members(state["postgres_pid"]) == []  # no backend left either
        assert "nothing was running" in run_cli("down", "--dir", str(cluster_dir), env=env).stdout
    finally:
        for pid in wait_dead(pids, timeout=0):
            os.kill(pid, 9)


def test_down_without_a_cluster_is_one_line_error(tmp_path: Path) -> None:
    result = run_cli("down", "--dir", str(tmp_path / "nothing"), env=dict(os.environ))
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "no cluster" in result.stderr


def test_down_never_signals_a_recycled_pid(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        start = proc_start_time(sleeper.pid)
        fake = [
            {
                "name": "etcd",
                "program": "etcd",
                "pid": sleeper.pid,
                "start_time": start,
            },  # wrong program
            {
                "name": "sleep",
                "program": "sleep",
                "pid": sleeper.pid,
                "start_time": start + 1,
            },  # wrong start time
        ]
        (tmp_path / "cluster.json").write_text(json.dumps({"processes": fake}))
        assert stop_from_file(tmp_path, timeout=1) == []
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


# -- existing etcd and database, faults -------------------------------------------------------


def test_existing_etcd_and_db_are_used(
    tmp_path: Path, etcd_server: str, cluster: LocalCluster
) -> None:
    # The session cluster's PostgreSQL serves as the "existing" server, with a database of our own.
    db = cluster.db_dsn.rsplit("/", 1)[0] + "/tessera_external"
    etcds, postgreses = pids_named("etcd"), pids_named("postgres")
    with LocalCluster.start(
        tmp_path / "c2", block_nodes=1, etcd_url=etcd_server, db_dsn=db, meta_port=0, fast=True
    ) as c2:
        state = json.loads(c2.state_path.read_text())
        assert state["etcd"] == etcd_server and state["db"] == db
        assert state["etcd_pid"] is None and state["postgres_pid"] is None
        assert pids_named("etcd") == etcds
        assert pids_named("postgres") == postgreses  # postmasters only: backends rename themselves
        assert sorted(p["program"] for p in state["processes"]) == [
            "blocknode",
            "metanode",
            "syncnode",
        ]
        assert (
            not (c2.logs_dir / "etcd.log").exists() and not (c2.logs_dir / "postgres.log").exists()
        )
        assert c2.admin_token

        # Faults: kill a block node, restart it with the same id and port; add one more.
        before = c2.nodes("block")[0]
        c2.kill("block", 0)
        assert not pid_alive(before["pid"])
        after = c2.restart("block", 0)
        assert after["node_id"] == before["node_id"] and after["grpc"] == before["grpc"]
        assert (
            after["pid"] != before["pid"]
            and health(after["grpc"]) == health_pb2.HealthCheckResponse.SERVING
        )
        added = c2.add_block_node()
        assert added["name"] == "block-1" and added["zone"] == "zone-b"
        assert health(added["grpc"]) == health_pb2.HealthCheckResponse.SERVING
        pids = c2.pids()
    assert wait_dead(pids, timeout=0) == []


def test_a_node_that_fails_to_start_is_named_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(ClusterError) as err:
        LocalCluster.start(
            tmp_path / "bad",
            block_nodes=1,
            sync_nodes=0,
            meta_port=0,
            fast=True,
            env={"TESSERA_DB_POOL_MAX": "0"},
        )
    assert "meta-0" in str(err.value) and "meta-0.log" in str(err.value)
    assert "db-pool-max" in err.value.detail
    state = json.loads((tmp_path / "bad" / "cluster.json").read_text())
    assert state["processes"] == []  # etcd and PostgreSQL were stopped again


def test_unreachable_etcd_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="does not answer"):
        LocalCluster.start(tmp_path / "x", etcd_url=f"http://127.0.0.1:{free_port()}", meta_port=0)


LAUNCHER = """
import json, sys, time
from pathlib import Path
from devcluster import LocalCluster
c = LocalCluster.start(Path(sys.argv[1]), block_nodes=1, meta_port=0, fast=True)
print(json.dumps(c.pids()), flush=True)
time.sleep(600)
"""


def test_processes_die_with_a_crashed_launcher(tmp_path: Path) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path / "c")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    pids: list[int] = []
    try:
        assert launcher.stdout is not None
        pids = json.loads(launcher.stdout.readline() or "[]")
        assert len(pids) == 5 and all(pid_alive(p) for p in pids)
        launcher.kill()  # no stop(), no atexit: only PR_SET_PDEATHSIG can clean up
        launcher.wait()
        assert wait_dead(pids, timeout=30) == []
    finally:
        launcher.kill()
        launcher.wait()
        for pid in wait_dead(pids, timeout=0):
            os.killpg(pid, 9)


def test_foreground_up_stops_everything_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    argv = [
        sys.executable,
        "-m",
        "cli.cluster",
        "up",
        "--dir",
        str(tmp_path / "c"),
        "--meta-port",
        "0",
        "--block-nodes",
        "1",
        "--web-port",
        "0",
    ]
    up = subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    pids: list[int] = []
    try:
        assert up.stdout is not None
        out = ""
        while "tessera down" not in out and (line := up.stdout.readline()):
            out += line
        assert "Ctrl-C" in out, out + (
            up.stderr.read() if up.poll() is not None and up.stderr else ""
        )
        state = json.loads((tmp_path / "c" / "cluster.json").read_text())
        pids = [p["pid"] for p in state["processes"]]
        assert len(pids) == 6 and all(pid_alive(p) for p in pids)  # the web gateway too
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0
        assert wait_dead(pids, timeout=0) == []
        assert json.loads((tmp_path / "c" / "cluster.json").read_text())["processes"] == []
    finally:
        up.kill()
        up.wait()
        for pid in wait_dead(pids, timeout=0):
            os.killpg(pid, 9)
