"""The Tessera client SDK: a small typed facade over the cluster's gRPC services.

async with await Client.connect("127.0.0.1:7420", token=token) as c:
    version = await c.put_file(Path("report.pdf"), "docs/report.pdf")
    await c.get_file("docs/report.pdf", Path("copy.pdf"))
"""

from client._accounts import DeletedUser, Device, Me, UserInfo
from client._client import Client, ClientConfig, UploadHooks
from client._edits import Member, Namespace
from client._errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    SyncError,
    UnavailableError,
)
from client._links import LinkVisitor
from client._modes import file_mode, is_executable, umask
from client._recover import Link, Restored, SharedFile, TrashItem
from client._sync_api import Commit, CommitOutcome, FeedEvent, OpenedFile, StoredChunk
from client._types import (
    Change,
    ChangeOp,
    Cursor,
    Deletion,
    Entry,
    EntryKind,
    FileVersion,
    UploadStats,
)

__all__ = [
    "Commit",
    "CommitOutcome",
    "FeedEvent",
    "Member",
    "Namespace",
    "OpenedFile",
    "StoredChunk",
    "file_mode",
    "is_executable",
    "umask",
    "AuthenticationError",
    "Change",
    "ChangeOp",
    "Client",
    "ClientConfig",
    "ConflictError",
    "Cursor",
    "DeletedUser",
    "Deletion",
    "Device",
    "Entry",
    "EntryKind",
    "FileVersion",
    "InvalidRequestError",
    "Link",
    "LinkVisitor",
    "Me",
    "NotFoundError",
    "PermissionDeniedError",
    "Restored",
    "SharedFile",
    "SyncError",
    "TrashItem",
    "UnavailableError",
    "UploadHooks",
    "UploadStats",
    "UserInfo",
]
