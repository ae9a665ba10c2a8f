"""The mutating Metadata RPCs: commits, folders, deletes, moves, restores, shares and GC.

Each validates its input at the edge, runs one serializable transaction, honours the
idempotency key (device_id, operation_id) when the request carries one, and notifies the
sync nodes of the namespaces it changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from metanode import chunks, commits, edits, files, idempotency, permissions, sharing
from metanode.db import Conn
from metanode.idempotency import entry_from_json, entry_to_json
from metanode.model import ChunkRef, CommitSpec, EntryRow, Receipt, Role
from metanode.rpcbase import Handlers, entry_pb, opt_uuid, parse_path, parse_uuid
from metanode.txcache import TxCache, cached
from tessera.chunking import MAX_CHUNK
from tessera.errors import (
    FailedPrecondition,
    InvalidArgument,
    TesseraError,
    Unavailable,
)
from tessera.pb import meta_pb2

T = TypeVar("T")
MAX_BLOCKLIST = 200_000
MAX_BATCH = 5_000
MAX_NEED = 100_000
HASH_LEN = 32


class WriteRpcs(Handlers):
    """Mixin of MetadataService with every RPC that changes something."""

    # -- chunks and commits -----------------------------------------------------------------
    async def NeedChunks(
        self, request: meta_pb2.NeedChunksRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.NeedChunksResponse:
        if len(request.hashes) > MAX_NEED:
            raise InvalidArgument(f"at most {MAX_NEED} hashes per NeedChunks call")
        for h in request.hashes:
            if len(h) != HASH_LEN:
                raise InvalidArgument("chunk hashes are 32-byte SHA-256 digests")
        missing = await self._write_txn(
            context, lambda conn, uid: chunks.need_chunks(conn, uid, list(request.hashes))
        )
        return meta_pb2.NeedChunksResponse(missing=missing)

    @staticmethod
    def _spec(
        req: meta_pb2.CommitRequest, ns_id: uuid.UUID, path: str, present: frozenset[bytes]
    ) -> CommitSpec:
        if len(req.blocklist.chunks) > MAX_BLOCKLIST:
            raise InvalidArgument(f"a blocklist has at most {MAX_BLOCKLIST} chunks")
        chunk_list = []
        for c in req.blocklist.chunks:
            if len(c.hash) != HASH_LEN or not 0 < c.size <= MAX_CHUNK:
                raise InvalidArgument(
                    "each chunk needs a 32-byte SHA-256 hash and a size from 1 byte to 4 MiB"
                )
            chunk_list.append(ChunkRef(bytes(c.hash), c.size))
        receipts = [
            Receipt(bytes(r.hash), r.size, r.user_id, r.expires_at, bytes(r.signature))
            for r in req.receipts
        ]
        parent = opt_uuid(req.parent_revision, "parent revision")
        return CommitSpec(
            ns_id,
            path,
            parent,
            chunk_list,
            receipts,
            req.device_id,
            req.operation_id,
            req.client_mtime_ns,
            present,
            opt_uuid(req.parent_folder_id, "parent folder"),
            req.executable,
        )

    async def _commit_one(
        self,
        conn: Conn,
        user_id: uuid.UUID,
        req: meta_pb2.CommitRequest,
        present: frozenset[bytes],
        cache: TxCache,
    ) -> EntryRow:
        path = parse_path(req.path)
        self._spec(req, uuid.UUID(int=0), path, present)  # validate before touching the database
        prior = await idempotency.recall(
            conn, user_id, req.device_id, req.operation_id, "commit", cache
        )
        if prior is not None:
            return entry_from_json(prior)
        target = await sharing.resolve(
            conn,
            user_id,
            opt_uuid(req.namespace_id, "namespace"),
            path,
            into_mount=True,
            cache=cache,
        )
        if not target.path:
            raise FailedPrecondition(f"{path} is a shared folder")
        spec = self._spec(req, target.ns_id, target.path, present)
        entry = await commits.commit(conn, user_id, spec, self.signer, cache)
        await idempotency.remember(
            conn, user_id, req.device_id, req.operation_id, "commit", entry_to_json(entry), cache
        )
        return entry

    async def _proving(self, fn: Callable[[frozenset[bytes]], Awaitable[T]]) -> T:
        """Run ``fn(present)``; when it needs proof that GC-tombstoned chunks were uploaded again,
        ask the block nodes and run it once more."""
        present: frozenset[bytes] = frozenset()
        for _ in range(3):
            try:
                return await fn(present)
            except chunks.NeedProof as e:
                found = await self.collector.cleaner.present(e.hashes) if self.collector else set()
                gone = [h for h in e.hashes if h not in found]
                if gone:
                    raise chunks.tombstone_error(gone) from None
                present = present | frozenset(found)
        raise Unavailable("chunks keep being garbage-collected under this commit: try again")

    async def Commit(
        self, request: meta_pb2.CommitRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CommitResponse:
        async def body(conn: Conn, uid: uuid.UUID, present: frozenset[bytes]) -> EntryRow:
            async with cached(conn) as cache:
                return await self._commit_one(conn, uid, request, present, cache)

        entry = await self._proving(
            lambda present: self._write_txn(context, lambda conn, uid: body(conn, uid, present))
        )
        self._notify([(entry.ns_id, entry.seq)])
        self.db.file_commits.inc()
        return meta_pb2.CommitResponse(entry=entry_pb(entry))

    async def CommitBatch(
        self, request: meta_pb2.CommitBatchRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CommitBatchResponse:
        if len(request.commits) > MAX_BATCH:
            raise InvalidArgument(
                f"a batch has at most {MAX_BATCH} commits, got {len(request.commits)}"
            )

        async def body(
            conn: Conn, uid: uuid.UUID, present: frozenset[bytes]
        ) -> list[meta_pb2.CommitResult]:
            results = []
            async with cached(conn) as cache:
                await chunks.prefetch(
                    conn, uid, [c.hash for r in request.commits for c in r.blocklist.chunks], cache
                )
                await idempotency.prefetch(
                    conn, uid, [(r.device_id, r.operation_id) for r in request.commits], cache
                )
                for req in request.commits:
                    writes = cache.writes
                    try:
                        entry = await self._commit_one(conn, uid, req, present, cache)
                        results.append(meta_pb2.CommitResult(entry=entry_pb(entry)))
                    except TesseraError as e:
                        # commits.commit checks everything before it writes, so a refused entry
                        # left nothing behind; if it ever did, fail the whole batch instead.
                        if cache.writes != writes:
                            raise
                        head = dict(e.trailers).get("tessera-head-revision", "")
                        results.append(
                            meta_pb2.CommitResult(
                                code=e.code.value[0], message=e.message, head_revision=head
                            )
                        )
            return results

        results = await self._proving(
            lambda present: self._write_txn(context, lambda conn, uid: body(conn, uid, present))
        )
        self._notify((uuid.UUID(r.entry.namespace_id), r.entry.seq) for r in results if r.code == 0)
        self.db.file_commits.inc(sum(r.code == 0 for r in results))
        return meta_pb2.CommitBatchResponse(results=results)

    # -- tree changes ----------------------------------------------------------------------
    async def _entry_op(
        self,
        context: grpc.aio.ServicerContext,
        kind: str,
        device_id: str,
        op_id: str,
        fn: Callable[[Conn, uuid.UUID], Awaitable[EntryRow | edits.Deletion]],
    ) -> meta_pb2.CommitResponse:
        """One idempotent change returning an entry (mkdir, delete, move, restore), and for a
        folder delete how many entries inside it were kept."""

        async def body(conn: Conn, uid: uuid.UUID) -> tuple[edits.Deletion, bool]:
            prior = await idempotency.recall(conn, uid, device_id, op_id, kind)
            if prior is not None:
                return edits.Deletion(entry_from_json(prior), int(prior.get("kept", 0))), False
            out = await fn(conn, uid)
            done = out if isinstance(out, edits.Deletion) else edits.Deletion(out, 0, out.seq)
            outcome = entry_to_json(done.entry) | ({"kept": done.kept} if done.kept else {})
            await idempotency.remember(conn, uid, device_id, op_id, kind, outcome)
            return done, True

        done, fresh = await self._write_txn(context, body)
        if fresh and done.last_seq:
            self._notify([(done.entry.ns_id, done.last_seq)])
        return meta_pb2.CommitResponse(entry=entry_pb(done.entry), kept=done.kept)

    async def MakeFolder(
        self, request: meta_pb2.MakeFolderRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CommitResponse:
        path = parse_path(request.path)
        parent_folder = opt_uuid(request.parent_folder_id, "parent folder")

        async def fn(conn: Conn, uid: uuid.UUID) -> EntryRow:
            target = await self._resolve(conn, uid, request.namespace_id, path, into_mount=True)
            if not target.path:  # the mount point itself: it exists
                return await files.stat(conn, target.root, path)
            return await commits.make_folder(
                conn, uid, target.ns_id, target.path, request.device_id, parent_folder
            )

        return await self._entry_op(context, "mkdir", request.device_id, request.operation_id, fn)

    async def Delete(
        self, request: meta_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CommitResponse:
        path = parse_path(request.path)
        parent = opt_uuid(request.parent_revision, "parent revision")

        seen = request.seen_seq if request.HasField("seen_seq") else None

        async def fn(conn: Conn, uid: uuid.UUID) -> edits.Deletion:
            target = await self._resolve(conn, uid, request.namespace_id, path, into_mount=False)
            return await edits.delete(
                conn, uid, target.ns_id, target.path, parent, request.device_id, seen
            )

        return await self._entry_op(context, "delete", request.device_id, request.operation_id, fn)

    async def Move(
        self, request: meta_pb2.MoveRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CommitResponse:
        src, dst = parse_path(request.from_path), parse_path(request.to_path)
        parent = opt_uuid(request.parent_revision, "parent revision")

        async def fn(conn: Conn, uid: uuid.UUID) -> EntryRow:
            a = await self._resolve(conn, uid, request.namespace_id, src, into_mount=False)
            b = await self._resolve(conn, uid, request.namespace_id, dst, into_mount=False)
            if a.ns_id != b.ns_id:
                await permissions.require_role(conn, uid, a.ns_id, write=True, path=src)
                raise FailedPrecondition(
                    "moving into or out of a shared folder is not supported: copy, then delete"
                )
            moved, old_path = await edits.move(
                conn, uid, a.ns_id, a.path, b.path, parent, request.device_id
            )
            if a.in_root:
                await sharing.rebase_mounts(conn, uid, a.mounts, old_path, moved.path)
            return moved

        return await self._entry_op(context, "move", request.device_id, request.operation_id, fn)

    async def Restore(
        self, request: meta_pb2.RestoreRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CommitResponse:
        path = parse_path(request.path)
        if not request.revision_id:
            raise InvalidArgument("restore needs a revision id (see the file's history)")
        rev = parse_uuid(request.revision_id, "revision")

        async def fn(conn: Conn, uid: uuid.UUID) -> EntryRow:
            target = await self._resolve(conn, uid, request.namespace_id, path, into_mount=False)
            return await edits.restore(conn, uid, target.ns_id, target.path, rev, request.device_id)

        return await self._entry_op(context, "restore", request.device_id, request.operation_id, fn)

    # -- sharing ---------------------------------------------------------------------------
    async def Share(
        self, request: meta_pb2.ShareRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ShareResponse:
        path = parse_path(request.path, allow_root=bool(request.namespace_id))
        if request.role not in (meta_pb2.ROLE_EDITOR, meta_pb2.ROLE_VIEWER):
            raise InvalidArgument("share as editor or viewer")
        if not request.user_name:
            raise InvalidArgument("name the user to share with")
        role = Role(request.role)

        async def body(conn: Conn, uid: uuid.UUID) -> tuple[str, list[sharing.Notice]]:
            prior = await idempotency.recall(
                conn, uid, request.device_id, request.operation_id, "share"
            )
            if prior is not None:
                return prior["ns"], []
            target = await self._resolve(conn, uid, request.namespace_id, path, into_mount=True)
            ns_id, notices = await sharing.share(
                conn, uid, target, request.user_name, role, request.device_id
            )
            await idempotency.remember(
                conn, uid, request.device_id, request.operation_id, "share", {"ns": str(ns_id)}
            )
            return str(ns_id), notices

        ns, notices = await self._write_txn(context, body)
        self._notify(notices, membership=True)
        return meta_pb2.ShareResponse(shared_namespace_id=ns)

    async def Unshare(
        self, request: meta_pb2.UnshareRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.UnshareResponse:
        path = parse_path(request.path, allow_root=bool(request.namespace_id))
        if not request.user_name:
            raise InvalidArgument("name the member to remove (your own name to leave)")

        async def body(conn: Conn, uid: uuid.UUID) -> list[sharing.Notice]:
            if (
                await idempotency.recall(
                    conn, uid, request.device_id, request.operation_id, "unshare"
                )
                is not None
            ):
                return []
            target = await self._resolve(conn, uid, request.namespace_id, path, into_mount=True)
            notices = await sharing.unshare(conn, uid, target, request.user_name, request.device_id)
            await idempotency.remember(
                conn, uid, request.device_id, request.operation_id, "unshare", {}
            )
            return notices

        self._notify(await self._write_txn(context, body), membership=True)
        return meta_pb2.UnshareResponse()

    # -- garbage collection ------------------------------------------------------------------
    async def RunGC(
        self, request: meta_pb2.RunGCRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.RunGCResponse:
        await self._require_admin(context, "run the garbage collector")
        if self.collector is None:
            raise Unavailable("this metanode runs no garbage collector")
        retention = (
            request.revision_retention_seconds
            if request.HasField("revision_retention_seconds")
            else None
        )
        grace = request.grace_seconds if request.HasField("grace_seconds") else None
        journal = (
            request.journal_retention_seconds
            if request.HasField("journal_retention_seconds")
            else None
        )
        if any(v is not None and v < 0 for v in (retention, grace, journal)):
            raise InvalidArgument("retention and grace are seconds, not negative")
        stats = await self.collector.run_once(
            retention=retention,
            journal_retention=journal,
            grace=grace,
            ns_id=opt_uuid(request.namespace_id, "namespace"),
        )
        return meta_pb2.RunGCResponse(
            revisions_pruned=stats.revisions_pruned,
            journal_pruned=stats.journal_pruned,
            chunks_deleted=stats.chunks_deleted,
            chunks_referenced=stats.chunks_referenced,
            chunks_waiting=stats.chunks_waiting,
            chunks_failed=stats.chunks_failed,
        )
