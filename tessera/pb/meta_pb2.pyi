from tessera.pb import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_OWNER: _ClassVar[Role]
    ROLE_EDITOR: _ClassVar[Role]
    ROLE_VIEWER: _ClassVar[Role]
ROLE_UNSPECIFIED: Role
ROLE_OWNER: Role
ROLE_EDITOR: Role
ROLE_VIEWER: Role

class LoginRequest(_message.Message):
    __slots__ = ("name", "password", "device_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    password: str
    device_name: str
    def __init__(self, name: _Optional[str] = ..., password: _Optional[str] = ..., device_name: _Optional[str] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ("token", "user_id", "root_namespace_id", "expires_at", "device_id", "device_name")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    token: str
    user_id: str
    root_namespace_id: str
    expires_at: int
    device_id: str
    device_name: str
    def __init__(self, token: _Optional[str] = ..., user_id: _Optional[str] = ..., root_namespace_id: _Optional[str] = ..., expires_at: _Optional[int] = ..., device_id: _Optional[str] = ..., device_name: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("user_id", "name", "root_namespace_id", "is_admin", "device_id", "device_name", "expires_at")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROOT_NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    IS_ADMIN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    name: str
    root_namespace_id: str
    is_admin: bool
    device_id: str
    device_name: str
    expires_at: int
    def __init__(self, user_id: _Optional[str] = ..., name: _Optional[str] = ..., root_namespace_id: _Optional[str] = ..., is_admin: _Optional[bool] = ..., device_id: _Optional[str] = ..., device_name: _Optional[str] = ..., expires_at: _Optional[int] = ...) -> None: ...

class CreateUserRequest(_message.Message):
    __slots__ = ("name", "password", "is_admin")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    IS_ADMIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    password: str
    is_admin: bool
    def __init__(self, name: _Optional[str] = ..., password: _Optional[str] = ..., is_admin: _Optional[bool] = ...) -> None: ...

class CreateUserResponse(_message.Message):
    __slots__ = ("user_id", "root_namespace_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROOT_NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    root_namespace_id: str
    def __init__(self, user_id: _Optional[str] = ..., root_namespace_id: _Optional[str] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("token_id",)
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    def __init__(self, token_id: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetClusterInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterInfo(_message.Message):
    __slots__ = ("block_ring", "sync_nodes", "meta_nodes", "max_chunk_size")
    BLOCK_RING_FIELD_NUMBER: _ClassVar[int]
    SYNC_NODES_FIELD_NUMBER: _ClassVar[int]
    META_NODES_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    block_ring: _common_pb2.RingInfo
    sync_nodes: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeInfo]
    meta_nodes: _containers.RepeatedCompositeFieldContainer[_common_pb2.NodeInfo]
    max_chunk_size: int
    def __init__(self, block_ring: _Optional[_Union[_common_pb2.RingInfo, _Mapping]] = ..., sync_nodes: _Optional[_Iterable[_Union[_common_pb2.NodeInfo, _Mapping]]] = ..., meta_nodes: _Optional[_Iterable[_Union[_common_pb2.NodeInfo, _Mapping]]] = ..., max_chunk_size: _Optional[int] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("cluster", "database_ok", "database_version", "etcd_ok", "under_replicated_chunks", "users", "files")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    DATABASE_OK_FIELD_NUMBER: _ClassVar[int]
    DATABASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ETCD_OK_FIELD_NUMBER: _ClassVar[int]
    UNDER_REPLICATED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    cluster: ClusterInfo
    database_ok: bool
    database_version: str
    etcd_ok: bool
    under_replicated_chunks: int
    users: int
    files: int
    def __init__(self, cluster: _Optional[_Union[ClusterInfo, _Mapping]] = ..., database_ok: _Optional[bool] = ..., database_version: _Optional[str] = ..., etcd_ok: _Optional[bool] = ..., under_replicated_chunks: _Optional[int] = ..., users: _Optional[int] = ..., files: _Optional[int] = ...) -> None: ...

class NeedChunksRequest(_message.Message):
    __slots__ = ("hashes",)
    HASHES_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class NeedChunksResponse(_message.Message):
    __slots__ = ("missing",)
    MISSING_FIELD_NUMBER: _ClassVar[int]
    missing: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, missing: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("namespace_id", "path", "parent_revision", "blocklist", "receipts", "client_mtime_ns", "device_id", "operation_id", "executable", "parent_folder_id")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PARENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    BLOCKLIST_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTABLE_FIELD_NUMBER: _ClassVar[int]
    PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    parent_revision: str
    blocklist: _common_pb2.Blocklist
    receipts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Receipt]
    client_mtime_ns: int
    device_id: str
    operation_id: str
    executable: bool
    parent_folder_id: str
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ..., parent_revision: _Optional[str] = ..., blocklist: _Optional[_Union[_common_pb2.Blocklist, _Mapping]] = ..., receipts: _Optional[_Iterable[_Union[_common_pb2.Receipt, _Mapping]]] = ..., client_mtime_ns: _Optional[int] = ..., device_id: _Optional[str] = ..., operation_id: _Optional[str] = ..., executable: _Optional[bool] = ..., parent_folder_id: _Optional[str] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("entry", "kept")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.Entry
    kept: int
    def __init__(self, entry: _Optional[_Union[_common_pb2.Entry, _Mapping]] = ..., kept: _Optional[int] = ...) -> None: ...

class CommitBatchRequest(_message.Message):
    __slots__ = ("commits",)
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[CommitRequest]
    def __init__(self, commits: _Optional[_Iterable[_Union[CommitRequest, _Mapping]]] = ...) -> None: ...

class CommitResult(_message.Message):
    __slots__ = ("entry", "code", "message", "head_revision")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HEAD_REVISION_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.Entry
    code: int
    message: str
    head_revision: str
    def __init__(self, entry: _Optional[_Union[_common_pb2.Entry, _Mapping]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., head_revision: _Optional[str] = ...) -> None: ...

class CommitBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CommitResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CommitResult, _Mapping]]] = ...) -> None: ...

class MakeFolderRequest(_message.Message):
    __slots__ = ("namespace_id", "path", "device_id", "operation_id", "parent_folder_id")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    device_id: str
    operation_id: str
    parent_folder_id: str
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ..., device_id: _Optional[str] = ..., operation_id: _Optional[str] = ..., parent_folder_id: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("namespace_id", "path", "parent_revision", "device_id", "operation_id", "seen_seq")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PARENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    SEEN_SEQ_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    parent_revision: str
    device_id: str
    operation_id: str
    seen_seq: int
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ..., parent_revision: _Optional[str] = ..., device_id: _Optional[str] = ..., operation_id: _Optional[str] = ..., seen_seq: _Optional[int] = ...) -> None: ...

class MoveRequest(_message.Message):
    __slots__ = ("namespace_id", "from_path", "to_path", "device_id", "operation_id", "parent_revision")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_PATH_FIELD_NUMBER: _ClassVar[int]
    TO_PATH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    from_path: str
    to_path: str
    device_id: str
    operation_id: str
    parent_revision: str
    def __init__(self, namespace_id: _Optional[str] = ..., from_path: _Optional[str] = ..., to_path: _Optional[str] = ..., device_id: _Optional[str] = ..., operation_id: _Optional[str] = ..., parent_revision: _Optional[str] = ...) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("namespace_id", "path", "revision_id", "device_id", "operation_id")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    revision_id: str
    device_id: str
    operation_id: str
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ..., revision_id: _Optional[str] = ..., device_id: _Optional[str] = ..., operation_id: _Optional[str] = ...) -> None: ...

