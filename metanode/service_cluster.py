"""The Metadata service's view of the cluster: the rings and nodes, and the status for admins."""

from __future__ import annotations

from typing import Any

import grpc

from metanode.db import Conn
from metanode.rpcbase import Handlers
from tessera.chunking import MAX_CHUNK
from tessera.errors import TesseraError
from tessera.pb import common_pb2, meta_pb2


def _node_info(rec: Any, up: bool, kind: str) -> common_pb2.NodeInfo:
    return common_pb2.NodeInfo(
        id=rec.node_id,
        kind=kind,
        address=rec.address,
        zone=rec.zone,
        up=up,
        weight=rec.weight,
        metrics_address=rec.metrics_address,
    )


class ClusterRpcs(Handlers):
    """GetClusterInfo, GetStatus."""

    def _cluster_info(self) -> meta_pb2.ClusterInfo:
        info = meta_pb2.ClusterInfo(max_chunk_size=MAX_CHUNK)
        if self.block_watch is not None:
            view = self.block_watch.view
            params = view.cluster_params  # published in etcd with the ring
            info.block_ring.CopyFrom(
                common_pb2.RingInfo(
                    revision=view.revision,
                    vnodes=params.vnodes,
                    replicas=params.replicas,
                    write_quorum=params.write_quorum,
                    nodes=[
                        _node_info(n, n.node_id in view.alive, "block")
                        for n in sorted(view.nodes.values(), key=lambda n: n.node_id)
                    ],
                )
            )
        if self.meta_watch is not None:
            view = self.meta_watch.view
            info.meta_nodes.extend(
                _node_info(n, n.node_id in view.alive, "meta")
                for n in sorted(view.nodes.values(), key=lambda n: n.node_id)
            )
        if self.sync_watch is not None:
            view = self.sync_watch.view
            info.sync_nodes.extend(
                _node_info(n, n.node_id in view.alive, "sync")
                for n in sorted(view.nodes.values(), key=lambda n: n.node_id)
            )
        return info

    async def GetClusterInfo(
        self, request: meta_pb2.GetClusterInfoRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ClusterInfo:
        return self._cluster_info()

    async def GetStatus(
        self, request: meta_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ClusterStatus:
        await self._require_admin(context, "see the cluster status")
        status = meta_pb2.ClusterStatus(
            cluster=self._cluster_info(),
            etcd_ok=self.block_watch is not None and self.block_watch.view.revision > 0,
        )

        async def counts(conn: Conn) -> tuple[str, int, int]:
            version = (await (await conn.execute("SELECT version()")).fetchone())[0]
            n_users = (await (await conn.execute("SELECT count(*) FROM users")).fetchone())[0]
            n_files = (
                await (
                    await conn.execute("SELECT count(*) FROM files WHERE NOT deleted AND kind = 1")
                ).fetchone()
            )[0]
            return version, n_users, n_files

        if self.blocks is not None:
            # Each under-replicated chunk is counted by exactly one block node (as of its last pass).
            blocks = await self.blocks.node_statuses()
            status.under_replicated_chunks = sum(b.under_replicated for b in blocks)
        try:
            version, status.users, status.files = await self.db.run(counts)
            status.database_ok, status.database_version = True, version.split(" on ")[0]
        except TesseraError as e:
            status.database_ok, status.database_version = False, e.message
        return status
