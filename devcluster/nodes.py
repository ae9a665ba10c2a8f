"""Tessera node processes of a local cluster: their command lines, and waiting until they serve.

A node is ready when its ready file names its address and the gRPC health service answers
SERVING there; etcd when ``/health`` answers, PostgreSQL when it takes a connection.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devcluster.procs import ClusterError, Proc, log_tail, port_free, read_json, spawn

NODE_KINDS = ("meta", "block", "sync", "web")
ZONES = ("zone-a", "zone-b", "zone-c")


def node_env(secret: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a node process: ours, ``extra``, and the cluster secret."""
    env = {**os.environ, **extra}
    env["TESSERA_CLUSTER_SECRET"] = secret  # not a flag: flags show in ps
    env["PYTHONUNBUFFERED"] = "1"
    return env


def etcd_healthy(url: str, timeout: float = 1.0) -> bool:
    """True if the etcd at ``url`` (first of a comma-separated list) answers /health."""
    first = url.split(",")[0].strip().rstrip("/")
    if "://" not in first:
        first = "http://" + first
    try:
        with urllib.request.urlopen(first + "/health", timeout=timeout) as resp:
            return json.loads(resp.read()).get("health") == "true"
    except (OSError, ValueError, urllib.error.URLError):
        return False


def postgres_ready(port: int) -> bool:
    """True if PostgreSQL on 127.0.0.1:``port`` takes a connection."""
    import psycopg

    try:
        psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=1
        ).close()
    except psycopg.Error:
        return False
    return True


def port_of(address: str) -> int:
    """The port of ``host:port`` (0 when there is none)."""
    tail = address.rpartition(":")[2]
    return int(tail) if tail.isdigit() else 0


def launch_node(
    proc: Proc,
    port: int,
    *,
    etcd_url: str,
    db_dsn: str,
    meta_address: str,
    env: dict[str, str],
    cwd: Path,
    detach: bool,
) -> None:
    """Start a node process for ``proc`` on ``port`` (0 picks one), with its kind's flags.

    Block nodes get no ``--replicas``/``--write-quorum``/``--vnodes``: they take the
    cluster's from etcd.
    """
    assert proc.ready_file is not None
    proc.ready_file.unlink(missing_ok=True)
    if proc.kind == "web":  # the HTTP gateway: a client of the metanode, no etcd, no metrics
        argv = [
            sys.executable, "-m", "web", "--endpoint", meta_address,
            "--listen", f"127.0.0.1:{port}", "--ready-file", str(proc.ready_file),
            "--spool", str(cwd / "web-spool"),
        ]  # fmt: skip
        spawn(proc, argv, cwd=cwd, detach=detach, env=env)
        return
    metrics = proc.metrics_port if proc.metrics_port and port_free(proc.metrics_port) else 0
    argv = [
        sys.executable, "-m", proc.program,
        "--node-id", proc.node_id,
        "--listen", f"127.0.0.1:{port}",
        "--metrics-listen", f"127.0.0.1:{metrics}",
        "--etcd", etcd_url,
        "--zone", proc.zone,
        "--ready-file", str(proc.ready_file),
    ]  # fmt: skip
    if proc.kind == "block":
        assert proc.data_dir is not None
        proc.data_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--data-dir", str(proc.data_dir)]
    elif proc.kind == "meta":
        argv += ["--db", db_dsn]
    elif proc.kind == "sync":
        argv += ["--meta", meta_address]
    spawn(proc, argv, cwd=cwd, detach=detach, env=env)


def wait_ready(procs: list[Proc], timeout: float) -> None:
    """Wait until each process serves (etcd /health, PostgreSQL connects, node ready file + gRPC health)."""
    pending = list(procs)
    channels: dict[str, grpc.Channel] = {}
    deadline = time.monotonic() + timeout
    try:
        while pending:
            for proc in list(pending):
                if not proc.running():
                    assert proc.popen is not None
                    raise ClusterError(
                        f"{proc.name} exited with code {proc.popen.returncode} while starting; see {proc.log_path}",
                        log_tail(proc.log_path),
                    )
                if _ready(proc, channels):
                    pending.remove(proc)
            if pending and time.monotonic() > deadline:
                proc = pending[0]
                why = (
                    "no ready file" if proc.kind in NODE_KINDS and not proc.info else "not healthy"
                )
                raise ClusterError(
                    f"{proc.name} not ready after {timeout:.0f} s ({why}); see {proc.log_path}",
                    log_tail(proc.log_path),
                )
            if pending:
                time.sleep(0.05)
    finally:
        for channel in channels.values():
            channel.close()


def _ready(proc: Proc, channels: dict[str, grpc.Channel]) -> bool:
    if proc.kind == "etcd":
        return etcd_healthy(f"http://127.0.0.1:{proc.port}", timeout=0.5)
    if proc.kind == "postgres":
        return postgres_ready(proc.port)
    if proc.kind == "web":
        return _web_ready(proc)
    if not proc.info:
        assert proc.ready_file is not None
        info = read_json(proc.ready_file)
        if not info.get("grpc") or info.get("pid") not in (None, proc.pid):
            return False
        proc.info = info
        proc.port = port_of(str(info["grpc"])) or proc.port
        proc.metrics_port = port_of(str(info.get("metrics") or "")) or proc.metrics_port
    address = str(proc.info["grpc"])
    channel = channels.get(proc.name) or channels.setdefault(
        proc.name, grpc.insecure_channel(address)
    )
    try:
        resp = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=1.0
        )
    except grpc.RpcError:
        return False
    return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


# -- bookkeeping ----------------------------------------------------------------------


def _web_ready(proc: Proc) -> bool:
    """The web gateway wrote its ready file and answers ``/healthz``."""
    import urllib.request

    assert proc.ready_file is not None
    info = read_json(proc.ready_file)
    if not info.get("url") or info.get("pid") != proc.pid:
        return False
    try:
        with urllib.request.urlopen(f"http://{info['address']}/healthz", timeout=1.0) as resp:
            ok = resp.status == 200
    except OSError:
        return False
    if ok:
        proc.info = info
        proc.port = port_of(str(info["address"])) or proc.port
    return ok
