"""The state file of a local cluster, ``dir/cluster.json``, and stopping a cluster from it.

``tessera down`` runs in another process than the launcher: it finds the processes by the PIDs
in the file and signals only those whose start time and command line still match.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

from devcluster.procs import (
    ClusterError,
    cmdline_names,
    group_members,
    pid_alive,
    proc_stat,
    read_json,
    write_private,
)

log = logging.getLogger(__name__)

STATE_FILE = "cluster.json"


def load_secret(path: Path) -> str:
    """The cluster secret saved at ``path``; a new one (saved there) if none is."""
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        secret = ""
    if len(secret) < 16:
        secret = secrets.token_urlsafe(32)
        write_private(path, secret + "\n")
    return secret


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
            fields = proc_stat(pid)
            group = fields is not None and int(fields[2]) == pid  # it leads its own group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL) if group else os.kill(pid, signal.SIGKILL)
    for _name, pid, _program in targets:
        deadline = time.monotonic() + 5
        while (pid_alive(pid) or group_members(pid)) and time.monotonic() < deadline:
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
    running = running_processes(read_json(path))
    nodes = [t for t in running if t[2] in {"web", "metanode", "blocknode", "syncnode"}]
    _signal_and_wait(nodes, signal.SIGTERM, timeout)
    _signal_and_wait([t for t in running if t[2] == "postgres"], signal.SIGINT, timeout)
    _signal_and_wait([t for t in running if t[2] == "etcd"], signal.SIGTERM, timeout)
    return [name for name, _pid, _program in running]
