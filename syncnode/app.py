"""The sync node as a NodeApp: etcd membership, the sync ring, the feed."""

from __future__ import annotations

import grpc
from prometheus_client import CollectorRegistry

from syncnode.feed import Feed
from syncnode.service import MetaJournalSource, SyncService
from tessera import membership
from tessera.auth import Signer
from tessera.config import SyncConfig
from tessera.pb import sync_pb2_grpc
from tessera.revocation import Revocations
from tessera.ring import SYNC_VNODES, key_position
from tessera.rpc import ChannelSecurity
from tessera.server import Bound


class SyncApp:
    service_names = ("tessera.v1.Sync",)
    public_methods: frozenset[str] = frozenset()
    node_methods = frozenset({"/tessera.v1.Sync/Notify"})

    def __init__(self, cfg: SyncConfig, registry: CollectorRegistry, node_id: str) -> None:
        self.cfg = cfg
        self.node_id = node_id
        signer = Signer(cfg.cluster_secret)
        self.source = MetaJournalSource(
            cfg.meta, signer.node_token(node_id), ChannelSecurity.for_node(cfg)
        )
        self.etcd = membership.connect(cfg.etcd_endpoints())
        self.watch = membership.Watcher(
            self.etcd, "sync", on_change=lambda _view: self.feed.ring_changed()
        )
        self.feed = Feed(
            self.source, owns=self._owns, heartbeat=cfg.heartbeat, poll_interval=cfg.poll_interval
        )
        self.service = SyncService(self.feed, registry)
        self.registration: membership.Registration | None = None
        self.revocations = Revocations()

    def _owns(self, user_id: str) -> bool:
        ring = self.watch.view.ring(SYNC_VNODES, alive_only=True)
        if len(ring) == 0:
            return True  # etcd view not there yet: serve rather than bounce
        owners = ring.owners(key_position(user_id), 1)
        return not owners or owners[0] == self.node_id

    def register(self, server: grpc.aio.Server) -> None:
        sync_pb2_grpc.add_SyncServicer_to_server(self.service, server)

    async def start(self, bound: Bound) -> None:
        await self.revocations.start(self.etcd)
        record = membership.NodeRecord(
            self.node_id, bound.grpc_address, self.cfg.zone, 1.0, bound.metrics_address
        )
        self.registration = membership.Registration(self.etcd, "sync", record, self.cfg.lease_ttl)
        await self.registration.start()
        await self.watch.start()
        await self.watch.wait_for(lambda v: self.node_id in v.alive, timeout=10)

    async def stop(self) -> None:
        await self.watch.stop()
        await self.revocations.stop()
        if self.registration:
            await self.registration.stop(leave=True)
        await self.source.close()
