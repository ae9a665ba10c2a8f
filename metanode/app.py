"""The metanode as a NodeApp: database pool, migrations, etcd membership, the service."""

from __future__ import annotations

import logging

import grpc
from prometheus_client import CollectorRegistry

from metanode.blocks import BlockClient
from metanode.db import Database
from metanode.gc import Collector
from metanode.notify import Notifier
from metanode.schema import migrate
from metanode.servicer import MetadataService
from tessera import membership
from tessera.auth import Signer
from tessera.config import MetaConfig
from tessera.pb import meta_pb2_grpc
from tessera.revocation import Revocations
from tessera.rpc import ChannelSecurity
from tessera.server import Bound

log = logging.getLogger(__name__)


class MetaApp:
    """Stateless over the database: any number of metanodes can serve at once."""

    service_names = ("tessera.v1.Metadata",)
    public_methods = frozenset({"/tessera.v1.Metadata/Login", "/tessera.v1.Metadata/OpenLink"})
    node_methods: frozenset[str] = frozenset()

    def __init__(self, cfg: MetaConfig, registry: CollectorRegistry, node_id: str) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.signer = Signer(cfg.cluster_secret)
        self.db = Database(
            cfg.db, min_size=cfg.db_pool_min, max_size=cfg.db_pool_max, registry=registry
        )
        self.etcd = membership.connect(cfg.etcd_endpoints())
        self.block_watch = membership.Watcher(self.etcd, "block")
        self.sync_watch = membership.Watcher(self.etcd, "sync")
        self.meta_watch = membership.Watcher(self.etcd, "meta")  # for tessera status
        security = ChannelSecurity.for_node(cfg)
        self.notifier = Notifier(
            self.db, self.sync_watch, self.signer.node_token(node_id), security=security
        )
        self.blocks = BlockClient(
            self.block_watch, self.signer.node_token(node_id), security=security
        )
        self.collector = Collector(
            self.db,
            self.blocks,
            revision_retention=cfg.revision_retention,
            journal_retention=cfg.journal_retention,
            grace=cfg.gc_grace,
            holder=node_id,
        )
        self.service = MetadataService(
            self.db,
            self.signer,
            token_ttl=cfg.token_ttl,
            ticket_ttl=cfg.ticket_ttl,
            block_watch=self.block_watch,
            sync_watch=self.sync_watch,
            notifier=self.notifier,
            collector=self.collector,
            blocks=self.blocks,
            etcd=self.etcd,
            meta_watch=self.meta_watch,
        )
        self.registration: membership.Registration | None = None
        self.revocations = Revocations()

    def register(self, server: grpc.aio.Server) -> None:
        meta_pb2_grpc.add_MetadataServicer_to_server(self.service, server)

    async def start(self, bound: Bound) -> None:
        await self.db.open()
        await migrate(self.db)
        await self.revocations.start(self.etcd)
        await self.block_watch.start()
        await self.sync_watch.start()
        await self.meta_watch.start()
        record = membership.NodeRecord(
            self.node_id, bound.grpc_address, self.cfg.zone, 1.0, bound.metrics_address
        )
        self.registration = membership.Registration(self.etcd, "meta", record, self.cfg.lease_ttl)
        await self.registration.start()
        self.collector.start()

    async def stop(self) -> None:
        if self.registration:
            await self.registration.stop(leave=True)
        await self.block_watch.stop()
        await self.sync_watch.stop()
        await self.meta_watch.stop()
        await self.revocations.stop()
        await self.notifier.close()
        await self.collector.stop()
        await self.blocks.close()
        await self.db.close()
