"""The typed client facade over the Metadata, Block and Sync services."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import stat
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from client._accounts import AccountCalls
from client._batch import RemoteFile, UploadHooks, file_versions, get_files, upload_chunks
from client._blocks import BlockPool, ring_from_pb
from client._delta import DeltaBase, chunk_layout, write_version
from client._edits import EditCalls
from client._errors import SyncError, UnavailableError, from_rpc_error
from client._errors import call_rpc as _call
from client._modes import file_mode, is_executable
from client._recover import RecoverMixin
from client._sync_api import SyncCalls
from client._types import Change, Cursor, Entry, FileVersion, UploadStats
from tessera.chunking import Chunk, iter_chunks
from tessera.errors import error_detail
from tessera.pb import common_pb2, errors_pb2, meta_pb2, meta_pb2_grpc
from tessera.rpc import ChannelSecurity, auth_metadata, open_channel


@dataclass(frozen=True)
class ClientConfig:
    """Tunables of one client."""

    device_id: str = ""
    batch_chunks: int = 16  # chunks read, checked and uploaded per round (~16 MiB)
    max_message_bytes: int = 6 * 1024 * 1024
    timeout: float = 60.0
    tls: bool = False  # dial every node over TLS (implied by tls_ca)
    tls_ca: str = ""  # PEM CA bundle to verify the cluster's certificates
    tls_server_name: str = ""  # verify certificates against this name instead of each host

    @classmethod
    def from_env(cls, **overrides: Any) -> ClientConfig:
        """TLS settings from ``TESSERA_TLS``, ``TESSERA_TLS_CA`` and ``TESSERA_TLS_SERVER_NAME``."""
        env = os.environ
        tls = {
            "tls": env.get("TESSERA_TLS", "").lower() in {"1", "true", "yes", "on"},
            "tls_ca": env.get("TESSERA_TLS_CA", ""),
            "tls_server_name": env.get("TESSERA_TLS_SERVER_NAME", ""),
        }
        return cls(**{**tls, **overrides})

    def security(self) -> ChannelSecurity:
        """How this client dials the cluster."""
        return ChannelSecurity.from_files(
            tls=self.tls, ca_file=self.tls_ca, server_name=self.tls_server_name
        )


class Client(AccountCalls, SyncCalls, RecoverMixin, EditCalls):
    """Connect with ``await Client.connect(endpoint, token=...)``; close with ``await client.close()``."""

    def __init__(self, target: str, token: str, config: ClientConfig) -> None:
        self.target = target
        self.config = config
        self.device_id = config.device_id or f"sdk-{uuid.uuid4().hex[:8]}"
        self._token = token
        self._md = auth_metadata(token)
        self.security = config.security()
        self._channel = open_channel(target, self.security, max_message_bytes=64 * 1024 * 1024)
        self._meta = meta_pb2_grpc.MetadataStub(self._channel)
        self._blocks: BlockPool | None = None
        self._blocks_lock = asyncio.Lock()
        self.user_id = ""
        self.root_namespace_id = ""

    # -- lifecycle ----------------------------------------------------------------------------
    @classmethod
    async def connect(
        cls, target: str, *, token: str, config: ClientConfig | None = None
    ) -> Client:
        """Check the token and learn who we are; raises AuthenticationError or UnavailableError."""
        client = cls(target, token, config or ClientConfig())
        try:
            me = await _call(
                client._meta.WhoAmI(
                    meta_pb2.WhoAmIRequest(), metadata=client._md, timeout=client.config.timeout
                )
            )
        except BaseException:
            await client.close()
            raise
        client.user_id, client.root_namespace_id = me.user_id, me.root_namespace_id
        return client

    @staticmethod
    async def login(
        target: str,
        name: str,
        password: str,
        *,
        config: ClientConfig | None = None,
        device_name: str = "",
    ) -> meta_pb2.LoginResponse:
        """Exchange a name and password for a token: a new device named ``device_name``."""
        async with open_channel(target, (config or ClientConfig()).security()) as channel:
            return await _call(
                meta_pb2_grpc.MetadataStub(channel).Login(
                    meta_pb2.LoginRequest(name=name, password=password, device_name=device_name),
                    timeout=30,
                )
            )

    async def _rpc(self, method: str, request: Any, timeout: float | None = None) -> Any:
        """One unary Metadata call with this client's credentials; SDK errors on failure."""
        call = getattr(self._meta, method)
        return await _call(call(request, metadata=self._md, timeout=timeout or self.config.timeout))

    async def _set_token(self, token: str) -> None:
        """Use ``token`` from now on (block connections are re-made with it on next use)."""
        self._token, self._md = token, auth_metadata(token)
        async with self._blocks_lock:
            blocks, self._blocks = self._blocks, None
        if blocks is not None:
            await blocks.close()

    async def close(self) -> None:
        if self._blocks is not None:
            await self._blocks.close()
        await self._channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- cluster ------------------------------------------------------------------------------
    async def cluster_info(self) -> meta_pb2.ClusterInfo:
        return await _call(
            self._meta.GetClusterInfo(
                meta_pb2.GetClusterInfoRequest(), metadata=self._md, timeout=self.config.timeout
            )
        )

    async def _block_pool(self, *, refresh: bool = False) -> BlockPool:
        async with self._blocks_lock:  # concurrent first calls must not build (and close) two pools
            return await self._block_pool_locked(refresh=refresh)

    async def _block_pool_locked(self, *, refresh: bool) -> BlockPool:
        if self._blocks is None or refresh:
            info = await self.cluster_info()
            if not info.block_ring.nodes:
                raise UnavailableError("the cluster has no block nodes registered")
            if self._blocks is not None:
                await self._blocks.close()
            self._blocks = BlockPool(
                ring_from_pb(info.block_ring),
                self._token,
                max_message_bytes=self.config.max_message_bytes,
                replicas=info.block_ring.replicas or 3,
                security=self.security,
            )
        return self._blocks

    async def create_user(self, name: str, password: str, *, is_admin: bool = False) -> str:
        resp = await _call(
            self._meta.CreateUser(
                meta_pb2.CreateUserRequest(name=name, password=password, is_admin=is_admin),
                metadata=self._md,
                timeout=30,
            )
        )
        return str(resp.user_id)

    async def status(self) -> meta_pb2.ClusterStatus:
        return await _call(
            self._meta.GetStatus(
                meta_pb2.GetStatusRequest(), metadata=self._md, timeout=self.config.timeout
            )
        )

    # -- metadata -----------------------------------------------------------------------------
    async def stat(self, path: str, *, namespace_id: str = "") -> Entry:
        e = await _call(
            self._meta.Stat(
                meta_pb2.StatRequest(namespace_id=namespace_id, path=path),
                metadata=self._md,
                timeout=self.config.timeout,
            )
        )
        return Entry.from_pb(e)

    async def list(self, path: str = "", *, namespace_id: str = "") -> list[Entry]:
        """Every entry of a folder (all pages)."""
        out: list[Entry] = []
        token = ""
        while True:
            req = meta_pb2.ListRequest(namespace_id=namespace_id, path=path, page_token=token)
            resp = await _call(self._meta.List(req, metadata=self._md, timeout=self.config.timeout))
            out.extend(Entry.from_pb(e) for e in resp.entries)
            token = resp.next_page_token
            if not token:
                return out

    async def list_tree(self, path: str = "", *, namespace_id: str = "") -> builtins.list[Entry]:
        """Every entry under a folder, at any depth (folders before their contents)."""
        out: list[Entry] = []
        folders = [path]
        while folders:
            for e in await self.list(folders.pop(), namespace_id=namespace_id):
                out.append(e)
                if e.is_folder:
                    folders.append(e.path)
        return out

    async def need_chunks(self, hashes: builtins.list[bytes]) -> set[bytes]:
        if not hashes:
            return set()
        resp = await _call(
            self._meta.NeedChunks(
                meta_pb2.NeedChunksRequest(hashes=hashes),
                metadata=self._md,
                timeout=self.config.timeout,
            )
        )
        return {bytes(h) for h in resp.missing}

    # -- upload -------------------------------------------------------------------------------
    async def put_file(
        self,
        local: Path,
        remote: str,
        *,
        parent_revision: str | None = None,
        namespace_id: str = "",
        overwrite: bool = True,
        executable: bool | None = None,
        resume: UploadHooks | None = None,
    ) -> FileVersion:
        """Upload a file: chunk while streaming from disk, send only chunks the cluster lacks for
        this user, then commit. ``parent_revision=None`` with ``overwrite`` commits on top of the
        current head (plain ``tessera put``); a stale explicit parent raises ConflictError.
        ``executable`` (default: the local file's owner execute bit) is part of the revision.
        ``resume`` hands in receipts of chunks an interrupted attempt already sent (not sent
        again), is told of each new batch of receipts, and of the bytes processed so far."""
        if parent_revision is None and overwrite:
            try:
                parent_revision = (await self.stat(remote, namespace_id=namespace_id)).revision
            except SyncError as e:
                if e.status is not grpc.StatusCode.NOT_FOUND:
                    raise
                parent_revision = ""
        blocks = await self._block_pool()
        base = await self.delta_base(remote, parent_revision, namespace_id=namespace_id)
        wire_chunks, wire_bytes = blocks.sent_chunks, blocks.wire_sent  # what crosses the wire
        refs, receipts = await upload_chunks(self, local, resume, base=base)  # chunks overlap sends
        req = meta_pb2.CommitRequest(
            namespace_id=namespace_id,
            path=remote,
            parent_revision=parent_revision or "",
            blocklist=common_pb2.Blocklist(chunks=refs),
            receipts=receipts,
            client_mtime_ns=local.stat().st_mtime_ns,
            device_id=self.device_id,
            operation_id=uuid.uuid4().hex,
            executable=is_executable(local.stat().st_mode) if executable is None else executable,
        )
        try:
            resp = await self._meta.Commit(req, metadata=self._md, timeout=self.config.timeout)
        except grpc.aio.AioRpcError as e:
            stale = _reupload_hashes(e)
            if not stale:
                raise from_rpc_error(e) from None
            # Receipts this client reused name chunks the cluster has since garbage-collected:
            # send those chunks again (read back from the file) and commit once more.
            blocks.forget(stale)
            again = await asyncio.to_thread(_chunks_of, local, stale)
            merged = {bytes(r.hash): r for r in receipts}
            merged.update({bytes(r.hash): r for r in await blocks.put(again)})
            del req.receipts[:]
            req.receipts.extend(merged.values())
            resp = await _call(
                self._meta.Commit(req, metadata=self._md, timeout=self.config.timeout)
            )
        # Bytes on the wire to block nodes (deltas and compressed chunks as sent), not chunk sizes.
        sent, sent_bytes = blocks.sent_chunks - wire_chunks, blocks.wire_sent - wire_bytes
        return FileVersion(Entry.from_pb(resp.entry), UploadStats(len(refs), sent, sent_bytes))

    async def delta_base(
        self, remote: str, revision: str | None, *, namespace_id: str = ""
    ) -> DeltaBase | None:
        """A file's version ``revision`` as a base for delta uploads (None when there is none:
        no revision, a folder, a deleted file; the upload then sends whole chunks)."""
        if not revision:
            return None
        req = meta_pb2.GetFileRequest(namespace_id=namespace_id, path=remote, revision_id=revision)
        try:
            resp = await self._meta.GetFile(req, metadata=self._md, timeout=self.config.timeout)
        except grpc.aio.AioRpcError:
            return None

        async def narrower(hashes: list[bytes]) -> common_pb2.ReadTicket | None:
            again = meta_pb2.GetFileRequest(
                namespace_id=namespace_id, path=remote, revision_id=revision, ticket_for=hashes
            )
            try:
                r = await self._meta.GetFile(again, metadata=self._md, timeout=self.config.timeout)
            except grpc.aio.AioRpcError:
                return None
            return r.ticket

        base = DeltaBase.from_blocklist(resp.blocklist, resp.ticket)
        base.narrower = narrower
        return base

    async def make_folder(
        self,
        path: str,
        *,
        namespace_id: str = "",
        operation_id: str = "",
        parent_folder_id: str = "",
    ) -> Entry:
        """Create a folder (and its parents). ``parent_folder_id``: the folder it was made in;
        if that was moved meanwhile, the new folder lands in its new place."""
        req = meta_pb2.MakeFolderRequest(
            namespace_id=namespace_id,
            path=path,
            device_id=self.device_id,
            operation_id=operation_id or uuid.uuid4().hex,
            parent_folder_id=parent_folder_id,
        )
        return Entry.from_pb(
            (
                await _call(
                    self._meta.MakeFolder(req, metadata=self._md, timeout=self.config.timeout)
                )
            ).entry
        )

    # -- download -----------------------------------------------------------------------------
    async def _meta_call(self, method: str, request: Any) -> Any:
        """One unary Metadata call with this client's credentials and timeout."""
        call = getattr(self._meta, method)
        return await _call(call(request, metadata=self._md, timeout=self.config.timeout))

    async def file_versions(
        self, remotes: builtins.list[str], *, namespace_id: str = ""
    ) -> tuple[builtins.list[RemoteFile | SyncError], common_pb2.ReadTicket]:
        """Blocklists of up to 1,000 files in one call and one read ticket for all their chunks
        (see ``client._batch``); per file a ``RemoteFile`` or that file's error."""
        return await file_versions(self, remotes, namespace_id=namespace_id)

    async def get_files(
        self, items: builtins.list[tuple[str, Path]], *, namespace_id: str = ""
    ) -> builtins.list[Entry | SyncError]:
        """Download many (remote, local) files: batched metadata, one GetChunks stream per node
        for all their chunks; per file its entry or its error (see ``client._batch``)."""
        return await get_files(self, items, namespace_id=namespace_id)

    async def get_file(
        self,
        remote: str,
        local: Path,
        *,
        revision: str = "",
        namespace_id: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> Entry:
        """Download a revision (default: head) into a temporary file, verified, renamed into place,
        with the user's umask and the revision's executable bit. ``progress`` is called with the
        bytes written as each chunk lands.

        When ``local`` already holds a file (an older version), its chunks are reused and the
        changed ones come as deltas against it (``client._delta.write_version``)."""
        req = meta_pb2.GetFileRequest(namespace_id=namespace_id, path=remote, revision_id=revision)
        resp = await _call(self._meta.GetFile(req, metadata=self._md, timeout=self.config.timeout))
        new = [(bytes(c.hash), c.size) for c in resp.blocklist.chunks]
        local.parent.mkdir(parents=True, exist_ok=True)
        old_fd = -1
        with contextlib.suppress(OSError):
            old_fd = os.open(local, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            if not stat.S_ISREG(os.fstat(old_fd).st_mode):
                os.close(old_fd)
                old_fd = -1
        # A short temporary name whatever the final one (a 240-byte name must still fit in 255).
        fd, tmp = tempfile.mkstemp(prefix=".tessera-", suffix=".tessera-part", dir=local.parent)
        try:
            layout = await asyncio.to_thread(chunk_layout, old_fd) if old_fd >= 0 else []
            os.fchmod(fd, file_mode(resp.entry.executable))
            blocks = await self._block_pool() if new else None
            if blocks is not None:
                base_fd = old_fd if layout else None
                await write_version(
                    blocks, resp.ticket, new, fd, base_fd, layout, progress=progress
                )
            else:
                await asyncio.to_thread(os.fsync, fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, local)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        finally:
            if old_fd >= 0:
                os.close(old_fd)
        return Entry.from_pb(resp.entry)

    # -- changes ------------------------------------------------------------------------------
    async def list_changes(
        self, cursor: Cursor, *, limit: int = 1000
    ) -> tuple[builtins.list[Change], Cursor, bool, bool]:
        """(changes after cursor, next cursor, has_more, resync_required)."""
        req = meta_pb2.ListChangesRequest(
            cursor=common_pb2.Cursor(namespace_id=cursor.namespace_id, seq=cursor.seq), limit=limit
        )
        resp = await _call(
            self._meta.ListChanges(req, metadata=self._md, timeout=self.config.timeout)
        )
        return (
            [Change.from_pb(c) for c in resp.changes],
            Cursor(resp.cursor.namespace_id, resp.cursor.seq),
            resp.has_more,
            resp.resync_required,
        )

    async def subscribe(
        self, cursors: builtins.list[Cursor] | None = None, *, heartbeats: bool = False
    ) -> AsyncIterator[Change | None]:
        """Changes from the cursors on, then live (``changes``, resumed whenever the stream
        ends or the node is away). With ``heartbeats``, yields None on each heartbeat."""
        known = {c.namespace_id: c.seq for c in cursors or []}
        while True:
            try:
                async for ev in self.changes(lambda: known, heartbeats=heartbeats):
                    if ev.change is not None:
                        known[ev.change.namespace_id] = ev.change.seq
                        yield ev.change
                    elif ev.kind == "heartbeat":
                        yield None
                    elif ev.kind in ("removed", "resync"):
                        known.pop(ev.namespace_id, None)
            except UnavailableError:
                pass
            await asyncio.sleep(0.2)


def _reupload_hashes(e: grpc.aio.AioRpcError) -> set[bytes]:
    """Chunks the metanode asks to upload again (their receipts outlived the chunks)."""
    detail = error_detail(e, errors_pb2.ReuploadChunks)
    return set() if detail is None else {bytes(h) for h in detail.hashes}


def _chunks_of(local: Path, wanted: set[bytes]) -> list[Chunk]:
    """The chunks of a file whose hashes are in ``wanted`` (one streaming pass)."""
    with local.open("rb") as f:
        return list({c.hash: c for c in iter_chunks(f) if c.hash in wanted}.values())
