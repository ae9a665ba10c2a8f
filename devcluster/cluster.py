"""A whole Tessera cluster on one machine: etcd, PostgreSQL and the nodes as real processes.

``LocalCluster.start(dir)`` is what ``tessera up`` and the test fixtures run. Everything it
keeps lives under ``dir``::

    dir/cluster.json        addresses, PIDs and the cluster secret (mode 0600)
    dir/secret              the cluster secret, reused when the same dir starts again
    dir/admin.json          the bootstrap admin's password (mode 0600)
    dir/logs/<name>.log     stdout and stderr of every process
    dir/run/<name>.json     each node's ready file
    dir/etcd/               etcd's data
    dir/postgres/data/      PostgreSQL's data
    dir/block-<i>/          each block node's RocksDB

Processes die with the launcher unless ``detach=True`` (see ``devcluster.procs``): start and
restart nodes from a long-lived thread (the main thread, as pytest and the CLI do). The block
ring's parameters (RF, W, vnodes) are published in etcd before any block node starts.

Node ids are plain (``block-0``): two clusters must not share one etcd.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from devcluster.admin import ADMIN_USER, bootstrap_admin
from devcluster.backends import Backends, publish_params
from devcluster.nodes import NODE_KINDS, ZONES, launch_node, node_env, port_of, wait_ready
from devcluster.procs import ClusterError, Proc, port_free, read_json, stop_procs, write_private
from devcluster.state import STATE_FILE, load_secret, running_processes
from tessera.config import META_PORT
from tessera.membership import DEFAULT_PARAMS, ClusterParams

log = logging.getLogger(__name__)


class LocalCluster:
    """etcd, PostgreSQL and Tessera nodes running as local processes under one directory."""

    def __init__(
        self,
        dir: Path,
        *,
        fast: bool = False,
        env: dict[str, str] | None = None,
        detach: bool = False,
        timeout: float = 60.0,
    ) -> None:
        """Prepare (but do not start) a cluster in ``dir``; use ``LocalCluster.start``."""
        self.dir = Path(dir).absolute()
        self.fast = fast
        self.detach = detach
        self.timeout = timeout
        self.extra_env = dict(env or {})
        self.admin_token = ""
        self.healthy_after = 0.0
        self._secret = ""
        self._backends = Backends(self.dir, fast, detach, timeout)
        self._nodes: dict[str, list[Proc]] = {kind: [] for kind in NODE_KINDS}
        self._previous: dict[str, Any] = {}
        self.params = DEFAULT_PARAMS

    # -- public API -----------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        dir: Path,
        *,
        block_nodes: int = 3,
        sync_nodes: int = 1,
        meta_nodes: int = 1,
        etcd_url: str | None = None,
        db_dsn: str | None = None,
        meta_port: int = META_PORT,
        fast: bool = False,
        env: dict[str, str] | None = None,
        detach: bool = False,
        timeout: float = 60.0,
        params: ClusterParams | None = None,
        web_port: int | None = None,
    ) -> LocalCluster:
        """Start a whole cluster and return once every node is healthy and the admin exists.

        Args:
            dir: where data, logs, ready files and ``cluster.json`` live (created if needed).
            block_nodes: number of block nodes (zones zone-a/b/c round-robin).
            sync_nodes: number of sync nodes.
            meta_nodes: number of metanodes; the first listens on ``meta_port``.
            etcd_url: use this etcd instead of starting one.
            db_dsn: use this PostgreSQL or CockroachDB instead of starting PostgreSQL.
            meta_port: the first metanode's port (7420 is the clients' default; 0: the previous
                run's in this directory when it is free, so that logged-in clients find the
                cluster again, else any free port).
            fast: trade durability for speed (fsync off in etcd and PostgreSQL), for tests.
            env: extra environment for the node processes (``TESSERA_*`` settings).
            detach: let the processes outlive this Python process (``tessera up --detach``).
            timeout: seconds each phase may take to become healthy.
            params: the block ring's RF, W and vnodes, published in etcd before any block node
                starts (block nodes take the cluster's); None: the defaults for a new cluster,
                the existing ones for a cluster started before.
            web_port: also start the web gateway on this port (0 picks one); None: no gateway.

        Returns:
            The running cluster.

        Raises:
            ClusterError: something did not start; everything started so far is stopped.
        """
        if min(block_nodes, meta_nodes) < 1 or sync_nodes < 0:
            raise ClusterError("a cluster needs at least one metanode and one block node")
        self = cls(dir, fast=fast, env=env, detach=detach, timeout=timeout)
        began = time.monotonic()
        try:
            self._start_backends(etcd_url, db_dsn)
            self.params = publish_params(self.etcd_url, params, self.dir)
            first = self._spawn_node("meta", meta_port or None)
            blocks = [self._spawn_node("block") for _ in range(block_nodes)]
            self._wait_ready([first, *blocks])
            rest = [self._spawn_node("meta") for _ in range(meta_nodes - 1)]
            rest += [self._spawn_node("sync") for _ in range(sync_nodes)]
            if web_port is not None:
                free = web_port if web_port and port_free(web_port) else 0
                rest.append(self._spawn_node("web", free))
            self._wait_ready(rest)
            self._write_state()
            self.bootstrap_admin()
            self.healthy_after = time.monotonic() - began
            self._write_state()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def secret(self) -> str:
        """The cluster secret every node shares."""
        return self._secret

    @property
    def etcd_url(self) -> str:
        """etcd's client URL."""
        return self._backends.etcd_url

    @property
    def db_dsn(self) -> str:
        """The database's DSN."""
        return self._backends.db_dsn

    @property
    def meta_address(self) -> str:
        """host:port of the first metanode (what clients use)."""
        return str(self._nodes["meta"][0].info.get("grpc", ""))

    @property
    def meta_addresses(self) -> list[str]:
        """host:port of every metanode."""
        return [str(p.info.get("grpc", "")) for p in self._nodes["meta"]]

    @property
    def block_addresses(self) -> list[str]:
        """host:port of every block node."""
        return [str(p.info.get("grpc", "")) for p in self._nodes["block"]]

    @property
    def sync_addresses(self) -> list[str]:
        """host:port of every sync node."""
        return [str(p.info.get("grpc", "")) for p in self._nodes["sync"]]

    @property
    def web_url(self) -> str:
        """The web gateway's URL ("" when it was not started)."""
        return str(self._nodes["web"][0].info.get("url", "")) if self._nodes["web"] else ""

    @property
    def logs_dir(self) -> Path:
        """Where every process's log file is."""
        return self.dir / "logs"

    @property
    def state_path(self) -> Path:
        """``dir/cluster.json``."""
        return self.dir / STATE_FILE

    def nodes(self, kind: str) -> list[dict[str, Any]]:
        """The cluster.json entries of one node kind."""
        return [p.record() for p in self._kind(kind)]

    def pids(self) -> list[int]:
        """PIDs of every running process of the cluster (nodes, PostgreSQL, etcd)."""
        return [p.pid for p in self._all() if p.running() and p.pid is not None]

    def exited(self) -> list[tuple[str, int, Path]]:
        """(name, exit code, log file) of every process that has exited."""
        return [
            (p.name, p.popen.returncode, p.log_path)
            for p in self._all()
            if p.popen is not None and p.popen.poll() is not None
        ]

    def stop(self, timeout: float = 15.0) -> None:
        """Stop nodes (SIGTERM), then PostgreSQL (SIGINT: fast shutdown), then etcd; wait for all."""
        nodes = [p for kind in ("web", "sync", "block", "meta") for p in self._nodes[kind]]
        stop_procs(nodes, signal.SIGTERM, timeout)
        backends = self._backends
        if backends.postgres:
            stop_procs([backends.postgres], signal.SIGINT, timeout)
        if backends.etcd:
            stop_procs([backends.etcd], signal.SIGTERM, timeout)
        if self.dir.exists() and (backends.etcd or backends.postgres or any(self._nodes.values())):
            self._write_state()

    def kill(self, kind: str, i: int = 0) -> None:
        """SIGKILL one process (and its process group) and reap it: a crash, for fault tests.

        Args:
            kind: ``meta``, ``block``, ``sync``, ``etcd`` or ``postgres``.
            i: index within the kind.
        """
        proc = self._proc(kind, i)
        proc.signal(signal.SIGKILL, group=True)
        if proc.popen is not None:
            proc.popen.wait()
        self._write_state()

    def restart(self, kind: str, i: int = 0) -> dict[str, Any]:
        """Stop one process if it runs, start it again (same data, id and port if free), wait.

        Args:
            kind: ``meta``, ``block``, ``sync``, ``etcd`` or ``postgres``.
            i: index within the kind.

        Returns:
            The process's new cluster.json entry.
        """
        proc = self._proc(kind, i)
        if proc.running():
            stop_procs([proc], signal.SIGINT if kind == "postgres" else signal.SIGTERM, 15.0)
        if kind in ("etcd", "postgres"):
            self._backends.launch(proc)
        else:
            self._launch_node(proc, proc.port if port_free(proc.port) else 0)
        self._wait_ready([proc])
        self._write_state()
        return proc.record()

    def add_block_node(self) -> dict[str, Any]:
        """Start one more block node (next zone round-robin), wait until healthy.

        Returns:
            Its cluster.json entry.
        """
        proc = self._spawn_node("block")
        try:
            self._wait_ready([proc])
        finally:
            self._write_state()
        return proc.record()

    def add_sync_node(self) -> dict[str, Any]:
        """Start one more sync node (it joins the sync ring), wait until healthy.

        Returns:
            Its cluster.json entry.
        """
        proc = self._spawn_node("sync")
        try:
            self._wait_ready([proc])
        finally:
            self._write_state()
        return proc.record()

    def bootstrap_admin(self) -> str:
        """Make sure the ``admin`` user exists and log it in; sets and returns ``admin_token``
        (the password is kept in ``dir/admin.json``)."""
        self.admin_token = bootstrap_admin(self.dir, self.meta_address, self._secret, self.db_dsn)
        return self.admin_token

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- starting -------------------------------------------------------------------------

    def _start_backends(self, etcd_url: str | None, db_dsn: str | None) -> None:
        """Check the directory, load the secret, start (or check) etcd and the database."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        (self.dir / "run").mkdir(exist_ok=True)
        self._previous = read_json(self.state_path)
        running = running_processes(self._previous)
        if running:
            names = ", ".join(f"{name} (pid {pid})" for name, pid, _prog in running)
            raise ClusterError(
                f"a cluster is already running in {self.dir}: {names}; stop it with: tessera down --dir {self.dir}"
            )
        self._secret = load_secret(self.dir / "secret")
        self._backends.start(
            etcd_url, db_dsn, self._previous.get("ports", {}), launched_hook=self._write_state
        )

    def _spawn_node(self, kind: str, port: int | None = None) -> Proc:
        """Create and launch the next node of ``kind`` (port None: the previous run's, if free)."""
        i = len(self._nodes[kind])
        name = f"{kind}-{i}"
        proc = Proc(
            name,
            kind,
            i,
            self.logs_dir / f"{name}.log",
            node_id=name,
            zone=ZONES[i % len(ZONES)],
            ready_file=self.dir / "run" / f"{name}.json",
        )
        if kind == "block":
            proc.data_dir = self.dir / name
        prev = next((n for n in self._previous.get(kind, []) if n.get("name") == name), {})
        if port is None:
            port = port_of(prev.get("grpc", ""))
            port = port if port and port_free(port) else 0
        elif port and not port_free(port):
            raise ClusterError(
                f"127.0.0.1:{port} is already in use (another tessera up?); cannot start {name} there"
            )
        proc.metrics_port = port_of(prev.get("metrics", ""))
        self._nodes[kind].append(proc)
        self._launch_node(proc, port)
        return proc

    def _launch_node(self, proc: Proc, port: int) -> None:
        launch_node(
            proc,
            port,
            etcd_url=self.etcd_url,
            db_dsn=self.db_dsn,
            meta_address=self.meta_address if proc.kind in ("sync", "web") else "",
            env=node_env(self._secret, self.extra_env),
            cwd=self.dir,
            detach=self.detach,
        )

    def _wait_ready(self, procs: list[Proc]) -> None:
        wait_ready(procs, self.timeout)

    # -- bookkeeping ----------------------------------------------------------------------

    def _all(self) -> Iterator[Proc]:
        for kind in NODE_KINDS:
            yield from self._nodes[kind]
        if self._backends.postgres:
            yield self._backends.postgres
        if self._backends.etcd:
            yield self._backends.etcd

    def _kind(self, kind: str) -> list[Proc]:
        if kind in ("etcd", "postgres"):
            proc = self._backends.etcd if kind == "etcd" else self._backends.postgres
            return [proc] if proc else []
        if kind not in self._nodes:
            raise ValueError(f"unknown kind {kind!r}: use one of meta, block, sync, etcd, postgres")
        return self._nodes[kind]

    def _proc(self, kind: str, i: int) -> Proc:
        procs = self._kind(kind)
        if not 0 <= i < len(procs):
            raise IndexError(f"no {kind} process #{i} in this cluster (it has {len(procs)})")
        return procs[i]

    def state(self) -> dict[str, Any]:
        """What cluster.json holds."""

        def pid_of(proc: Proc | None) -> int | None:
            return proc.pid if proc and proc.running() else None

        processes = [
            {"name": p.name, "program": p.program, "pid": p.pid, "start_time": p.start_time}
            for p in self._all()
            if p.running()
        ]
        return {
            "version": 1,
            "dir": str(self.dir),
            "etcd": self.etcd_url,
            "db": self.db_dsn,
            "meta": self.nodes("meta"),
            "block": self.nodes("block"),
            "sync": self.nodes("sync"),
            "web_url": self.web_url,
            "etcd_pid": pid_of(self._backends.etcd),
            "postgres_pid": pid_of(self._backends.postgres),
            "secret": self._secret,
            "admin": {"user": ADMIN_USER, "token": self.admin_token},
            "logs": str(self.logs_dir),
            "detached": self.detach,
            "launcher_pid": os.getpid(),
            "healthy_after": round(self.healthy_after, 3),
            "ports": self._backends.ports(),
            "processes": processes,
        }

    def _write_state(self) -> None:
        write_private(self.state_path, json.dumps(self.state(), indent=2) + "\n")
