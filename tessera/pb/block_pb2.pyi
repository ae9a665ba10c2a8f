from tessera.pb import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PutChunkRequest(_message.Message):
    __slots__ = ("hash", "data", "base_hash", "delta", "base_ticket", "zstd_data", "more_bases")
    HASH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    BASE_HASH_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    BASE_TICKET_FIELD_NUMBER: _ClassVar[int]
    ZSTD_DATA_FIELD_NUMBER: _ClassVar[int]
    MORE_BASES_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    data: bytes
    base_hash: bytes
    delta: bytes
    base_ticket: _common_pb2.ReadTicket
    zstd_data: bytes
    more_bases: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hash: _Optional[bytes] = ..., data: _Optional[bytes] = ..., base_hash: _Optional[bytes] = ..., delta: _Optional[bytes] = ..., base_ticket: _Optional[_Union[_common_pb2.ReadTicket, _Mapping]] = ..., zstd_data: _Optional[bytes] = ..., more_bases: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PutChunkResult(_message.Message):
    __slots__ = ("hash", "receipt", "replicas")
    HASH_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    receipt: _common_pb2.Receipt
    replicas: int
    def __init__(self, hash: _Optional[bytes] = ..., receipt: _Optional[_Union[_common_pb2.Receipt, _Mapping]] = ..., replicas: _Optional[int] = ...) -> None: ...

class GetChunksRequest(_message.Message):
    __slots__ = ("ticket", "hashes", "bases", "accept_zstd")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    BASES_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_ZSTD_FIELD_NUMBER: _ClassVar[int]
    ticket: _common_pb2.ReadTicket
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    bases: _containers.RepeatedCompositeFieldContainer[DeltaBase]
    accept_zstd: bool
    def __init__(self, ticket: _Optional[_Union[_common_pb2.ReadTicket, _Mapping]] = ..., hashes: _Optional[_Iterable[bytes]] = ..., bases: _Optional[_Iterable[_Union[DeltaBase, _Mapping]]] = ..., accept_zstd: _Optional[bool] = ...) -> None: ...

class DeltaBase(_message.Message):
    __slots__ = ("target", "signature")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    target: bytes
    signature: ChunkSignature
    def __init__(self, target: _Optional[bytes] = ..., signature: _Optional[_Union[ChunkSignature, _Mapping]] = ...) -> None: ...

class ChunkData(_message.Message):
    __slots__ = ("hash", "data", "delta", "zstd_data")
    HASH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    ZSTD_DATA_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    data: bytes
    delta: bytes
    zstd_data: bytes
    def __init__(self, hash: _Optional[bytes] = ..., data: _Optional[bytes] = ..., delta: _Optional[bytes] = ..., zstd_data: _Optional[bytes] = ...) -> None: ...

class GetRingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HasChunksRequest(_message.Message):
    __slots__ = ("hashes",)
    HASHES_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class HasChunksResponse(_message.Message):
    __slots__ = ("present",)
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    present: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, present: _Optional[_Iterable[bool]] = ...) -> None: ...

class ReplicateRequest(_message.Message):
    __slots__ = ("hash", "data", "hint_for", "repair", "seq")
    HASH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    HINT_FOR_FIELD_NUMBER: _ClassVar[int]
    REPAIR_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    data: bytes
    hint_for: str
    repair: bool
    seq: int
    def __init__(self, hash: _Optional[bytes] = ..., data: _Optional[bytes] = ..., hint_for: _Optional[str] = ..., repair: _Optional[bool] = ..., seq: _Optional[int] = ...) -> None: ...

class ReplicateAck(_message.Message):
    __slots__ = ("seq", "ok", "error")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    seq: int
    ok: bool
    error: str
    def __init__(self, seq: _Optional[int] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ReplicateResponse(_message.Message):
    __slots__ = ("stored", "refused")
    STORED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    refused: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, stored: _Optional[int] = ..., refused: _Optional[_Iterable[bytes]] = ...) -> None: ...

class DeleteChunksRequest(_message.Message):
    __slots__ = ("hashes",)
    HASHES_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class DeleteChunksResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class RangeDigestsRequest(_message.Message):
    __slots__ = ("buckets", "shared_with", "placement")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    SHARED_WITH_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    buckets: int
    shared_with: str
    placement: bytes
    def __init__(self, buckets: _Optional[int] = ..., shared_with: _Optional[str] = ..., placement: _Optional[bytes] = ...) -> None: ...

