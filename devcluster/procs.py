"""Child processes of a local cluster: starting them, finding them under /proc, stopping them.

Every process is started in its own session (so Ctrl-C in the launcher's terminal reaches only
the launcher) and, unless detached, with ``PR_SET_PDEATHSIG`` through ``setpriv --pdeathsig`` so
that it dies with the launcher. Linux delivers that signal when the *thread* that started the
child exits, so start processes from a long-lived thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROGRAMS = {
    "meta": "metanode",
    "block": "blocknode",
    "sync": "syncnode",
    "web": "web",
    "etcd": "etcd",
    "postgres": "postgres",
}


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


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (index 0 = state), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def proc_start_time(pid: int) -> int:
    """The process start time in clock ticks since boot (0 if it is gone)."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields else 0


def pid_alive(pid: int, start_time: int = 0) -> bool:
    """True if ``pid`` runs (zombies count as dead) and, when given, started at ``start_time``."""
    fields = proc_stat(pid)
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


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
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


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically, readable only by its owner."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any]:
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


def as_user(user: str | None) -> dict[str, Any]:
    """subprocess arguments to run as ``user`` with only its own group (not root's groups)."""
    if user is None:
        return {}
    import pwd

    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


# -- one process ------------------------------------------------------------------------------


@dataclass
class Proc:
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


def stop_procs(procs: Iterable[Proc], sig: int, timeout: float) -> None:
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
        while (members := group_members(p.popen.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        if members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.popen.pid, signal.SIGKILL)


def spawn(
    proc: Proc,
    argv: list[str],
    *,
    cwd: Path,
    detach: bool = False,
    env: dict[str, str] | None = None,
    user: str | None = None,
    deathsig: int = signal.SIGTERM,
) -> None:
    """Start ``argv`` as ``proc``: own session, output appended to its log, death signal unless
    ``detach``; the process is recorded for ``spawned_alive``."""
    proc.log_path.parent.mkdir(parents=True, exist_ok=True)
    with proc.log_path.open("ab") as out:
        out.write(
            f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {proc.name}: {' '.join(argv)}\n".encode()
        )
        out.flush()
        proc.popen = subprocess.Popen(
            argv if detach else _with_deathsig(argv, deathsig),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            **as_user(user),
        )
    proc.start_time = proc_start_time(proc.popen.pid)
    proc.info = {}
    with _spawned_lock:
        _spawned.append((proc.name, proc.popen.pid, proc.start_time))
    log.debug("started %s pid %d", proc.name, proc.popen.pid)
