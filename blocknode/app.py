"""The block node as a ``NodeApp``: store, Block service, etcd registration and ring watch,
and the background loops (replicator, scrubber, decommissioner)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Collection
from pathlib import Path

import aetcd
import grpc
from prometheus_client import CollectorRegistry

from blocknode.asyncstore import AsyncChunkStore
from blocknode.decommission import Decommissioner
from blocknode.ratelimit import RateLimiter
from blocknode.replicator import Replicator
from blocknode.scrubber import Scrubber
from blocknode.segstore import SegmentChunkStore
from blocknode.service import NODE_METHODS, SERVICE_NAME, BlockService, add_to_server
from blocknode.store import RocksChunkStore
from tessera.auth import Signer
from tessera.config import BlockConfig, ConfigError
from tessera.membership import (
    DEFAULT_PARAMS,
    NodeRecord,
    ParamsError,
    Registration,
    View,
    Watcher,
    alive_prefix,
    connect,
    nodes_prefix,
    publish_params,
    read_params,
)
from tessera.revocation import Revocations
from tessera.server import Bound

log = logging.getLogger(__name__)

NODE_ID_FILE = "NODE_ID"
STORE_DIR = "segstore"  # segment files and their RocksDB index (blocknode.segstore)
LEGACY_STORE_DIR = "chunks"  # the RocksDB chunk store of earlier versions, migrated on start
MIGRATE_BATCH = 64 * 1024 * 1024
KIND = "block"
READY_TIMEOUT = 10.0  # seconds to wait for our own registration to show in the ring
MB = 1_000_000
_PARAM_FIELDS = ("replicas", "write_quorum", "vnodes")  # BlockConfig fields checked against etcd


def open_store(data_dir: Path) -> SegmentChunkStore:
    """The node's segment store, after moving a legacy RocksDB chunk store into it (once).

    Chunks and hint records are copied in synced batches; the old directory is removed only
    when every one of them is in the segments. An interrupted migration starts over (puts of
    the same chunk are idempotent).
    """
    store = SegmentChunkStore(data_dir / STORE_DIR)
    legacy = data_dir / LEGACY_STORE_DIR
    if not (legacy / "CURRENT").exists():
        return store
    log.info("moving the chunks of %s into segment files", legacy)
    old = RocksChunkStore(legacy)
    try:
        batch: list[tuple[bytes, bytes]] = []
        size = 0
        for chunk_hash in old.scan():
            data = old.get(chunk_hash)
            if data is None:
                continue
            batch.append((chunk_hash, data))
            size += len(data)
            if size >= MIGRATE_BATCH:
                store.write(batch)
                batch, size = [], 0
        store.write(batch, list(old.hints()))
        moved = old.count()
    finally:
        old.close()
    shutil.rmtree(legacy)
    log.info("moved %d chunks into segment files; removed %s", moved, legacy)
    return store


class StartupError(Exception):
    """The node cannot start (etcd unreachable, parameters disagree); the message says why."""


def resolve_node_id(cfg: BlockConfig) -> str:
    """``--node-id``, else the id persisted in ``data_dir/NODE_ID``, else a new one saved there.

    A restarted node keeps its identity (and so its ring positions); a data directory moved
    under another ``--node-id`` is refused rather than silently taking over foreign chunks.
    """
    data_dir = Path(cfg.data_dir)
    id_file = data_dir / NODE_ID_FILE
    saved = id_file.read_text().strip() if id_file.exists() else ""
    if cfg.node_id:
        if saved and saved != cfg.node_id:
            raise ConfigError(
                f"--node-id {cfg.node_id!r} differs from {saved!r} saved in {id_file}"
            )
        node_id = cfg.node_id
    elif saved:
        return saved
    else:
        node_id = f"block-{uuid.uuid4().hex[:12]}"
    if "\x00" in node_id or "/" in node_id or not node_id.strip():
        raise ConfigError(f"--node-id {node_id!r}: use letters, digits, '-', '_' or '.'")
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = id_file.with_suffix(".tmp")
    with tmp.open("w") as f:
        f.write(node_id + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(id_file)
    return node_id


class BlockApp:
    """A block node: RocksDB store + Block service, registered in etcd under kind "block".

    Args:
        cfg: The node's config.
        registry: Where its Prometheus metrics go.
        node_id: Its ring identity (see ``resolve_node_id``).

    Raises:
        StoreError: The chunk store under ``cfg.data_dir`` cannot be opened.
    """

    service_names: tuple[str, ...] = (SERVICE_NAME,)
    public_methods: Collection[str] = ()
    node_methods: Collection[str] = NODE_METHODS
    admin_methods: Collection[str] = (f"/{SERVICE_NAME}/NodeStatus",)  # tessera status

    def __init__(self, cfg: BlockConfig, registry: CollectorRegistry, node_id: str) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.store = AsyncChunkStore(
            open_store(Path(cfg.data_dir)), cache_bytes=cfg.cache_mb * 1024 * 1024
        )
        self.service = BlockService(cfg, node_id, self.store, Signer(cfg.cluster_secret), registry)
        service = self.service
        service.metrics.watch_disk(Path(cfg.data_dir), Path(cfg.data_dir) / STORE_DIR)
        self.replicator = Replicator(
            node_id,
            self.store,
            service.rings,
            service.peers,
            service.metrics,
            RateLimiter(cfg.rebalance_rate_mb * MB),
            cfg.repair_interval,
        )
        self.scrubber = Scrubber(
            node_id,
            self.store,
            service.rings,
            service.peers,
            service.metrics,
            cfg.scrub_rate_mb,
            cfg.scrub_interval,
        )
        self.decommissioner = Decommissioner(
            node_id,
            cfg.down_grace,
            self._decommission,
            replicas=service.rings.replicas,
            on_removed=lambda _n: service.metrics.decommissions.inc(),
        )
        self.revocations = Revocations()
        self._etcd: aetcd.Client | None = None
        self._registration: Registration | None = None
        self._watcher: Watcher | None = None
        self._view: View | None = None
        self._loops: list[asyncio.Task[None]] = []

    def _on_view(self, view: View) -> None:
        """A new membership view: follow the ring, and start a pass when it matters."""
        previous = self._view
        self._view = view
        self.service.update_view(view)
        if view.params is not None:  # the cluster's RF, as published in etcd
            self.decommissioner.replicas = view.params.replicas
        self.decommissioner.observe(view)
        if previous is None:
            return
        members_changed = previous.nodes != view.nodes or previous.params != view.params
        came_back = view.alive - previous.alive
        for node_id in came_back:
            self.service.peers.reset(node_id)
        if members_changed or came_back:
            self.replicator.trigger()

    async def _decommission(self, node_id: str) -> bool:
        """Remove a node's membership in etcd, unless its liveness key is back."""
        assert self._etcd is not None
        member_key = nodes_prefix(KIND) + node_id.encode()
        alive_key = alive_prefix(KIND) + node_id.encode()
        tx = self._etcd.transactions
        succeeded, _ = await self._etcd.transaction(
            compare=[tx.version(alive_key) == 0, tx.version(member_key) > 0],
            success=[tx.delete(member_key)],
            failure=[],
        )
        return bool(succeeded)

    def register(self, server: grpc.aio.Server) -> None:
        """Add the Block service."""
        add_to_server(self.service, server)

    async def start(self, bound: Bound) -> None:
        """Watch the ring, register this node with a lease, and wait until the ring shows it."""
        self._etcd = connect(self.cfg.etcd_endpoints())
        await self._check_params(self._etcd)
        self._watcher = Watcher(self._etcd, KIND, on_change=self._on_view)
        try:
            await self._watcher.start()
            await self.revocations.start(self._etcd)
        except Exception as e:  # aetcd's errors; membership is the module that knows etcd
            raise StartupError(f"cannot reach etcd at {self.cfg.etcd}: {e}") from e
        self.service.metrics.address = bound.metrics_address
        record = NodeRecord(
            self.node_id, bound.grpc_address, self.cfg.zone, self.cfg.weight, bound.metrics_address
        )
        self._registration = Registration(self._etcd, KIND, record, self.cfg.lease_ttl)
        try:
            await self._registration.start()
        except Exception as e:
            raise StartupError(f"cannot register in etcd at {self.cfg.etcd}: {e}") from e

        def registered(view: View) -> bool:
            rec = view.nodes.get(self.node_id)
            return (
                self.node_id in view.alive and rec is not None and rec.address == bound.grpc_address
            )

        try:
            await self._watcher.wait_for(registered, READY_TIMEOUT)
        except TimeoutError:
            log.warning(
                "own registration not seen in etcd after %.0f s; serving anyway", READY_TIMEOUT
            )
        ring = await self.service.rings.sync()
        log.info(
            "block ring at revision %d: %d nodes, %d up",
            ring.revision,
            len(ring),
            sum(m.up for m in ring.members),
        )
        self._loops = [
            asyncio.create_task(self.replicator.run(), name="replicator"),
            asyncio.create_task(self.scrubber.run(), name="scrubber"),
            asyncio.create_task(self.decommissioner.run(), name="decommissioner"),
        ]

    async def _check_params(self, etcd: aetcd.Client) -> None:
        """Publish this node's parameters if the cluster has none; refuse to start on a mismatch."""
        cfg = self.cfg
        try:
            mine = DEFAULT_PARAMS.with_overrides(cfg.replicas, cfg.write_quorum, cfg.vnodes)
            cluster = await read_params(etcd) or await publish_params(etcd, mine.checked())
        except ParamsError as e:
            raise StartupError(str(e)) from e
        except Exception as e:  # aetcd's errors
            raise StartupError(f"cannot reach etcd at {self.cfg.etcd}: {e}") from e
        given = {k: getattr(cfg, k) if k in cfg.given else 0 for k in _PARAM_FIELDS}
        differ = cluster.disagreements(**given)
        if differ:
            raise StartupError(
                f"this node's flags disagree with the cluster's parameters in etcd: "
                f"{', '.join(differ)}; drop the flags (TESSERA_* variables) to use the cluster's, "
                "or change the cluster's with `tessera cluster set-params`"
            )
        log.info(
            "cluster parameters: RF=%d W=%d vnodes=%d",
            cluster.replicas,
            cluster.write_quorum,
            cluster.vnodes,
        )

    async def stop(self) -> None:
        """Stop the loops, drop liveness, stop watching, finish background copies, close."""
        for task in self._loops:
            task.cancel()
        if self._loops:
            _, stuck = await asyncio.wait(self._loops, timeout=5.0)
            for task in stuck:
                log.error("background loop %s did not stop", task.get_name())
            for task in self._loops:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("background loop %s failed: %s", task.get_name(), task.exception())
        if self._registration is not None:
            await self._registration.stop()
        if self._watcher is not None:
            await self._watcher.stop()
        await self.revocations.stop()
        await self.service.close(grace=self.cfg.grace_stop)
        await self.store.close()
        if self._etcd is not None:
            with contextlib.suppress(Exception):
                await self._etcd.close()