class RangeDigestsResponse(_message.Message):
    __slots__ = ("digests",)
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    digests: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, digests: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListRangeRequest(_message.Message):
    __slots__ = ("buckets", "bucket", "shared_with", "placement")
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    SHARED_WITH_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    buckets: int
    bucket: int
    shared_with: str
    placement: bytes
    def __init__(self, buckets: _Optional[int] = ..., bucket: _Optional[int] = ..., shared_with: _Optional[str] = ..., placement: _Optional[bytes] = ...) -> None: ...

class ListRangeResponse(_message.Message):
    __slots__ = ("hashes",)
    HASHES_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetSignatureRequest(_message.Message):
    __slots__ = ("ticket", "hash", "block_size", "narrow_to")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    NARROW_TO_FIELD_NUMBER: _ClassVar[int]
    ticket: _common_pb2.ReadTicket
    hash: bytes
    block_size: int
    narrow_to: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, ticket: _Optional[_Union[_common_pb2.ReadTicket, _Mapping]] = ..., hash: _Optional[bytes] = ..., block_size: _Optional[int] = ..., narrow_to: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ChunkSignature(_message.Message):
    __slots__ = ("hash", "block_size", "weak", "strong", "sizes", "base_ticket")
    HASH_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    WEAK_FIELD_NUMBER: _ClassVar[int]
    STRONG_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    BASE_TICKET_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    block_size: int
    weak: _containers.RepeatedScalarFieldContainer[int]
    strong: _containers.RepeatedScalarFieldContainer[bytes]
    sizes: _containers.RepeatedScalarFieldContainer[int]
    base_ticket: _common_pb2.ReadTicket
    def __init__(self, hash: _Optional[bytes] = ..., block_size: _Optional[int] = ..., weak: _Optional[_Iterable[int]] = ..., strong: _Optional[_Iterable[bytes]] = ..., sizes: _Optional[_Iterable[int]] = ..., base_ticket: _Optional[_Union[_common_pb2.ReadTicket, _Mapping]] = ...) -> None: ...

class NodeStatusRequest(_message.Message):
    __slots__ = ("recount", "down_nodes")
    RECOUNT_FIELD_NUMBER: _ClassVar[int]
    DOWN_NODES_FIELD_NUMBER: _ClassVar[int]
    recount: bool
    down_nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, recount: _Optional[bool] = ..., down_nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeStatusResponse(_message.Message):
    __slots__ = ("node_id", "chunks", "handoff_backlog", "replication_queue", "under_replicated", "last_pass_at", "repair_bytes", "rebalance_bytes", "handoff_bytes", "ring_revision", "scrubbed_chunks", "corrupt_chunks", "store_bytes", "disk_free_bytes", "disk_total_bytes", "under_replicated_now", "metrics_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_BACKLOG_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_QUEUE_FIELD_NUMBER: _ClassVar[int]
    UNDER_REPLICATED_FIELD_NUMBER: _ClassVar[int]
    LAST_PASS_AT_FIELD_NUMBER: _ClassVar[int]
    REPAIR_BYTES_FIELD_NUMBER: _ClassVar[int]
    REBALANCE_BYTES_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_BYTES_FIELD_NUMBER: _ClassVar[int]
    RING_REVISION_FIELD_NUMBER: _ClassVar[int]
    SCRUBBED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    CORRUPT_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    UNDER_REPLICATED_NOW_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    chunks: int
    handoff_backlog: int
    replication_queue: int
    under_replicated: int
    last_pass_at: int
    repair_bytes: int
    rebalance_bytes: int
    handoff_bytes: int
    ring_revision: int
    scrubbed_chunks: int
    corrupt_chunks: int
    store_bytes: int
    disk_free_bytes: int
    disk_total_bytes: int
    under_replicated_now: int
    metrics_address: str
    def __init__(self, node_id: _Optional[str] = ..., chunks: _Optional[int] = ..., handoff_backlog: _Optional[int] = ..., replication_queue: _Optional[int] = ..., under_replicated: _Optional[int] = ..., last_pass_at: _Optional[int] = ..., repair_bytes: _Optional[int] = ..., rebalance_bytes: _Optional[int] = ..., handoff_bytes: _Optional[int] = ..., ring_revision: _Optional[int] = ..., scrubbed_chunks: _Optional[int] = ..., corrupt_chunks: _Optional[int] = ..., store_bytes: _Optional[int] = ..., disk_free_bytes: _Optional[int] = ..., disk_total_bytes: _Optional[int] = ..., under_replicated_now: _Optional[int] = ..., metrics_address: _Optional[str] = ...) -> None: ...
