"""A whole Tessera cluster on one machine, for ``tessera up``, the tests and the benchmarks.

``cluster`` (``LocalCluster``: start, stop, restart, add nodes), ``nodes`` (node processes and
readiness), ``backends`` (etcd and PostgreSQL), ``procs`` (child processes under /proc),
``state`` (``cluster.json`` and ``tessera down``), ``admin`` (the bootstrap admin account).
Not part of any node: nothing in ``tessera/`` or the node packages imports it.
"""

from devcluster.backends import etcd_binary
from devcluster.cluster import LocalCluster
from devcluster.procs import (
    ClusterError,
    cmdline_names,
    free_port,
    pid_alive,
    proc_start_time,
    spawned_alive,
)
from devcluster.state import stop_from_file

__all__ = [
    "ClusterError",
    "LocalCluster",
    "cmdline_names",
    "etcd_binary",
    "free_port",
    "pid_alive",
    "proc_start_time",
    "spawned_alive",
    "stop_from_file",
]