class StatRequest(_message.Message):
    __slots__ = ("namespace_id", "path")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("namespace_id", "path", "limit", "page_token", "include_deleted")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    limit: int
    page_token: str
    include_deleted: bool
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., include_deleted: _Optional[bool] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.Entry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[_common_pb2.Entry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetFileRequest(_message.Message):
    __slots__ = ("namespace_id", "path", "revision_id", "ticket_for")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    REVISION_ID_FIELD_NUMBER: _ClassVar[int]
    TICKET_FOR_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    revision_id: str
    ticket_for: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ..., revision_id: _Optional[str] = ..., ticket_for: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetFileResponse(_message.Message):
    __slots__ = ("entry", "blocklist", "ticket")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    BLOCKLIST_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.Entry
    blocklist: _common_pb2.Blocklist
    ticket: _common_pb2.ReadTicket
    def __init__(self, entry: _Optional[_Union[_common_pb2.Entry, _Mapping]] = ..., blocklist: _Optional[_Union[_common_pb2.Blocklist, _Mapping]] = ..., ticket: _Optional[_Union[_common_pb2.ReadTicket, _Mapping]] = ...) -> None: ...

class GetFilesRequest(_message.Message):
    __slots__ = ("files",)
    FILES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[GetFileRequest]
    def __init__(self, files: _Optional[_Iterable[_Union[GetFileRequest, _Mapping]]] = ...) -> None: ...

class GetFileResult(_message.Message):
    __slots__ = ("entry", "blocklist", "code", "message")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    BLOCKLIST_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.Entry
    blocklist: _common_pb2.Blocklist
    code: int
    message: str
    def __init__(self, entry: _Optional[_Union[_common_pb2.Entry, _Mapping]] = ..., blocklist: _Optional[_Union[_common_pb2.Blocklist, _Mapping]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class GetFilesResponse(_message.Message):
    __slots__ = ("results", "ticket")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[GetFileResult]
    ticket: _common_pb2.ReadTicket
    def __init__(self, results: _Optional[_Iterable[_Union[GetFileResult, _Mapping]]] = ..., ticket: _Optional[_Union[_common_pb2.ReadTicket, _Mapping]] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("namespace_id", "path", "limit")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    limit: int
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("revisions",)
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Entry]
    def __init__(self, revisions: _Optional[_Iterable[_Union[_common_pb2.Entry, _Mapping]]] = ...) -> None: ...

class ShareRequest(_message.Message):
    __slots__ = ("namespace_id", "path", "user_name", "role", "device_id", "operation_id")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    user_name: str
    role: Role
    device_id: str
    operation_id: str
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ..., user_name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., device_id: _Optional[str] = ..., operation_id: _Optional[str] = ...) -> None: ...

class ShareResponse(_message.Message):
    __slots__ = ("shared_namespace_id",)
    SHARED_NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    shared_namespace_id: str
    def __init__(self, shared_namespace_id: _Optional[str] = ...) -> None: ...

class UnshareRequest(_message.Message):
    __slots__ = ("namespace_id", "path", "user_name", "device_id", "operation_id")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    user_name: str
    device_id: str
    operation_id: str
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ..., user_name: _Optional[str] = ..., device_id: _Optional[str] = ..., operation_id: _Optional[str] = ...) -> None: ...

class UnshareResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMembersRequest(_message.Message):
    __slots__ = ("namespace_id", "path")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("user_id", "user_name", "role", "namespace_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    user_name: str
    role: Role
    namespace_id: str
    def __init__(self, user_id: _Optional[str] = ..., user_name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., namespace_id: _Optional[str] = ...) -> None: ...

class ListMembersResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class ListNamespacesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NamespaceInfo(_message.Message):
    __slots__ = ("namespace_id", "mount_path", "role", "head_seq", "oldest_seq")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    MOUNT_PATH_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQ_FIELD_NUMBER: _ClassVar[int]
    OLDEST_SEQ_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    mount_path: str
    role: Role
    head_seq: int
    oldest_seq: int
    def __init__(self, namespace_id: _Optional[str] = ..., mount_path: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., head_seq: _Optional[int] = ..., oldest_seq: _Optional[int] = ...) -> None: ...

class ListNamespacesResponse(_message.Message):
    __slots__ = ("namespaces",)
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    namespaces: _containers.RepeatedCompositeFieldContainer[NamespaceInfo]
    def __init__(self, namespaces: _Optional[_Iterable[_Union[NamespaceInfo, _Mapping]]] = ...) -> None: ...

class ListChangesRequest(_message.Message):
    __slots__ = ("cursor", "limit")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    cursor: _common_pb2.Cursor
    limit: int
    def __init__(self, cursor: _Optional[_Union[_common_pb2.Cursor, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListChangesResponse(_message.Message):
    __slots__ = ("changes", "cursor", "has_more", "resync_required")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    RESYNC_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Change]
    cursor: _common_pb2.Cursor
    has_more: bool
    resync_required: bool
    def __init__(self, changes: _Optional[_Iterable[_Union[_common_pb2.Change, _Mapping]]] = ..., cursor: _Optional[_Union[_common_pb2.Cursor, _Mapping]] = ..., has_more: _Optional[bool] = ..., resync_required: _Optional[bool] = ...) -> None: ...

class RunGCRequest(_message.Message):
    __slots__ = ("revision_retention_seconds", "grace_seconds", "namespace_id", "journal_retention_seconds")
    REVISION_RETENTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_RETENTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    revision_retention_seconds: int
    grace_seconds: int
    namespace_id: str
    journal_retention_seconds: int
    def __init__(self, revision_retention_seconds: _Optional[int] = ..., grace_seconds: _Optional[int] = ..., namespace_id: _Optional[str] = ..., journal_retention_seconds: _Optional[int] = ...) -> None: ...

class RunGCResponse(_message.Message):
    __slots__ = ("revisions_pruned", "journal_pruned", "chunks_deleted", "chunks_referenced", "chunks_waiting", "chunks_failed")
    REVISIONS_PRUNED_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_PRUNED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DELETED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_REFERENCED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_WAITING_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FAILED_FIELD_NUMBER: _ClassVar[int]
    revisions_pruned: int
    journal_pruned: int
    chunks_deleted: int
    chunks_referenced: int
    chunks_waiting: int
    chunks_failed: int
    def __init__(self, revisions_pruned: _Optional[int] = ..., journal_pruned: _Optional[int] = ..., chunks_deleted: _Optional[int] = ..., chunks_referenced: _Optional[int] = ..., chunks_waiting: _Optional[int] = ..., chunks_failed: _Optional[int] = ...) -> None: ...

class RestoreTreeRequest(_message.Message):
    __slots__ = ("namespace_id", "path", "at_us", "file_id", "device_id", "operation_id")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    AT_US_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    at_us: int
    file_id: str
    device_id: str
    operation_id: str
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ..., at_us: _Optional[int] = ..., file_id: _Optional[str] = ..., device_id: _Optional[str] = ..., operation_id: _Optional[str] = ...) -> None: ...

class RestoreTreeResponse(_message.Message):
    __slots__ = ("entry", "changed", "changes")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.Entry
    changed: int
    changes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Entry]
    def __init__(self, entry: _Optional[_Union[_common_pb2.Entry, _Mapping]] = ..., changed: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[_common_pb2.Entry, _Mapping]]] = ...) -> None: ...

