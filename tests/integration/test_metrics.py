"""Every node kind's /metrics: the standard gRPC Prometheus names and labels, process
collectors, and the per-kind figures, moving under real traffic on the session cluster."""

from __future__ import annotations

import asyncio
import os
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from client import Client, NotFoundError
from tessera.pb import block_pb2, block_pb2_grpc
from tests.integration.helpers import new_user

if TYPE_CHECKING:
    from devcluster import LocalCluster
    from tests.conftest import ClusterEnv

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
GRPC_LABELS = {"grpc_type", "grpc_service", "grpc_method"}


def scrape(address: str) -> Samples:
    """Every sample of a node's /metrics, keyed by (name, labels)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def names(samples: Samples) -> set[str]:
    return {n for n, _ in samples}


def label_sets(samples: Samples, name: str) -> list[set[str]]:
    return [{k for k, _ in ls} for n, ls in samples if n == name]


def every_node(cluster: LocalCluster) -> list[tuple[str, str]]:
    return [(k, n["metrics"]) for k in ("meta", "block", "sync") for n in cluster.nodes(k)]


def test_every_node_kind_has_standard_and_process_metrics(cluster: LocalCluster) -> None:
    for kind, address in every_node(cluster):
        samples = scrape(address)
        have = names(samples)
        for name in (
            "grpc_server_started_total",
            "grpc_server_handled_total",
            "grpc_server_handling_seconds_bucket",
            "grpc_server_handling_seconds_count",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "python_info",
        ):
            assert name in have, (kind, name)
        assert all(GRPC_LABELS <= ls for ls in label_sets(samples, "grpc_server_started_total"))
        handled = label_sets(samples, "grpc_server_handled_total")
        assert handled and all(GRPC_LABELS | {"grpc_code"} <= ls for ls in handled), kind
        assert not any(n.startswith("tessera_rpc") for n in have), kind  # the old names are gone


async def test_metrics_move_under_traffic(
    cluster: LocalCluster, cluster_env: ClusterEnv, tmp_path: Path
) -> None:
    meta = cluster.nodes("meta")[0]["metrics"]
    blocks = [n["metrics"] for n in cluster.nodes("block")]
    sync = cluster.nodes("sync")[0]["metrics"]
    before = {a: scrape(a) for a in (meta, sync, *blocks)}

    _, token = await new_user(cluster_env.meta, cluster_env.admin_token, prefix="metrics")
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    async with await Client.connect(cluster_env.meta, token=token) as client:
        stream = client.subscribe(heartbeats=True)
        first = asyncio.ensure_future(stream.__anext__())  # opens the Subscribe stream
        await client.put_file(src, "/metrics/payload.bin")
        await client.get_file("/metrics/payload.bin", tmp_path / "back.bin")
        with pytest.raises(NotFoundError):
            await client.stat("/metrics/not-there")
        await asyncio.wait_for(first, 10)
        during_sync = scrape(sync)
        first.cancel()
        await stream.aclose()
    after = {a: scrape(a) for a in (meta, sync, *blocks)}

    def moved(address: str, name: str, **labels: str) -> float:
        return total(after[address], name, **labels) - total(before[address], name, **labels)

    # metanode: server RPCs by method and code, commits, database pool
    assert (
        moved(
            meta,
            "grpc_server_handled_total",
            grpc_service="tessera.v1.Metadata",
            grpc_method="Commit",
            grpc_type="unary",
            grpc_code="OK",
        )
        >= 1
    )
    assert moved(meta, "grpc_server_handled_total", grpc_method="Stat", grpc_code="NotFound") >= 1
    assert moved(meta, "grpc_server_started_total", grpc_method="Login") >= 1
    assert moved(meta, "grpc_server_handling_seconds_count", grpc_method="Commit") >= 1
    assert moved(meta, "tessera_meta_file_commits_total") >= 1
    assert total(after[meta], "tessera_meta_db_pool_max") > 0
    assert "tessera_meta_db_pool_size" in names(after[meta])
    assert "tessera_meta_txn_restarts_total" in names(after[meta])

    # block nodes: chunks served and stored, replicas sent to peers as gRPC clients
    puts = sum(
        moved(
            b,
            "grpc_server_handled_total",
            grpc_service="tessera.v1.Block",
            grpc_method="PutChunks",
            grpc_code="OK",
        )
        for b in blocks
    )
    assert puts >= 1
    assert sum(moved(b, "grpc_server_handled_total", grpc_method="GetChunks") for b in blocks) >= 1
    # messages of the streams: 3 MiB of chunks went in, and came back out
    assert (
        sum(moved(b, "grpc_server_msg_received_total", grpc_method="PutChunks") for b in blocks)
        >= 2
    )
    assert sum(moved(b, "grpc_server_msg_sent_total", grpc_method="GetChunks") for b in blocks) >= 2
    assert moved(meta, "grpc_server_msg_received_total", grpc_method="Commit") >= 1
    # replicas went to peers: received there over Replicate or the long-lived ReplicateStream,
    # sent by block nodes acting as gRPC clients
    replicas = sum(
        moved(b, "grpc_server_msg_received_total", grpc_service="tessera.v1.Block", grpc_method=m)
        for b in blocks
        for m in ("Replicate", "ReplicateStream")
    )
    assert replicas >= 1
    assert (
        sum(
            total(after[b], "grpc_client_started_total", grpc_service="tessera.v1.Block")
            for b in blocks
        )
        >= 1
    )
    assert sum(moved(b, "tessera_block_chunks_stored") for b in blocks) >= 2  # RF copies
    for b in blocks:
        assert total(after[b], "tessera_block_store_bytes") > 0
        assert (
            0
            < total(after[b], "tessera_block_disk_free_bytes")
            <= total(after[b], "tessera_block_disk_total_bytes")
        )
        for name in (
            "tessera_block_replication_queue",
            "tessera_block_handoff_backlog",
            "tessera_block_scrub_progress_ratio",
            "tessera_block_under_replicated_chunks",
        ):
            assert name in names(after[b]), name
        kinds = {dict(ls)["kind"] for n, ls in after[b] if n == "tessera_block_store_files"}
        assert kinds == {"segment", "table", "blob", "wal", "other"}
        assert total(after[b], "tessera_block_store_files", kind="segment") >= 1

    # sync node: the stream was open and counted; it read changes from the metanode as a client
    assert total(during_sync, "tessera_sync_streams") >= 1
    assert "tessera_sync_queued_events" in names(during_sync)
    assert "tessera_sync_queue_depth_max" in names(during_sync)
    assert (
        moved(
            sync,
            "grpc_server_started_total",
            grpc_service="tessera.v1.Sync",
            grpc_method="Subscribe",
            grpc_type="server_stream",
        )
        >= 1
    )
    assert moved(sync, "grpc_client_started_total", grpc_service="tessera.v1.Metadata") >= 1


async def test_node_status_takes_an_admin_token_not_a_users(cluster_env: ClusterEnv) -> None:
    _, user_token = await new_user(cluster_env.meta, cluster_env.admin_token, prefix="nostat")
    async with grpc.aio.insecure_channel(cluster_env.block[0]) as channel:
        stub = block_pb2_grpc.BlockStub(channel)
        resp = await stub.NodeStatus(
            block_pb2.NodeStatusRequest(), metadata=cluster_env.admin_metadata(), timeout=5
        )
        assert resp.node_id and resp.disk_total_bytes > 0 and resp.metrics_address
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.NodeStatus(
                block_pb2.NodeStatusRequest(),
                metadata=(("authorization", f"Bearer {user_token}"),),
                timeout=5,
            )
        assert e.value.code() is grpc.StatusCode.PERMISSION_DENIED
