"""Shared fixtures: the real local cluster (etcd, PostgreSQL and node processes).

Everything here is lazy: importing this file starts nothing, and a test that does not ask for
``cluster`` or ``cluster_env`` never pays for (or depends on) the node packages.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from devcluster import LocalCluster


@dataclass(frozen=True)
class ClusterEnv:
    """What a test needs to talk to the session cluster."""

    meta: str  # host:port of the first metanode
    secret: str  # the cluster secret
    admin_token: str  # bearer token of the bootstrap ``admin`` user
    etcd: str  # etcd client URL
    db: str  # database DSN
    dir: Path  # the cluster directory (logs in dir/logs)
    block: tuple[str, ...]  # block node addresses
    sync: tuple[str, ...]  # sync node addresses

    def node_token(self, node_id: str = "tests") -> str:
        """Node credentials, as one node presents to another."""
        from tessera.auth import Signer

        return Signer(self.secret).node_token(node_id)

    def admin_metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata carrying the admin's bearer token."""
        return (("authorization", f"Bearer {self.admin_token}"),)


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_cluster_processes() -> Iterator[None]:
    """After the session, no process started by a LocalCluster may still run."""
    yield
    module = sys.modules.get("devcluster")
    if module is None:  # no cluster was started in this session
        return
    leftovers = module.spawned_alive()
    for _name, pid in leftovers:  # do not leave them behind either
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not leftovers, f"cluster processes outlived the test session: {leftovers}"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A whole cluster for the session: etcd, PostgreSQL, 1 metanode, 3 block nodes, 1 sync node."""
    from devcluster import LocalCluster

    c = LocalCluster.start(tmp_path_factory.mktemp("cluster"), meta_port=0, fast=True)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def cluster_env(cluster: LocalCluster) -> ClusterEnv:
    """The session cluster's addresses and credentials."""
    return ClusterEnv(
        meta=cluster.meta_address,
        secret=cluster.secret,
        admin_token=cluster.admin_token,
        etcd=cluster.etcd_url,
        db=cluster.db_dsn,
        dir=cluster.dir,
        block=tuple(cluster.block_addresses),
        sync=tuple(cluster.sync_addresses),
    )