class ListTrashRequest(_message.Message):
    __slots__ = ("namespace_id", "path", "limit")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    limit: int
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class TrashEntry(_message.Message):
    __slots__ = ("entry", "deleted_by", "restorable_until_us", "files_inside")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    DELETED_BY_FIELD_NUMBER: _ClassVar[int]
    RESTORABLE_UNTIL_US_FIELD_NUMBER: _ClassVar[int]
    FILES_INSIDE_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.Entry
    deleted_by: str
    restorable_until_us: int
    files_inside: int
    def __init__(self, entry: _Optional[_Union[_common_pb2.Entry, _Mapping]] = ..., deleted_by: _Optional[str] = ..., restorable_until_us: _Optional[int] = ..., files_inside: _Optional[int] = ...) -> None: ...

class ListTrashResponse(_message.Message):
    __slots__ = ("entries", "retention_seconds")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    RETENTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[TrashEntry]
    retention_seconds: int
    def __init__(self, entries: _Optional[_Iterable[_Union[TrashEntry, _Mapping]]] = ..., retention_seconds: _Optional[int] = ...) -> None: ...

class CreateLinkRequest(_message.Message):
    __slots__ = ("namespace_id", "path", "expires_in_seconds", "password")
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    namespace_id: str
    path: str
    expires_in_seconds: int
    password: str
    def __init__(self, namespace_id: _Optional[str] = ..., path: _Optional[str] = ..., expires_in_seconds: _Optional[int] = ..., password: _Optional[str] = ...) -> None: ...

