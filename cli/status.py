"""``tessera status``: the cluster as it is now, not as etcd's leases last said.

The metanode answers what it knows (database, etcd, the nodes registered). Then every node is
probed directly, all at once, with a short deadline (``PROBE_SECONDS``): a node that does not
answer its gRPC health check in time is DOWN, even while its etcd lease still runs. The live
block nodes then count under-replicated chunks afresh from what they hold now
(``NodeStatus`` with ``recount``, the admin's token), treating the probed-down nodes as down,
and report their capacity. Sync nodes report their open streams (connected devices).
"""

from __future__ import annotations

import argparse
import asyncio
import urllib.request
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli.common import _human
from client import Client
from tessera.pb import block_pb2, block_pb2_grpc, common_pb2
from tessera.rpc import open_channel

PROBE_SECONDS = 1.0  # a node that does not answer its health check in this time is DOWN
RECOUNT_SECONDS = 20.0  # a block node's scan of its own store for the recount


@dataclass
class Probe:
    """One node as probed now."""

    node: common_pb2.NodeInfo
    alive: bool
    why: str = ""  # when not alive
    block: block_pb2.NodeStatusResponse | None = None
    streams: int | None = None  # sync nodes: open Subscribe streams


async def _health(client: Client, node: common_pb2.NodeInfo) -> Probe:
    try:
        async with open_channel(node.address, client.security) as channel:
            resp = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=PROBE_SECONDS
            )
    except grpc.aio.AioRpcError as e:
        why = (
            "no answer in time"
            if e.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            else (e.details() or e.code().name)
        )
        return Probe(node, False, why.splitlines()[0][:80])
    if resp.status != health_pb2.HealthCheckResponse.SERVING:
        return Probe(node, False, health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
    return Probe(node, True)


async def _block_status(client: Client, probe: Probe, down: list[str]) -> None:
    try:
        async with open_channel(probe.node.address, client.security) as channel:
            probe.block = await block_pb2_grpc.BlockStub(channel).NodeStatus(
                block_pb2.NodeStatusRequest(recount=True, down_nodes=down),
                metadata=client._md,
                timeout=RECOUNT_SECONDS,
            )
    except grpc.aio.AioRpcError as e:
        probe.why = f"status unavailable: {e.code().name}"


def _stream_count(metrics_address: str) -> int | None:
    """Open Subscribe streams, from the sync node's /metrics (None if it cannot be read)."""
    if not metrics_address:
        return None
    try:
        with urllib.request.urlopen(
            f"http://{metrics_address}/metrics", timeout=PROBE_SECONDS
        ) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("tessera_sync_streams "):
            return int(float(line.split()[1]))
    return None


async def probe_cluster(
    client: Client, info: common_pb2.ClusterInfo
) -> tuple[list[Probe], list[Probe], list[Probe]]:
    """Health-probe every metanode, block and sync node at once; then NodeStatus of the live
    block nodes and the open streams of the live sync nodes. Returns (meta, block, sync)."""
    groups = [list(info.meta_nodes), list(info.block_ring.nodes), list(info.sync_nodes)]
    probes = await asyncio.gather(*(_health(client, n) for group in groups for n in group))
    metas = list(probes[: len(groups[0])])
    blocks = list(probes[len(groups[0]) : len(groups[0]) + len(groups[1])])
    syncs = list(probes[len(groups[0]) + len(groups[1]) :])
    down = [p.node.id for p in blocks if not p.alive]
    await asyncio.gather(*(_block_status(client, p, down) for p in blocks if p.alive))
    counts = await asyncio.gather(
        *(asyncio.to_thread(_stream_count, p.node.metrics_address) for p in syncs)
    )
    for p, n in zip(syncs, counts, strict=True):
        p.streams = n if p.alive else None
    return metas, blocks, syncs


def _plain_line(p: Probe, detail: str) -> str:
    n = p.node
    state = "up  " if p.alive else "DOWN"
    return f"  {state}  {n.id:<20} {n.address:<22} " + (detail if p.alive else f"({p.why})")


def _block_line(p: Probe) -> str:
    n = p.node
    state = "up  " if p.alive else "DOWN"
    line = f"  {state}  {n.id:<20} {n.address:<22} zone {n.zone:<8}"
    if not p.alive:
        lease = "lease alive in etcd" if n.up else "lease expired"
        return f"{line} ({p.why}; {lease})"
    if p.block is None:
        return f"{line} ({p.why})"
    b = p.block
    disk = (
        f"disk {_human(b.disk_free_bytes)} free of {_human(b.disk_total_bytes)}"
        if b.disk_total_bytes
        else "disk ?"
    )
    return (
        f"{line} {b.chunks} chunks, {_human(b.store_bytes)} stored, {disk}, "
        f"metrics {n.metrics_address or '-'}"
    )


async def status(client: Client, args: argparse.Namespace) -> int:
    """``tessera status``: the metanode's view, then every node probed now."""
    st = await client.status()
    ring = st.cluster.block_ring
    metas, blocks, syncs = await probe_cluster(client, st.cluster)
    print(f"metanode  {client.target}  ({sum(p.alive for p in metas)}/{len(metas)} up)")
    for p in metas:
        print(_plain_line(p, f"metrics {p.node.metrics_address or '-'}"))
    print(f"database  {'ok' if st.database_ok else 'DOWN'}  {st.database_version}")
    print(f"etcd      {'ok' if st.etcd_ok else 'DOWN'}")
    print(f"users     {st.users}   files {st.files}")
    up = sum(p.alive for p in blocks)
    answered = [p.block for p in blocks if p.block is not None]
    under = sum(b.under_replicated_now for b in answered)
    partial = "" if len(answered) == up else f" (from {len(answered)} of {up} live nodes)"
    print(
        f"block ring  revision {ring.revision}  RF={ring.replicas} W={ring.write_quorum} "
        f"vnodes={ring.vnodes}  {up}/{len(blocks)} up  "
        f"under-replicated chunks: {under}{partial}"
    )
    for p in blocks:
        print(_block_line(p))
    if answered:
        free = sum(b.disk_free_bytes for b in answered)
        stored = sum(b.store_bytes for b in answered)
        print(f"  capacity  {_human(stored)} stored, {_human(free)} free on live nodes")
    print(f"sync nodes  {sum(p.alive for p in syncs)}/{len(syncs)} up")
    for p in syncs:
        streams = "?" if p.streams is None else str(p.streams)
        detail = f"{streams} devices connected, metrics {p.node.metrics_address or '-'}"
        print(_plain_line(p, detail))
    devices = [p.streams for p in syncs if p.streams is not None]
    print(f"devices   {sum(devices)} connected now" if devices else "devices   unknown")
    return 0
