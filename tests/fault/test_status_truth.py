"""``tessera status`` tells the truth quickly: a SIGKILLed block node shows DOWN within 2 s
(its 5 s etcd lease still running), and under-replicated chunks are counted from what the live
nodes hold at that moment, not at the last replication pass.

Its own small cluster (3 block nodes, RF=3, default 5 s lease) with replication passes 10
minutes apart, so that no pass can have counted anything by the time status runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import time
from collections.abc import Iterator

import pytest

from cli.status import status
from client import Client
from devcluster import LocalCluster
from tests.fault.blockutil import Blocks, block_cluster, make_chunks, misplacement, wait_until
from tests.integration.helpers import run_cli

pytestmark = [pytest.mark.cluster]

ENV = {"TESSERA_REPAIR_INTERVAL": "600", "TESSERA_SCRUB_RATE_MB": "0", "TESSERA_GRACE_STOP": "1"}
CHUNKS = 40


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with block_cluster(tmp_path_factory.mktemp("statustruth"), ENV, block_nodes=3) as c:
        yield c


async def _status_text(cluster: LocalCluster) -> str:
    """What ``tessera status`` prints, run in this process."""
    out = io.StringIO()
    async with await Client.connect(cluster.meta_address, token=cluster.admin_token) as client:
        with contextlib.redirect_stdout(out):
            assert await status(client, argparse.Namespace()) == 0
    return out.getvalue()


def _line(text: str, node_id: str) -> str:
    return next(line for line in text.splitlines() if f" {node_id} " in line)


async def test_killed_block_node_is_down_within_2s_and_counted_now(
    cluster: LocalCluster, tmp_path: object
) -> None:
    blocks = Blocks(cluster)
    try:
        chunks = make_chunks(CHUNKS, 64 * 1024)
        hashes = [h for h, _ in chunks]
        ring = await blocks.ring()
        await blocks.put_routed(chunks, ring)

        async def placed() -> bool:
            missing, extra = misplacement(ring, await blocks.holdings(hashes), hashes)
            return not missing and not extra

        await wait_until(placed, 20, "every chunk on its 3 owners")
        healthy = await _status_text(cluster)
        assert "3/3 up" in healthy and "under-replicated chunks: 0" in healthy
        for rec in cluster.nodes("block"):
            line = _line(healthy, rec["node_id"])
            assert line.lstrip().startswith("up") and f"metrics {rec['metrics']}" in line
            assert "chunks," in line and "free of" in line
        assert f"metrics {cluster.nodes('meta')[0]['metrics']}" in healthy

        await asyncio.to_thread(cluster.kill, "block", 2)
        killed_at = time.monotonic()
        text = await _status_text(cluster)
        took = time.monotonic() - killed_at
        assert took < 2.0, f"status took {took:.1f} s after the kill"
        line = _line(text, "block-2")
        assert line.lstrip().startswith("DOWN"), line
        assert "lease alive in etcd" in line  # etcd still says up: the probe found it
        assert "2/3 up" in text
        # Every chunk had a copy on block-2: each is now short, counted once, counted now.
        assert f"under-replicated chunks: {CHUNKS}" in text, text
        # The metanode's figure is still the last pass's (none since): status did not use it.
        async with await Client.connect(cluster.meta_address, token=cluster.admin_token) as c:
            assert (await c.status()).under_replicated_chunks == 0

        # The command a user runs says the same, as one process with its own config.
        done = await asyncio.to_thread(
            run_cli, cluster.meta_address, "status", token=cluster.admin_token, home=tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert _line(done.stdout, "block-2").lstrip().startswith("DOWN")
        assert f"under-replicated chunks: {CHUNKS}" in done.stdout
    finally:
        await blocks.close()
