"""A whole Tessera cluster on one machine, for ``tessera up``, the tests and the benchmarks.

Not part of any node: nothing in ``tessera/`` or the node packages imports it.
"""

from devcluster.cluster import (
    ClusterError,
    LocalCluster,
    cmdline_names,
    etcd_binary,
    free_port,
    pid_alive,
    proc_start_time,
    spawned_alive,
    stop_from_file,
)

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
