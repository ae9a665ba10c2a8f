"""SDK methods to get things back and give them out: point-in-time restore, the trash, share
links and streamed reads. Mixed into ``Client`` (which provides the channel and metadata)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from client._errors import call_rpc as _rpc
from client._types import Entry
from tessera.pb import common_pb2, meta_pb2

if TYPE_CHECKING:
    from client._blocks import BlockPool


@dataclass(frozen=True)
class TrashItem:
    """A deleted file or folder."""

    entry: Entry  # the deletion: path, file id, when (modified_at_us), device
    deleted_by: str  # "" when unknown
    restorable_until_us: int  # 0: as long as the cluster keeps revisions
    files_inside: int  # a folder: files deleted with it


@dataclass(frozen=True)
class Restored:
    """What a point-in-time restore did."""

    entry: Entry  # the file or folder now
    changed: int  # revisions written
    changes: list[Entry]


@dataclass(frozen=True)
class Link:
    """A share link (its token is only known when created)."""

    link_id: str
    path: str
    is_folder: bool
    created_at_us: int
    expires_at_us: int
    has_password: bool
    downloads: int
    last_used_us: int

    @classmethod
    def from_pb(cls, pb: meta_pb2.ShareLink) -> Link:
        return cls(
            pb.link_id,
            pb.path,
            pb.is_folder,
            pb.created_at_us,
            pb.expires_at_us,
            pb.has_password,
            pb.downloads,
            pb.last_used_us,
        )


@dataclass(frozen=True)
class SharedFile:
    """A file shared with this user (role viewer/editor) or by them (role owner)."""

    share_id: str  # pass as namespace_id (path "" or the name) to reach the file
    name: str
    path: str
    owner: str
    role: str
    size: int
    modified_at_us: int
    members: tuple[tuple[str, str], ...]  # (name, role), to the owner


_ROLE_NAMES = {1: "owner", 2: "editor", 3: "viewer"}


READ_WINDOW = 4  # chunks fetched at once by read_range (at most 16 MiB in memory)


class RecoverMixin:
    """Restore at a time, trash, links, and chunk-by-chunk reads."""

    _meta: Any
    _md: Any
    config: Any
    device_id: str

    async def _block_pool(self, *, refresh: bool = False) -> BlockPool:
        raise NotImplementedError

    async def restore_at(
        self,
        path: str,
        at_us: int = 0,
        *,
        file_id: str = "",
        namespace_id: str = "",
        operation_id: str = "",
    ) -> Restored:
        """Bring a file or a whole folder back as it was at ``at_us`` (microseconds since the
        epoch); ``at_us`` 0 restores a deleted one as it was just before it was deleted."""
        req = meta_pb2.RestoreTreeRequest(
            namespace_id=namespace_id,
            path=path,
            at_us=at_us,
            file_id=file_id,
            device_id=self.device_id,
            operation_id=operation_id or uuid.uuid4().hex,
        )
        resp = await _rpc(
            self._meta.RestoreTree(req, metadata=self._md, timeout=self.config.timeout)
        )
        return Restored(
            Entry.from_pb(resp.entry), resp.changed, [Entry.from_pb(e) for e in resp.changes]
        )

    async def trash(
        self, path: str = "", *, limit: int = 0, namespace_id: str = ""
    ) -> tuple[list[TrashItem], int]:
        """(deleted files and folders under ``path``, newest first; retention in seconds)."""
        req = meta_pb2.ListTrashRequest(namespace_id=namespace_id, path=path, limit=limit)
        resp = await _rpc(self._meta.ListTrash(req, metadata=self._md, timeout=self.config.timeout))
        items = [
            TrashItem(Entry.from_pb(t.entry), t.deleted_by, t.restorable_until_us, t.files_inside)
            for t in resp.entries
        ]
        return items, resp.retention_seconds

    async def shared_files(self) -> list[SharedFile]:
        """Files shared with this user, and files this user shared (role "owner")."""
        resp = await _rpc(
            self._meta.ListSharedFiles(
                meta_pb2.ListSharedFilesRequest(), metadata=self._md, timeout=self.config.timeout
            )
        )
        return [
            SharedFile(
                f.share_id,
                f.name,
                f.path,
                f.owner_name,
                _ROLE_NAMES.get(f.role, "?"),
                f.size,
                f.modified_at_us,
                tuple((m.user_name, _ROLE_NAMES.get(m.role, "?")) for m in f.members),
            )  # fmt: skip
            for f in resp.files
        ]

    # -- links ------------------------------------------------------------------------------
    async def create_link(
        self, path: str, *, expires_in: int = 0, password: str = "", namespace_id: str = ""
    ) -> tuple[Link, str]:
        """A share link to a file or folder; returns (the link, its secret token)."""
        req = meta_pb2.CreateLinkRequest(
            namespace_id=namespace_id, path=path, expires_in_seconds=expires_in, password=password
        )
        resp = await _rpc(
            self._meta.CreateLink(req, metadata=self._md, timeout=self.config.timeout)
        )
        return Link.from_pb(resp.link), resp.token

    async def links(self) -> list[Link]:
        """The caller's links, newest first."""
        resp = await _rpc(
            self._meta.ListLinks(
                meta_pb2.ListLinksRequest(), metadata=self._md, timeout=self.config.timeout
            )
        )
        return [Link.from_pb(x) for x in resp.links]

    async def revoke_link(self, link_id: str) -> None:
        """Revoke a link at once."""
        req = meta_pb2.RevokeLinkRequest(link_id=link_id)
        await _rpc(self._meta.RevokeLink(req, metadata=self._md, timeout=self.config.timeout))

    # -- streamed reads ---------------------------------------------------------------------
    async def open_for_reading(
        self, path: str, *, revision: str = "", namespace_id: str = ""
    ) -> meta_pb2.GetFileResponse:
        """A file's entry, blocklist and read ticket (then ``read_chunks``): for streamed,
        ranged reads (the web gateway). The sync daemon uses ``open_file``/``fetch_chunks``."""
        req = meta_pb2.GetFileRequest(namespace_id=namespace_id, path=path, revision_id=revision)
        return await _rpc(self._meta.GetFile(req, metadata=self._md, timeout=self.config.timeout))

    async def read_chunks(
        self,
        chunks: list[common_pb2.ChunkRef],
        ticket: common_pb2.ReadTicket,
        start: int = 0,
        end: int | None = None,
    ) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` of a blocklist, in order, one chunk in memory at a time."""
        async for data in read_range(await self._block_pool(), chunks, ticket, start, end):
            yield data


async def read_range(
    blocks: BlockPool,
    chunks: list[common_pb2.ChunkRef],
    ticket: common_pb2.ReadTicket,
    start: int = 0,
    end: int | None = None,
    *,
    window: int = READ_WINDOW,
) -> AsyncIterator[bytes]:
    """The bytes ``[start, end)`` of a blocklist from the block nodes, in order.

    Chunks are fetched ``window`` at a time (from their replicas in parallel), so at most that
    many chunks are in memory, never the whole file.
    """
    wanted: list[tuple[bytes, int, int]] = []  # (hash, from, to) within each chunk
    pos = 0
    for c in chunks:
        lo, hi = pos, pos + c.size
        pos = hi
        if hi <= start or (end is not None and lo >= end):
            continue
        wanted.append(
            (bytes(c.hash), max(start - lo, 0), c.size if end is None else min(end - lo, c.size))
        )
    for i in range(0, len(wanted), window):
        group = wanted[i : i + window]
        got: dict[bytes, bytes] = {}
        async for h, data in blocks.get(ticket, [h for h, _, _ in group]):
            got[h] = data
        for h, a, b in group:
            yield got[h][a:b]
