from tessera.pb import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeRequest(_message.Message):
    __slots__ = ("cursors", "device_id")
    CURSORS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    cursors: _containers.RepeatedCompositeFieldContainer[_common_pb2.Cursor]
    device_id: str
    def __init__(self, cursors: _Optional[_Iterable[_Union[_common_pb2.Cursor, _Mapping]]] = ..., device_id: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("server_time_us",)
    SERVER_TIME_US_FIELD_NUMBER: _ClassVar[int]
    server_time_us: int
    def __init__(self, server_time_us: _Optional[int] = ...) -> None: ...

class NamespaceRemoved(_message.Message):
    __slots__ = ("namespace_id",)
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    def __init__(self, namespace_id: _Optional[str] = ...) -> None: ...

class ResyncRequired(_message.Message):
    __slots__ = ("namespace_id",)
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    def __init__(self, namespace_id: _Optional[str] = ...) -> None: ...

class SyncEvent(_message.Message):
    __slots__ = ("change", "heartbeat", "removed", "resync")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    change: _common_pb2.Change
    heartbeat: Heartbeat
    removed: NamespaceRemoved
    resync: ResyncRequired
    def __init__(self, change: _Optional[_Union[_common_pb2.Change, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., removed: _Optional[_Union[NamespaceRemoved, _Mapping]] = ..., resync: _Optional[_Union[ResyncRequired, _Mapping]] = ...) -> None: ...

class NotifyRequest(_message.Message):
    __slots__ = ("namespace_id", "seq", "user_ids")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    seq: int
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace_id: _Optional[str] = ..., seq: _Optional[int] = ..., user_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class NotifyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
