"""The SDK calls a sync client needs beyond put and get: chunk uploads with receipts, batched
commits, downloads by chunk, and a resumable change feed.

``SyncCalls`` is a base of ``Client`` (it uses the client's stubs, credentials and block pool);
everything it takes and returns is a typed SDK value: receipts travel as opaque bytes, the
read ticket of a download inside ``OpenedFile``. The sync daemon (``syncd/``) uses only these
and the rest of the public API.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from client._errors import SyncError, UnavailableError, error_for, from_rpc_error
from client._types import Change, Entry
from tessera.chunking import Chunk
from tessera.errors import error_detail
from tessera.pb import common_pb2, errors_pb2, meta_pb2, sync_pb2, sync_pb2_grpc
from tessera.ring import SYNC_VNODES, build_ring, key_position
from tessera.ring import Member as RingMember
from tessera.rpc import open_channel


@dataclass(frozen=True)
class StoredChunk:
    """A chunk the cluster holds: its receipt (opaque bytes) lets a commit reference it."""

    hash: bytes
    size: int
    receipt: bytes
    expires_at: int


@dataclass
class Commit:
    """One file version to commit: its chunks in order and receipts for chunks just stored."""

    path: str
    chunks: list[tuple[bytes, int]]  # (hash, size), in file order
    receipts: list[bytes] = field(default_factory=list)  # ``StoredChunk.receipt``s
    namespace_id: str = ""
    parent_revision: str = ""  # "": the path must not exist (or be deleted)
    parent_folder_id: str = ""  # the folder the file was put in: it follows a move of it
    mtime_ns: int = 0
    executable: bool = False
    operation_id: str = ""  # idempotency key (a fresh one when empty)


@dataclass(frozen=True)
class CommitOutcome:
    """One result of ``commit_batch``: the new entry, or the error of that commit alone."""

    entry: Entry | None
    error: SyncError | None = None


@dataclass(frozen=True)
class OpenedFile:
    """A revision opened for download: its entry, its chunks and a read ticket (opaque)."""

    entry: Entry
    chunks: list[tuple[bytes, int]]  # (hash, size), in file order
    ticket: Any = field(repr=False, default=None)

    @property
    def size(self) -> int:
        return sum(s for _, s in self.chunks)


@dataclass(frozen=True)
class FeedEvent:
    """One event of ``Client.changes``.

    ``kind`` is ``change`` (``change`` set), ``removed`` (access to ``namespace_id`` ended),
    ``resync`` (its journal no longer reaches the cursor: list it afresh), ``moved`` (the
    account moved to another sync node: the feed resumed there) or ``behind`` (the node
    dropped a slow reader: the feed resumed from the cursors), or ``heartbeat``.
    """

    kind: str
    change: Change | None = None
    namespace_id: str = ""


class SyncCalls:
    """Calls for sync clients; a base of ``Client``."""

    _meta: Any
    _md: Any
    device_id: str
    user_id: str
    security: Any
    config: Any

    if False:  # pragma: no cover - provided by Client

        async def _block_pool(self, *, refresh: bool = False) -> Any: ...
        async def cluster_info(self) -> Any: ...

    async def _unary(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._meta, method)(
                request, metadata=self._md, timeout=self.config.timeout
            )
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from None

    async def store_chunks(self, chunks: list[Chunk]) -> list[StoredChunk]:
        """Put chunks on their block nodes; one receipt each (keep them to resume an upload)."""
        if not chunks:
            return []
        blocks = await self._block_pool()
        return [
            StoredChunk(bytes(r.hash), r.size, r.SerializeToString(), r.expires_at)
            for r in await blocks.put(chunks)
        ]

    def _commit_pb(self, c: Commit) -> meta_pb2.CommitRequest:
        return meta_pb2.CommitRequest(
            namespace_id=c.namespace_id,
            path=c.path,
            parent_revision=c.parent_revision,
            blocklist=common_pb2.Blocklist(
                chunks=[common_pb2.ChunkRef(hash=h, size=s) for h, s in c.chunks]
            ),
            receipts=[common_pb2.Receipt.FromString(r) for r in c.receipts],
            client_mtime_ns=c.mtime_ns,
            device_id=self.device_id,
            operation_id=c.operation_id or uuid.uuid4().hex,
            executable=c.executable,
            parent_folder_id=c.parent_folder_id,
        )

    async def commit(self, c: Commit) -> Entry:
        """Commit one file version (ConflictError when ``parent_revision`` is stale)."""
        return Entry.from_pb((await self._unary("Commit", self._commit_pb(c))).entry)

    async def commit_batch(self, commits: list[Commit]) -> list[CommitOutcome]:
        """Commit many small files in one round trip; one outcome each, in order."""
        req = meta_pb2.CommitBatchRequest(commits=[self._commit_pb(c) for c in commits])
        out = []
        for r in (await self._unary("CommitBatch", req)).results:
            if r.code == 0:
                out.append(CommitOutcome(Entry.from_pb(r.entry)))
            else:
                code = next((s for s in grpc.StatusCode if s.value[0] == r.code), None)
                err = error_for(code or grpc.StatusCode.UNKNOWN, r.message, r.head_revision)
                out.append(CommitOutcome(None, err))
        return out

    async def open_file(
        self, path: str, *, namespace_id: str = "", revision: str = ""
    ) -> OpenedFile:
        """The head (or ``revision``) of a file, ready for ``fetch_chunks``."""
        req = meta_pb2.GetFileRequest(namespace_id=namespace_id, path=path, revision_id=revision)
        resp = await self._unary("GetFile", req)
        chunks = [(bytes(c.hash), c.size) for c in resp.blocklist.chunks]
        return OpenedFile(Entry.from_pb(resp.entry), chunks, resp.ticket)

    async def fetch_chunks(
        self, f: OpenedFile, hashes: list[bytes]
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        """(hash, data) for each wanted chunk of an opened file, verified, in any order."""
        blocks = await self._block_pool()
        async for h, data in blocks.get(f.ticket, hashes):
            yield h, data

    async def connect_blocks(self) -> None:
        """Dial the block ring now (UnavailableError if the cluster has no block nodes)."""
        await self._block_pool()

    async def sync_address(self) -> str:
        """The address of the sync node that streams this account's changes."""
        info = await self.cluster_info()
        live = [n for n in info.sync_nodes if n.up]
        if not live:
            raise UnavailableError("no sync node is up")
        ring = build_ring(
            [RingMember(n.id, n.address, n.zone or "default") for n in live], vnodes=SYNC_VNODES
        )
        return ring.member(ring.owners(key_position(self.user_id), 1)[0]).address

    _sync_address = sync_address  # the old private name, still used by tests

    async def changes(
        self,
        cursors: Mapping[str, int] | Callable[[], Mapping[str, int]],
        *,
        heartbeats: bool = False,
    ) -> AsyncIterator[FeedEvent]:
        """Changes after the cursors, then live, from this account's sync node.

        ``cursors`` may be a function: it is asked again each time the feed resumes, so a
        caller that saves its cursors resumes from what it applied. The feed follows ring moves
        and slow-reader drops by itself (a ``moved`` or ``behind`` event, then more changes);
        it ends when the node closes the stream and raises the SDK error when the stream
        fails (UnavailableError: dial again later; AuthenticationError: stop).
        """
        while True:
            now = cursors() if callable(cursors) else cursors
            req = sync_pb2.SubscribeRequest(
                cursors=[common_pb2.Cursor(namespace_id=k, seq=v) for k, v in now.items()],
                device_id=self.device_id,
            )
            address = await self.sync_address()
            try:
                async with open_channel(
                    address, self.security, max_message_bytes=64 * 1024 * 1024
                ) as channel:
                    async for ev in sync_pb2_grpc.SyncStub(channel).Subscribe(
                        req, metadata=self._md
                    ):
                        kind = ev.WhichOneof("event")
                        if kind == "change":
                            yield FeedEvent("change", Change.from_pb(ev.change))
                        elif kind == "removed":
                            yield FeedEvent("removed", namespace_id=ev.removed.namespace_id)
                        elif kind == "resync":
                            yield FeedEvent("resync", namespace_id=ev.resync.namespace_id)
                        elif kind == "heartbeat" and heartbeats:
                            yield FeedEvent("heartbeat")
                return
            except grpc.aio.AioRpcError as e:
                if error_detail(e, errors_pb2.RingMoved) is not None:
                    yield FeedEvent("moved")
                elif e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                    yield FeedEvent("behind")
                else:
                    raise from_rpc_error(e) from None
            await asyncio.sleep(0)
