"""After a commit, tell the sync node that owns each member of the namespace (fire and forget).

A lost notification costs only latency: sync nodes also poll namespace heads slowly.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict

from metanode.db import Database
from tessera.channels import ChannelPool
from tessera.membership import Watcher
from tessera.pb import sync_pb2, sync_pb2_grpc
from tessera.ring import SYNC_VNODES, key_position
from tessera.rpc import PLAINTEXT, ChannelSecurity, auth_metadata

log = logging.getLogger(__name__)


class Notifier:
    """Routes namespace changes to sync nodes by the sync ring (alive nodes only)."""

    def __init__(
        self,
        db: Database,
        sync_watch: Watcher | None,
        node_token: str,
        *,
        security: ChannelSecurity = PLAINTEXT,
    ) -> None:
        self._db = db
        self._watch = sync_watch
        self._metadata = auth_metadata(node_token)
        self._pool = ChannelPool(security)
        self._tasks: set[asyncio.Task[None]] = set()

    def changed(self, ns_id: uuid.UUID, seq: int) -> None:
        """``seq`` > 0: the namespace's journal reached seq; 0: its membership changed."""
        if self._watch is None:
            return
        task = asyncio.create_task(self._notify(ns_id, seq))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stub(self, address: str) -> sync_pb2_grpc.SyncStub:
        return self._pool.stub(address, sync_pb2_grpc.SyncStub)

    async def _notify(self, ns_id: uuid.UUID, seq: int) -> None:
        assert self._watch is not None
        try:

            async def members(conn):  # type: ignore[no-untyped-def]
                cur = await conn.execute("SELECT user_id FROM members WHERE ns_id = %s", (ns_id,))
                return [str(r[0]) for r in await cur.fetchall()]

            user_ids = await self._db.run(members)
            ring = self._watch.view.ring(SYNC_VNODES, alive_only=True)
            if len(ring) == 0:
                return
            by_node: dict[str, list[str]] = defaultdict(list)
            for uid in user_ids:
                owner = ring.owners(key_position(uid), 1)
                if owner:
                    by_node[owner[0]].append(uid)
            for node_id, uids in by_node.items():
                address = ring.member(node_id).address
                await self._stub(address).Notify(
                    sync_pb2.NotifyRequest(namespace_id=str(ns_id), seq=seq, user_ids=uids),
                    metadata=self._metadata,
                    timeout=2.0,
                )
        except Exception as e:  # best effort: the sync node's slow poll covers a lost notification
            log.debug("notify %s@%d failed: %s", ns_id, seq, e)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._pool.close()
