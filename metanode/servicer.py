"""The Metadata gRPC service: validates at the edge, runs one transaction per call, adapts to protos.

Its RPCs live in handler modules by subject: ``service_accounts`` (sessions, devices, users),
``service_cluster`` (rings and status), ``service_reads`` and ``service_writes``; the shared
helpers in ``rpcbase``. All SQL lives in the ``files``, ``journal``, ``permissions``,
``edits``, ``sharing``, ``chunks``, ``users`` and ``gc`` modules.
"""

from __future__ import annotations

from metanode.service_accounts import AccountRpcs
from metanode.service_cluster import ClusterRpcs
from metanode.service_reads import ReadRpcs
from metanode.service_writes import WriteRpcs
from tessera.pb import meta_pb2_grpc


class MetadataService(
    AccountRpcs, ClusterRpcs, ReadRpcs, WriteRpcs, meta_pb2_grpc.MetadataServicer
):
    """One method per RPC."""
