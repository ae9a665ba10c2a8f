from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_KIND_UNSPECIFIED: _ClassVar[EntryKind]
    ENTRY_KIND_FILE: _ClassVar[EntryKind]
    ENTRY_KIND_FOLDER: _ClassVar[EntryKind]

class ChangeOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_OP_UNSPECIFIED: _ClassVar[ChangeOp]
    CHANGE_OP_UPSERT: _ClassVar[ChangeOp]
    CHANGE_OP_DELETE: _ClassVar[ChangeOp]
    CHANGE_OP_MOVE: _ClassVar[ChangeOp]
ENTRY_KIND_UNSPECIFIED: EntryKind
ENTRY_KIND_FILE: EntryKind
ENTRY_KIND_FOLDER: EntryKind
CHANGE_OP_UNSPECIFIED: ChangeOp
CHANGE_OP_UPSERT: ChangeOp
CHANGE_OP_DELETE: ChangeOp
CHANGE_OP_MOVE: ChangeOp

class ChunkRef(_message.Message):
    __slots__ = ("hash", "size")
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    size: int
    def __init__(self, hash: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...

class Blocklist(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkRef]
    def __init__(self, chunks: _Optional[_Iterable[_Union[ChunkRef, _Mapping]]] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("hash", "size", "user_id", "expires_at", "signature")
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    size: int
    user_id: str
    expires_at: int
    signature: bytes
    def __init__(self, hash: _Optional[bytes] = ..., size: _Optional[int] = ..., user_id: _Optional[str] = ..., expires_at: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class ReadTicket(_message.Message):
    __slots__ = ("user_id", "hashes", "expires_at", "signature")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    expires_at: int
    signature: bytes
    def __init__(self, user_id: _Optional[str] = ..., hashes: _Optional[_Iterable[bytes]] = ..., expires_at: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("namespace_id", "file_id", "path", "name", "kind", "size", "revision_id", "modified_at_us", "deleted", "device_id", "seq", "client_mtime_ns", "content_hash", "executable")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_US_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    EXECUTABLE_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    file_id: str
    path: str
    name: str
    kind: EntryKind
    size: int
    revision_id: str
    modified_at_us: int
    deleted: bool
    device_id: str
    seq: int
    client_mtime_ns: int
    content_hash: bytes
    executable: bool
    def __init__(self, namespace_id: _Optional[str] = ..., file_id: _Optional[str] = ..., path: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[EntryKind, str]] = ..., size: _Optional[int] = ..., revision_id: _Optional[str] = ..., modified_at_us: _Optional[int] = ..., deleted: _Optional[bool] = ..., device_id: _Optional[str] = ..., seq: _Optional[int] = ..., client_mtime_ns: _Optional[int] = ..., content_hash: _Optional[bytes] = ..., executable: _Optional[bool] = ...) -> None: ...

class Cursor(_message.Message):
    __slots__ = ("namespace_id", "seq")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    seq: int
    def __init__(self, namespace_id: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("namespace_id", "seq", "op", "entry", "old_path")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    OLD_PATH_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    seq: int
    op: ChangeOp
    entry: Entry
    old_path: str
    def __init__(self, namespace_id: _Optional[str] = ..., seq: _Optional[int] = ..., op: _Optional[_Union[ChangeOp, str]] = ..., entry: _Optional[_Union[Entry, _Mapping]] = ..., old_path: _Optional[str] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("id", "kind", "address", "zone", "up", "weight", "metrics_address")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    address: str
    zone: str
    up: bool
    weight: float
    metrics_address: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., address: _Optional[str] = ..., zone: _Optional[str] = ..., up: _Optional[bool] = ..., weight: _Optional[float] = ..., metrics_address: _Optional[str] = ...) -> None: ...

class RingInfo(_message.Message):
    __slots__ = ("revision", "nodes", "vnodes", "replicas", "write_quorum")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    VNODES_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    WRITE_QUORUM_FIELD_NUMBER: _ClassVar[int]
    revision: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    vnodes: int
    replicas: int
    write_quorum: int
    def __init__(self, revision: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., vnodes: _Optional[int] = ..., replicas: _Optional[int] = ..., write_quorum: _Optional[int] = ...) -> None: ...
