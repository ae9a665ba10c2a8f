"""Cluster parameters (RF, W, vnodes) live in etcd with the ring, and every process reads them.

Against real etcd, PostgreSQL and node processes: a block node whose flags disagree with the
cluster's refuses to start; a cluster created with non-default parameters (vnodes=64, RF=2)
has the metanode computing the same ring and owners as the block nodes, so the GC deletes every
copy; ``tessera cluster set-params`` changes RF for the running nodes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from client import Client
from client._blocks import ring_from_pb
from tessera.auth import Signer
from tessera.chunking import chunk_hash
from tessera.membership import ClusterParams
from tessera.pb import block_pb2, block_pb2_grpc, common_pb2
from tessera.ring import chunk_position
from tessera.rpc import auth_metadata
from tests.fault.blockutil import wait_until
from tests.integration.helpers import new_user
from tests.integration.meta_util import put_bytes

if TYPE_CHECKING:  # the launcher is imported lazily, as in conftest
    from devcluster import LocalCluster

pytestmark = pytest.mark.cluster

PARAMS = ClusterParams(replicas=2, write_quorum=1, vnodes=64)


def _blocknode(
    etcd: str, data_dir: Path, secret: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m blocknode`` against ``etcd`` until it exits (bounded)."""
    argv = [
        sys.executable, "-m", "blocknode", "--etcd", etcd, "--data-dir", str(data_dir),
        "--listen", "127.0.0.1:0", "--metrics-listen", "", "--node-id", "params-misfit", *flags,
    ]  # fmt: skip
    env = {**os.environ, "TESSERA_CLUSTER_SECRET": secret}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


async def _ring_infos(addresses: list[str], secret: str) -> list[common_pb2.RingInfo]:
    md = auth_metadata(Signer(secret).node_token("params-test"))
    out = []
    for address in addresses:
        async with grpc.aio.insecure_channel(address) as ch:
            out.append(
                await block_pb2_grpc.BlockStub(ch).GetRing(
                    block_pb2.GetRingRequest(), metadata=md, timeout=10
                )
            )
    return out


async def _holders(addresses: list[str], secret: str, hashes: list[bytes]) -> dict[bytes, int]:
    """How many block nodes hold each chunk."""
    md = auth_metadata(Signer(secret).node_token("params-test"))
    count = dict.fromkeys(hashes, 0)
    for address in addresses:
        async with grpc.aio.insecure_channel(address) as ch:
            reply = await block_pb2_grpc.BlockStub(ch).HasChunks(
                block_pb2.HasChunksRequest(hashes=hashes), metadata=md, timeout=10
            )
        for h, present in zip(hashes, reply.present, strict=True):
            count[h] += present
    return count


def test_block_node_with_another_rf_refuses_to_start(cluster: LocalCluster, tmp_path: Path) -> None:
    """The session cluster runs RF=3: a node asking for RF=2 exits 1 and names the mismatch."""
    done = _blocknode(cluster.etcd_url, tmp_path / "misfit", cluster.secret, "--replicas", "2")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("blocknode: ") and "--replicas 2 (cluster: 3)" in lines[-1]
    assert "Traceback" not in done.stderr
    infos = asyncio.run(_ring_infos(cluster.block_addresses[:1], cluster.secret))
    assert "params-misfit" not in {n.id for n in infos[0].nodes}  # it never registered


@pytest.fixture(scope="module")
def small_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Four block nodes on a ring of 64 vnodes with RF=2, W=1, and a metanode."""
    from devcluster import LocalCluster

    c = LocalCluster.start(
        tmp_path_factory.mktemp("params"),
        block_nodes=4,
        sync_nodes=0,
        meta_port=0,
        fast=True,
        params=PARAMS,
        env={"TESSERA_REPAIR_INTERVAL": "2"},
    )
    try:
        yield c
    finally:
        c.stop()


async def test_metanode_ring_matches_block_nodes_for_non_default_params(
    small_cluster: LocalCluster, tmp_path: Path
) -> None:
    c = small_cluster
    blocks = await _ring_infos(c.block_addresses, c.secret)
    assert {(i.vnodes, i.replicas, i.write_quorum) for i in blocks} == {(64, 2, 1)}
    _, token = await new_user(c.meta_address, c.admin_token)
    async with (
        await Client.connect(c.meta_address, token=token) as user,
        await Client.connect(c.meta_address, token=c.admin_token) as admin,
    ):
        info = (await user.cluster_info()).block_ring
        assert (info.vnodes, info.replicas, info.write_quorum) == (64, 2, 1)
        meta_ring, block_ring = ring_from_pb(info), ring_from_pb(blocks[0])
        probes = [os.urandom(32) for _ in range(500)]
        assert all(
            meta_ring.owners(chunk_position(h), 2) == block_ring.owners(chunk_position(h), 2)
            for h in probes
        )

        # GC deletes where the block nodes put the copies: every copy goes.
        datas = [bytes([i]) + os.urandom(50_000) for i in range(24)]  # one chunk each
        hashes = [chunk_hash(d) for d in datas]
        for i, d in enumerate(datas):
            await put_bytes(user, tmp_path, f"f{i}.bin", d)
        held = await _holders(c.block_addresses, c.secret, hashes)
        assert all(n == 2 for n in held.values()), held  # RF=2, not 3
        for i in range(len(datas)):
            await user.delete(f"f{i}.bin")
        ns = user.root_namespace_id
        await admin.run_gc(retention_seconds=0, grace_seconds=0, namespace_id=ns)
        second = await admin.run_gc(retention_seconds=0, grace_seconds=0, namespace_id=ns)
        assert second.chunks_failed == 0
        left = {
            h.hex()[:12]: n
            for h, n in (await _holders(c.block_addresses, c.secret, hashes)).items()
            if n
        }
        assert not left, f"copies the metanode's GC missed: {left}"

        # An admin raises RF: the nodes and the metanode follow, the copies follow them.
        keep = os.urandom(50_000)
        await put_bytes(user, tmp_path, "keep.bin", keep)
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cli", "cluster", "set-params", "--etcd", c.etcd_url,
             "--replicas", "3"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "RF=3 W=1 vnodes=64 (was RF=2 W=1 vnodes=64)" in done.stdout

        async def followed() -> bool:
            rings = await _ring_infos(c.block_addresses, c.secret)
            meta = (await user.cluster_info()).block_ring
            return meta.replicas == 3 and all(r.replicas == 3 for r in rings)

        await wait_until(followed, 30, "every process sees RF=3")

        async def three_copies() -> bool:
            held = await _holders(c.block_addresses, c.secret, [chunk_hash(keep)])
            return held[chunk_hash(keep)] == 3

        await wait_until(three_copies, 60, "the replicator makes a third copy")


def test_set_params_refuses_impossible_values(cluster: LocalCluster) -> None:
    """W above RF is one line and exit 1; the cluster's parameters stay as they were."""
    done = subprocess.run(
        [sys.executable, "-m", "cli", "cluster", "set-params", "--etcd", cluster.etcd_url,
         "--write-quorum", "5"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == "tessera: write quorum W=5 must be between 1 and RF=3"
    shown = subprocess.run(
        [sys.executable, "-m", "cli", "cluster", "params", "--etcd", cluster.etcd_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.stdout.strip() == "RF=3 W=2 vnodes=8192"
