"""Plain data the SDK returns (never protos)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class EntryKind(IntEnum):
    FILE = 1
    FOLDER = 2


class ChangeOp(IntEnum):
    UPSERT = 1
    DELETE = 2
    MOVE = 3


@dataclass(frozen=True)
class Entry:
    """A file or folder at one revision."""

    namespace_id: str
    file_id: str
    path: str
    name: str
    kind: EntryKind
    size: int
    revision: str
    modified_at_us: int
    deleted: bool
    seq: int
    device_id: str = ""
    content_hash: bytes = b""
    executable: bool = False

    @property
    def is_folder(self) -> bool:
        return self.kind is EntryKind.FOLDER

    @classmethod
    def from_pb(cls, e: Any) -> Entry:
        return cls(
            e.namespace_id,
            e.file_id,
            e.path,
            e.name,
            EntryKind(e.kind or 1),
            e.size,
            e.revision_id,
            e.modified_at_us,
            e.deleted,
            e.seq,
            e.device_id,
            bytes(e.content_hash),
            e.executable,
        )


@dataclass(frozen=True)
class Cursor:
    namespace_id: str
    seq: int


@dataclass(frozen=True)
class Change:
    """One journal record as a device sees it."""

    namespace_id: str
    seq: int
    op: ChangeOp
    entry: Entry
    old_path: str = ""

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.namespace_id, self.seq)

    @classmethod
    def from_pb(cls, c: Any) -> Change:
        return cls(c.namespace_id, c.seq, ChangeOp(c.op or 1), Entry.from_pb(c.entry), c.old_path)


@dataclass(frozen=True)
class Deletion:
    """The outcome of a delete: the deleted entry, or for a folder in which something changed
    after what the deleting device had seen, the folder (still live) and how many entries of
    it were kept."""

    entry: Entry
    kept: int = 0


@dataclass(frozen=True)
class UploadStats:
    """What one upload cost on the wire."""

    chunks: int
    chunks_sent: int  # chunks stored (whole, compressed or as deltas)
    bytes_sent: int  # request bytes sent to block nodes: chunks, deltas, signature calls


@dataclass(frozen=True)
class FileVersion:
    entry: Entry
    stats: UploadStats