class ShareLink(_message.Message):
    __slots__ = ("link_id", "path", "is_folder", "created_at_us", "expires_at_us", "has_password", "downloads", "last_used_us", "namespace_id")
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    IS_FOLDER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_US_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_US_FIELD_NUMBER: _ClassVar[int]
    HAS_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    DOWNLOADS_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_US_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_ID_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    path: str
    is_folder: bool
    created_at_us: int
    expires_at_us: int
    has_password: bool
    downloads: int
    last_used_us: int
    namespace_id: str
    def __init__(self, link_id: _Optional[str] = ..., path: _Optional[str] = ..., is_folder: _Optional[bool] = ..., created_at_us: _Optional[int] = ..., expires_at_us: _Optional[int] = ..., has_password: _Optional[bool] = ..., downloads: _Optional[int] = ..., last_used_us: _Optional[int] = ..., namespace_id: _Optional[str] = ...) -> None: ...

class CreateLinkResponse(_message.Message):
    __slots__ = ("link", "token")
    LINK_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    link: ShareLink
    token: str
    def __init__(self, link: _Optional[_Union[ShareLink, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class ListLinksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLinksResponse(_message.Message):
    __slots__ = ("links",)
    LINKS_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[ShareLink]
    def __init__(self, links: _Optional[_Iterable[_Union[ShareLink, _Mapping]]] = ...) -> None: ...

class RevokeLinkRequest(_message.Message):
    __slots__ = ("link_id",)
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    def __init__(self, link_id: _Optional[str] = ...) -> None: ...

class RevokeLinkResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OpenLinkRequest(_message.Message):
    __slots__ = ("token", "password", "path", "download")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_FIELD_NUMBER: _ClassVar[int]
    token: str
    password: str
    path: str
    download: bool
    def __init__(self, token: _Optional[str] = ..., password: _Optional[str] = ..., path: _Optional[str] = ..., download: _Optional[bool] = ...) -> None: ...

class OpenLinkResponse(_message.Message):
    __slots__ = ("entry", "children", "blocklist", "ticket", "name", "needs_password", "read_token")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    BLOCKLIST_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEEDS_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    READ_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entry: _common_pb2.Entry
    children: _containers.RepeatedCompositeFieldContainer[_common_pb2.Entry]
    blocklist: _common_pb2.Blocklist
    ticket: _common_pb2.ReadTicket
    name: str
    needs_password: bool
    read_token: str
    def __init__(self, entry: _Optional[_Union[_common_pb2.Entry, _Mapping]] = ..., children: _Optional[_Iterable[_Union[_common_pb2.Entry, _Mapping]]] = ..., blocklist: _Optional[_Union[_common_pb2.Blocklist, _Mapping]] = ..., ticket: _Optional[_Union[_common_pb2.ReadTicket, _Mapping]] = ..., name: _Optional[str] = ..., needs_password: _Optional[bool] = ..., read_token: _Optional[str] = ...) -> None: ...

class ListSharedFilesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SharedFile(_message.Message):
    __slots__ = ("share_id", "name", "path", "owner_name", "role", "size", "modified_at_us", "members")
    SHARE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OWNER_NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_US_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    share_id: str
    name: str
    path: str
    owner_name: str
    role: Role
    size: int
    modified_at_us: int
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, share_id: _Optional[str] = ..., name: _Optional[str] = ..., path: _Optional[str] = ..., owner_name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., size: _Optional[int] = ..., modified_at_us: _Optional[int] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class ListSharedFilesResponse(_message.Message):
    __slots__ = ("files",)
    FILES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[SharedFile]
    def __init__(self, files: _Optional[_Iterable[_Union[SharedFile, _Mapping]]] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("device_id", "name", "created_at_us", "last_seen_at_us", "expires_at", "current")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_US_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_US_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    name: str
    created_at_us: int
    last_seen_at_us: int
    expires_at: int
    current: bool
    def __init__(self, device_id: _Optional[str] = ..., name: _Optional[str] = ..., created_at_us: _Optional[int] = ..., last_seen_at_us: _Optional[int] = ..., expires_at: _Optional[int] = ..., current: _Optional[bool] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class RevokeDeviceRequest(_message.Message):
    __slots__ = ("name", "device_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    device_id: str
    def __init__(self, name: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class RevokeDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...

class ChangePasswordRequest(_message.Message):
    __slots__ = ("old_password", "new_password")
    OLD_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    old_password: str
    new_password: str
    def __init__(self, old_password: _Optional[str] = ..., new_password: _Optional[str] = ...) -> None: ...

class ChangePasswordResponse(_message.Message):
    __slots__ = ("token", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: int
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[int] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UserInfo(_message.Message):
    __slots__ = ("user_id", "name", "is_admin", "created_at_us", "devices")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IS_ADMIN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_US_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    name: str
    is_admin: bool
    created_at_us: int
    devices: int
    def __init__(self, user_id: _Optional[str] = ..., name: _Optional[str] = ..., is_admin: _Optional[bool] = ..., created_at_us: _Optional[int] = ..., devices: _Optional[int] = ...) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[UserInfo]
    def __init__(self, users: _Optional[_Iterable[_Union[UserInfo, _Mapping]]] = ...) -> None: ...

class DeleteUserRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteUserResponse(_message.Message):
    __slots__ = ("user_id", "files_deleted", "shares_ended")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FILES_DELETED_FIELD_NUMBER: _ClassVar[int]
    SHARES_ENDED_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    files_deleted: int
    shares_ended: int
    def __init__(self, user_id: _Optional[str] = ..., files_deleted: _Optional[int] = ..., shares_ended: _Optional[int] = ...) -> None: ...
