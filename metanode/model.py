"""Plain data the metadata operations return (the service turns them into protos)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from enum import IntEnum

ROOT_PARENT = uuid.UUID(int=0)  # parent_id of a namespace's top-level entries
MAX_LIST_PAGE = 1000  # rows one listing (folder or journal) returns at most


def us(ts: dt.datetime) -> int:
    """Microseconds since the epoch."""
    return int(ts.timestamp() * 1_000_000)


class Kind(IntEnum):
    FILE = 1
    FOLDER = 2


class Op(IntEnum):
    UPSERT = 1
    DELETE = 2
    MOVE = 3


class Role(IntEnum):
    OWNER = 1
    EDITOR = 2
    VIEWER = 3


@dataclass(frozen=True)
class ChunkRef:
    hash: bytes
    size: int


@dataclass(frozen=True)
class Receipt:
    hash: bytes
    size: int
    user_id: str
    expires_at: int
    signature: bytes


@dataclass(frozen=True)
class EntryRow:
    """A file or folder at one revision."""

    ns_id: uuid.UUID
    file_id: uuid.UUID
    path: str
    kind: Kind
    size: int
    rev_id: uuid.UUID
    modified_at_us: int
    deleted: bool
    seq: int
    device_id: str = ""
    client_mtime_ns: int = 0
    content_hash: bytes = b""
    executable: bool = False

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]


@dataclass(frozen=True)
class ChangeRow:
    ns_id: uuid.UUID
    seq: int
    op: Op
    entry: EntryRow
    old_path: str = ""


@dataclass(frozen=True)
class FileVersion:
    entry: EntryRow
    chunks: list[ChunkRef] = field(default_factory=list)


@dataclass(frozen=True)
class NamespaceRow:
    ns_id: uuid.UUID
    mount_path: str
    role: Role
    head_seq: int
    oldest_seq: int


@dataclass(frozen=True)
class CommitSpec:
    """One file commit as the client asked for it."""

    ns_id: uuid.UUID
    path: str
    parent_rev: uuid.UUID | None
    chunks: list[ChunkRef]
    receipts: list[Receipt]
    device_id: str = ""
    op_id: str = ""
    client_mtime_ns: int = 0
    # Chunks a block node was just asked about and holds (proof after a GC tombstone).
    present: frozenset[bytes] = frozenset()
    # The folder the device put the file in: a commit follows it when it moved since.
    parent_folder: uuid.UUID | None = None
    executable: bool = False


@dataclass(frozen=True)
class MemberRow:
    """One member of a namespace."""

    user_id: uuid.UUID
    name: str
    role: Role
    ns_id: uuid.UUID


@dataclass
class GCStats:
    """What one garbage-collection pass did."""

    revisions_pruned: int = 0
    journal_pruned: int = 0
    chunks_deleted: int = 0
    chunks_referenced: int = 0
    chunks_waiting: int = 0
    chunks_failed: int = 0
