"""The Sync gRPC service: adapts feed events to protos, and reads journals from the metanode."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Gauge

from syncnode.feed import AccessLost, Behind, Feed, Heartbeat, Moved, NamespaceHead, Removed, Resync
from tessera.channels import ChannelPool
from tessera.errors import FailedPrecondition, ResourceExhausted, Unauthenticated
from tessera.pb import common_pb2, errors_pb2, meta_pb2, meta_pb2_grpc, sync_pb2, sync_pb2_grpc
from tessera.rpc import (
    ON_BEHALF_TOKEN_KEY,
    PLAINTEXT,
    ChannelSecurity,
    auth_metadata,
    current_bearer,
    current_principal,
)

log = logging.getLogger(__name__)

# For people; devices act on the RingMoved detail.
MOVED_MESSAGE = (
    "moved: this sync node no longer serves your account; ask the cluster for the owner and resume"
)
BEHIND_MESSAGE = "behind: your device fell too far behind this stream; resume from your last cursor"
_LOST = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)


class MetaJournalSource:
    """JournalSource over the Metadata service, with node credentials acting for the user."""

    def __init__(
        self, meta_address: str, node_token: str, security: ChannelSecurity = PLAINTEXT
    ) -> None:
        self._pool = ChannelPool(security, max_message_bytes=64 * 1024 * 1024)
        self._stub = self._pool.stub(meta_address, meta_pb2_grpc.MetadataStub)
        self._token = node_token

    def _md(self, user_id: str) -> tuple[tuple[str, str], ...]:
        # The subscriber's own token goes along: the metanode refuses it once revoked, in the
        # same transaction as the read, so nothing committed after a revocation is delivered.
        user_token = current_bearer()
        forwarded = ((ON_BEHALF_TOKEN_KEY, user_token),) if user_token else ()
        return (*auth_metadata(self._token), ("x-tessera-user", user_id), *forwarded)

    async def namespaces(self, user_id: str) -> list[NamespaceHead]:
        try:
            resp = await self._stub.ListNamespaces(
                meta_pb2.ListNamespacesRequest(), metadata=self._md(user_id), timeout=10
            )
        except grpc.aio.AioRpcError as e:
            _raise_revoked(e)
            raise
        return [NamespaceHead(n.namespace_id, n.head_seq, n.oldest_seq) for n in resp.namespaces]

    async def changes(
        self, user_id: str, ns_id: str, after: int, limit: int
    ) -> tuple[list[Any], bool, bool]:
        req = meta_pb2.ListChangesRequest(
            cursor=common_pb2.Cursor(namespace_id=ns_id, seq=after), limit=limit
        )
        try:
            resp = await self._stub.ListChanges(req, metadata=self._md(user_id), timeout=10)
        except grpc.aio.AioRpcError as e:
            if e.code() in _LOST:
                raise AccessLost(ns_id) from None
            _raise_revoked(e)
            raise
        return list(resp.changes), resp.has_more, resp.resync_required

    async def close(self) -> None:
        await self._pool.close()


def _raise_revoked(e: grpc.aio.AioRpcError) -> None:
    """The metanode refused the subscriber's forwarded token: the stream ends UNAUTHENTICATED."""
    if e.code() is grpc.StatusCode.UNAUTHENTICATED:
        raise Unauthenticated(e.details() or "credentials revoked: log in again") from None


class SyncService(sync_pb2_grpc.SyncServicer):
    def __init__(self, feed: Feed, registry: CollectorRegistry) -> None:
        self.feed = feed
        self.streams = Gauge("tessera_sync_streams", "Open Subscribe streams", registry=registry)
        self.streams.set_function(lambda: feed.stream_count)
        queued = Gauge(
            "tessera_sync_queued_events",
            "Events buffered for streams, not yet sent (all streams)",
            registry=registry,
        )
        queued.set_function(lambda: feed.queued_events)
        longest = Gauge(
            "tessera_sync_queue_depth_max",
            "Events buffered for the most backed-up stream",
            registry=registry,
        )
        longest.set_function(lambda: feed.longest_queue)
        behind = Gauge(
            "tessera_sync_streams_ended_behind",
            "Streams ended because their client did not keep up",
            registry=registry,
        )
        behind.set_function(lambda: feed.ended_behind)

    async def Subscribe(
        self, request: sync_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[sync_pb2.SyncEvent]:
        principal = current_principal()
        if principal.is_node:
            raise FailedPrecondition("Subscribe is for user devices")
        cursors = {c.namespace_id: c.seq for c in request.cursors}
        try:
            async for ev in self.feed.follow(principal.user_id, cursors):
                yield _to_pb(ev)
        except Moved:
            raise FailedPrecondition(
                MOVED_MESSAGE, details=(errors_pb2.RingMoved(ring="sync"),)
            ) from None
        except Behind:
            raise ResourceExhausted(BEHIND_MESSAGE) from None

    async def Notify(
        self, request: sync_pb2.NotifyRequest, context: grpc.aio.ServicerContext
    ) -> sync_pb2.NotifyResponse:
        self.feed.notify(request.namespace_id, list(request.user_ids), int(request.seq))
        return sync_pb2.NotifyResponse()


def _to_pb(ev: Any) -> sync_pb2.SyncEvent:
    if isinstance(ev, Heartbeat):
        return sync_pb2.SyncEvent(heartbeat=sync_pb2.Heartbeat(server_time_us=ev.at_us))
    if isinstance(ev, Removed):
        return sync_pb2.SyncEvent(removed=sync_pb2.NamespaceRemoved(namespace_id=ev.ns_id))
    if isinstance(ev, Resync):
        return sync_pb2.SyncEvent(resync=sync_pb2.ResyncRequired(namespace_id=ev.ns_id))
    return sync_pb2.SyncEvent(change=ev)
