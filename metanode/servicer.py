"""The Metadata gRPC service: validates at the edge, runs one transaction per call, adapts to protos.

One servicer composed of handler objects by subject, each serving a few RPCs on the same
``ServiceState``: ``service_accounts`` (sessions, devices, users), ``service_cluster`` (rings
and status), ``service_reads``, ``service_writes``, ``service_restore`` (restores at a time,
trash, shared files) and ``service_links`` (share links); their shared helpers are in
``rpcbase``. All SQL lives in the ``files``, ``journal``, ``permissions``, ``edits``,
``sharing``, ``chunks``, ``users`` and ``gc`` modules. A new RPC goes in the handler of its
subject (or a new handler listed in ``HANDLERS``): the servicer refuses to start with an RPC
that no handler, or two, serve.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import aetcd
from google.protobuf.descriptor import ServiceDescriptor

from metanode.blocks import BlockClient
from metanode.db import Database
from metanode.gc import Collector
from metanode.notify import Notifier
from metanode.rpcbase import Handlers, ServiceState
from metanode.service_accounts import AccountRpcs
from metanode.service_cluster import ClusterRpcs
from metanode.service_links import LinkRpcs
from metanode.service_reads import ReadRpcs
from metanode.service_restore import RestoreRpcs
from metanode.service_writes import WriteRpcs
from tessera.auth import Signer
from tessera.membership import Watcher
from tessera.pb import meta_pb2, meta_pb2_grpc

HANDLERS: tuple[type[Handlers], ...] = (
    AccountRpcs,
    ClusterRpcs,
    ReadRpcs,
    WriteRpcs,
    RestoreRpcs,
    LinkRpcs,
)
SERVICE = meta_pb2.DESCRIPTOR.services_by_name["Metadata"]


def bind_rpcs(
    service: ServiceDescriptor, handlers: Iterable[Handlers]
) -> dict[str, Callable[..., Any]]:
    """Each RPC of ``service`` -> the one handler method that serves it.

    Raises:
        TypeError: An RPC is served by no handler, or by more than one.
    """
    rpcs = [m.name for m in service.methods]
    bound: dict[str, Callable[..., Any]] = {}
    for handler in handlers:
        for name in rpcs:
            if name not in vars(type(handler)):
                continue
            if name in bound:
                raise TypeError(f"{service.name}.{name} is served by two handlers")
            bound[name] = getattr(handler, name)
    missing = [name for name in rpcs if name not in bound]
    if missing:
        raise TypeError(f"no handler serves {service.name}: {', '.join(missing)}")
    return bound


class MetadataService(meta_pb2_grpc.MetadataServicer):
    """The servicer gRPC calls: each RPC attribute is a method of one handler object."""

    def __init__(
        self,
        db: Database,
        signer: Signer,
        *,
        token_ttl: int,
        ticket_ttl: int,
        block_watch: Watcher | None,
        sync_watch: Watcher | None,
        notifier: Notifier,
        collector: Collector | None = None,
        blocks: BlockClient | None = None,
        etcd: aetcd.Client | None = None,
        meta_watch: Watcher | None = None,
    ) -> None:
        self.state = ServiceState(
            db,
            signer,
            token_ttl,
            ticket_ttl,
            block_watch,
            sync_watch,
            notifier,
            collector=collector,
            blocks=blocks,
            etcd=etcd,
            meta_watch=meta_watch,
        )
        self.handlers = [handler(self.state) for handler in HANDLERS]
        for name, method in bind_rpcs(SERVICE, self.handlers).items():
            setattr(self, name, method)
