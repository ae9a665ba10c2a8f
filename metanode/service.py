"""The Metadata gRPC service: validates at the edge, runs one transaction per call, adapts to protos."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from metanode import files, users
from metanode.db import Conn, Database
from metanode.model import ChangeRow, ChunkRef, CommitSpec, EntryRow, Kind, Receipt
from metanode.notify import Notifier
from tessera.auth import Signer
from tessera.chunking import MAX_CHUNK
from tessera.errors import InvalidArgument, PermissionDenied, TesseraError, Unauthenticated
from tessera.membership import Watcher
from tessera.paths import InvalidPath, normalize_path
from tessera.pb import common_pb2, meta_pb2, meta_pb2_grpc
from tessera.rpc import current_principal

log = logging.getLogger(__name__)

T = TypeVar("T")
ON_BEHALF_KEY = "x-tessera-user"
MAX_BLOCKLIST = 200_000
MAX_BATCH = 5_000
MAX_NEED = 100_000


def entry_pb(e: EntryRow) -> common_pb2.Entry:
    return common_pb2.Entry(
        namespace_id=str(e.ns_id),
        file_id=str(e.file_id),
        path=e.path,
        name=e.name,
        kind=common_pb2.ENTRY_KIND_FOLDER if e.kind is Kind.FOLDER else common_pb2.ENTRY_KIND_FILE,
        size=e.size,
        revision_id=str(e.rev_id),
        modified_at_us=e.modified_at_us,
        deleted=e.deleted,
        device_id=e.device_id,
        seq=e.seq,
        client_mtime_ns=e.client_mtime_ns,
        content_hash=e.content_hash,
    )


def change_pb(c: ChangeRow) -> common_pb2.Change:
    return common_pb2.Change(
        namespace_id=str(c.ns_id),
        seq=c.seq,
        op=int(c.op),
        entry=entry_pb(c.entry),
        old_path=c.old_path,
    )


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{what} {value!r} is not a valid id") from None


def _path(value: str, *, allow_root: bool = False) -> str:
    try:
        return normalize_path(value, allow_root=allow_root)
    except InvalidPath as e:
        raise InvalidArgument(str(e)) from None


def _node_info(rec: Any, up: bool, kind: str) -> common_pb2.NodeInfo:
    return common_pb2.NodeInfo(
        id=rec.node_id,
        kind=kind,
        address=rec.address,
        zone=rec.zone,
        up=up,
        weight=rec.weight,
        metrics_address=rec.metrics_address,
    )


class MetadataService(meta_pb2_grpc.MetadataServicer):
    """One method per RPC; all SQL lives in metanode.files and metanode.users."""

    def __init__(
        self,
        db: Database,
        signer: Signer,
        *,
        token_ttl: int,
        ticket_ttl: int,
        block_watch: Watcher | None,
        sync_watch: Watcher | None,
        notifier: Notifier,
        replicas: int = 3,
        write_quorum: int = 2,
    ) -> None:
        self.db = db
        self.signer = signer
        self.token_ttl = token_ttl
        self.ticket_ttl = ticket_ttl
        self.block_watch = block_watch
        self.sync_watch = sync_watch
        self.notifier = notifier
        self.replicas = replicas
        self.write_quorum = write_quorum

    # -- helpers --------------------------------------------------------------------------
    def _caller(self, context: grpc.aio.ServicerContext) -> uuid.UUID:
        """The user a call acts for: the token's user, or for a node the x-tessera-user it names."""
        principal = current_principal()
        if principal.is_node:
            for key, value in context.invocation_metadata() or ():
                if key == ON_BEHALF_KEY:
                    return _uuid(str(value), "user")
            raise InvalidArgument(f"node calls must name a user in {ON_BEHALF_KEY}")
        return _uuid(principal.user_id, "user")

    async def _txn(
        self, context: grpc.aio.ServicerContext, fn: Callable[[Conn, uuid.UUID], Awaitable[T]]
    ) -> T:
        """Run ``fn(conn, user_id)`` in one serializable transaction, after the revocation check."""
        principal = current_principal()
        user_id = self._caller(context)

        async def body(conn: Conn) -> T:
            if not principal.is_node and await users.is_revoked(conn, user_id, principal.token_id):
                raise Unauthenticated("token revoked: log in again (tessera login)")
            return await fn(conn, user_id)

        return await self.db.run(body)

    async def _ns(self, conn: Conn, user_id: uuid.UUID, ns: str) -> uuid.UUID:
        if ns:
            return _uuid(ns, "namespace")
        found = await users.fetch_user(conn, user_id=user_id)
        if found is None:
            raise Unauthenticated("unknown user: log in again")
        return found[0].root_ns

    # -- accounts -------------------------------------------------------------------------
    async def Login(
        self, request: meta_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.LoginResponse:
        found = await self.db.run(lambda conn: users.fetch_user(conn, name=request.name))
        if found is None:
            # Spend the same KDF time as for a real user, so timing does not reveal who exists.
            await users.verify_password(await users.hash_password("x" * 16), "not-it")
            raise Unauthenticated("wrong user name or password")
        user, pw_hash = found
        await users.verify_password(pw_hash, request.password)
        token, principal = self.signer.issue_token(
            str(user.user_id), ttl=self.token_ttl, is_admin=user.is_admin
        )
        return meta_pb2.LoginResponse(
            token=token,
            user_id=str(user.user_id),
            root_namespace_id=str(user.root_ns),
            expires_at=principal.expires_at,
        )

    async def WhoAmI(
        self, request: meta_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.WhoAmIResponse:
        found = await self._txn(context, lambda conn, uid: users.fetch_user(conn, user_id=uid))
        if found is None:
            raise Unauthenticated("unknown user: log in again")
        user = found[0]
        return meta_pb2.WhoAmIResponse(
            user_id=str(user.user_id),
            name=user.name,
            root_namespace_id=str(user.root_ns),
            is_admin=user.is_admin,
        )

    async def CreateUser(
        self, request: meta_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CreateUserResponse:
        principal = current_principal()
        if not (principal.is_node or principal.is_admin):
            raise PermissionDenied("only an admin can add users")
        name = users.check_user_name(request.name)
        pw_hash = await users.hash_password(request.password)
        user = await self.db.run(
            lambda conn: users.create_user(conn, name, pw_hash, is_admin=request.is_admin)
        )
        return meta_pb2.CreateUserResponse(
            user_id=str(user.user_id), root_namespace_id=str(user.root_ns)
        )

    async def RevokeToken(
        self, request: meta_pb2.RevokeTokenRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.RevokeTokenResponse:
        principal = current_principal()
        if principal.is_node:
            raise InvalidArgument("nodes have no token to revoke")
        token_id = request.token_id or principal.token_id
        await self._txn(
            context, lambda conn, uid: users.revoke(conn, uid, token_id, principal.expires_at)
        )
        return meta_pb2.RevokeTokenResponse()

    # -- cluster ----------------------------------------------------------------------------
    def _cluster_info(self) -> meta_pb2.ClusterInfo:
        info = meta_pb2.ClusterInfo(max_chunk_size=MAX_CHUNK)
        if self.block_watch is not None:
            view = self.block_watch.view
            ring = view.ring()
            info.block_ring.CopyFrom(
                common_pb2.RingInfo(
                    revision=view.revision,
                    vnodes=ring.vnodes,
                    replicas=self.replicas,
                    write_quorum=self.write_quorum,
                    nodes=[
                        _node_info(n, n.node_id in view.alive, "block")
                        for n in sorted(view.nodes.values(), key=lambda n: n.node_id)
                    ],
                )
            )
        if self.sync_watch is not None:
            view = self.sync_watch.view
            info.sync_nodes.extend(
                _node_info(n, n.node_id in view.alive, "sync")
                for n in sorted(view.nodes.values(), key=lambda n: n.node_id)
            )
        return info

    async def GetClusterInfo(
        self, request: meta_pb2.GetClusterInfoRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ClusterInfo:
        return self._cluster_info()

    async def GetStatus(
        self, request: meta_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ClusterStatus:
        principal = current_principal()
        if not (principal.is_node or principal.is_admin):
            raise PermissionDenied("only an admin can see the cluster status")
        status = meta_pb2.ClusterStatus(
            cluster=self._cluster_info(),
            etcd_ok=self.block_watch is not None and self.block_watch.view.revision > 0,
        )

        async def counts(conn: Conn) -> tuple[str, int, int]:
            version = (await (await conn.execute("SELECT version()")).fetchone())[0]
            n_users = (await (await conn.execute("SELECT count(*) FROM users")).fetchone())[0]
            n_files = (
                await (
                    await conn.execute("SELECT count(*) FROM files WHERE NOT deleted AND kind = 1")
                ).fetchone()
            )[0]
            return version, n_users, n_files

        try:
            version, status.users, status.files = await self.db.run(counts)
            status.database_ok, status.database_version = True, version.split(" on ")[0]
        except TesseraError as e:
            status.database_ok, status.database_version = False, e.message
        return status

    # -- files ------------------------------------------------------------------------------
    async def NeedChunks(
        self, request: meta_pb2.NeedChunksRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.NeedChunksResponse:
        if len(request.hashes) > MAX_NEED:
            raise InvalidArgument(f"at most {MAX_NEED} hashes per NeedChunks call")
        for h in request.hashes:
            if len(h) != 32:
                raise InvalidArgument("chunk hashes are 32-byte SHA-256 digests")
        missing = await self._txn(
            context, lambda conn, uid: files.need_chunks(conn, uid, list(request.hashes))
        )
        return meta_pb2.NeedChunksResponse(missing=missing)

    def _spec(self, req: meta_pb2.CommitRequest, ns_id: uuid.UUID) -> CommitSpec:
        if len(req.blocklist.chunks) > MAX_BLOCKLIST:
            raise InvalidArgument(f"a blocklist has at most {MAX_BLOCKLIST} chunks")
        chunks = []
        for c in req.blocklist.chunks:
            if len(c.hash) != 32 or not 0 < c.size <= MAX_CHUNK:
                raise InvalidArgument(
                    "each chunk needs a 32-byte SHA-256 hash and a size from 1 byte to 4 MiB"
                )
            chunks.append(ChunkRef(bytes(c.hash), c.size))
        receipts = [
            Receipt(bytes(r.hash), r.size, r.user_id, r.expires_at, bytes(r.signature))
            for r in req.receipts
        ]
        parent = _uuid(req.parent_revision, "parent revision") if req.parent_revision else None
        return CommitSpec(
            ns_id,
            _path(req.path),
            parent,
            chunks,
            receipts,
            req.device_id,
            req.operation_id,
            req.client_mtime_ns,
        )

    async def _commit_one(
        self, conn: Conn, user_id: uuid.UUID, req: meta_pb2.CommitRequest
    ) -> EntryRow:
        ns_id = await self._ns(conn, user_id, req.namespace_id)
        spec = self._spec(req, ns_id)
        if spec.device_id and spec.op_id:
            prior = await self._idempotent_result(conn, user_id, spec)
            if prior is not None:
                return prior
        entry = await files.commit(conn, user_id, spec, self.signer)
        if spec.device_id and spec.op_id:
            await conn.execute(
                "INSERT INTO idempotency (user_id, device_id, op_id, outcome) VALUES (%s, %s, %s, %s)",
                (user_id, spec.device_id, spec.op_id, json.dumps(_entry_json(entry)).encode()),
            )
        return entry

    @staticmethod
    async def _idempotent_result(
        conn: Conn, user_id: uuid.UUID, spec: CommitSpec
    ) -> EntryRow | None:
        row = await (
            await conn.execute(
                "SELECT outcome FROM idempotency WHERE user_id = %s AND device_id = %s AND op_id = %s",
                (user_id, spec.device_id, spec.op_id),
            )
        ).fetchone()
        return _entry_from_json(json.loads(bytes(row[0]))) if row else None

    async def Commit(
        self, request: meta_pb2.CommitRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CommitResponse:
        entry = await self._txn(context, lambda conn, uid: self._commit_one(conn, uid, request))
        self.notifier.changed(entry.ns_id, entry.seq)
        return meta_pb2.CommitResponse(entry=entry_pb(entry))

    async def CommitBatch(
        self, request: meta_pb2.CommitBatchRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CommitBatchResponse:
        if len(request.commits) > MAX_BATCH:
            raise InvalidArgument(f"a batch has at most {MAX_BATCH} commits")

        async def body(conn: Conn, uid: uuid.UUID) -> list[meta_pb2.CommitResult]:
            results = []
            for req in request.commits:
                try:
                    async with (
                        conn.transaction()
                    ):  # a savepoint: one bad entry does not undo the others
                        entry = await self._commit_one(conn, uid, req)
                    results.append(meta_pb2.CommitResult(entry=entry_pb(entry)))
                except TesseraError as e:
                    head = dict(e.trailers).get("tessera-head-revision", "")
                    results.append(
                        meta_pb2.CommitResult(
                            code=e.code.value[0], message=e.message, head_revision=head
                        )
                    )
            return results

        results = await self._txn(context, body)
        for r in results:
            if r.code == 0:
                self.notifier.changed(uuid.UUID(r.entry.namespace_id), r.entry.seq)
        return meta_pb2.CommitBatchResponse(results=results)

    async def MakeFolder(
        self, request: meta_pb2.MakeFolderRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CommitResponse:
        path = _path(request.path)

        async def body(conn: Conn, uid: uuid.UUID) -> EntryRow:
            return await files.make_folder(
                conn, uid, await self._ns(conn, uid, request.namespace_id), path, request.device_id
            )

        entry = await self._txn(context, body)
        self.notifier.changed(entry.ns_id, entry.seq)
        return meta_pb2.CommitResponse(entry=entry_pb(entry))

    async def Stat(
        self, request: meta_pb2.StatRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Entry:
        path = _path(request.path)

        async def body(conn: Conn, uid: uuid.UUID) -> EntryRow:
            ns = await self._ns(conn, uid, request.namespace_id)
            await files.require_role(conn, uid, ns, write=False)
            return await files.stat(conn, ns, path)

        return entry_pb(await self._txn(context, body))

    async def List(
        self, request: meta_pb2.ListRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListResponse:
        path = _path(request.path, allow_root=True)

        async def body(conn: Conn, uid: uuid.UUID) -> tuple[list[EntryRow], str]:
            ns = await self._ns(conn, uid, request.namespace_id)
            await files.require_role(conn, uid, ns, write=False)
            return await files.list_folder(
                conn,
                ns,
                path,
                limit=request.limit,
                after=request.page_token,
                include_deleted=request.include_deleted,
            )

        entries, token = await self._txn(context, body)
        return meta_pb2.ListResponse(entries=[entry_pb(e) for e in entries], next_page_token=token)

    async def GetFile(
        self, request: meta_pb2.GetFileRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.GetFileResponse:
        path = _path(request.path)
        rev = _uuid(request.revision_id, "revision") if request.revision_id else None

        async def body(conn: Conn, uid: uuid.UUID) -> Any:
            ns = await self._ns(conn, uid, request.namespace_id)
            await files.require_role(conn, uid, ns, write=False)
            return await files.get_file(conn, ns, path, rev), uid

        version, uid = await self._txn(context, body)
        hashes = list(dict.fromkeys(c.hash for c in version.chunks))
        expires_at, sig = self.signer.sign_ticket(str(uid), hashes, self.ticket_ttl)
        return meta_pb2.GetFileResponse(
            entry=entry_pb(version.entry),
            blocklist=common_pb2.Blocklist(
                chunks=[common_pb2.ChunkRef(hash=c.hash, size=c.size) for c in version.chunks]
            ),
            ticket=common_pb2.ReadTicket(
                user_id=str(uid), hashes=hashes, expires_at=expires_at, signature=sig
            ),
        )

    async def ListNamespaces(
        self, request: meta_pb2.ListNamespacesRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListNamespacesResponse:
        rows = await self._txn(context, lambda conn, uid: files.list_namespaces(conn, uid))
        return meta_pb2.ListNamespacesResponse(
            namespaces=[
                meta_pb2.NamespaceInfo(
                    namespace_id=str(r.ns_id),
                    mount_path=r.mount_path,
                    role=int(r.role),
                    head_seq=r.head_seq,
                    oldest_seq=r.oldest_seq,
                )
                for r in rows
            ]
        )

    async def ListChanges(
        self, request: meta_pb2.ListChangesRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListChangesResponse:
        cursor = request.cursor

        async def body(conn: Conn, uid: uuid.UUID) -> Any:
            ns = await self._ns(conn, uid, cursor.namespace_id)
            await files.require_role(conn, uid, ns, write=False)
            return ns, await files.list_changes(conn, ns, cursor.seq, request.limit)

        ns, (changes, more, resync, head) = await self._txn(context, body)
        last = changes[-1].seq if changes else (head if resync else cursor.seq)
        return meta_pb2.ListChangesResponse(
            changes=[change_pb(c) for c in changes],
            has_more=more,
            resync_required=resync,
            cursor=common_pb2.Cursor(namespace_id=str(ns), seq=last),
        )


def _entry_json(e: EntryRow) -> dict[str, Any]:
    return {
        "ns": str(e.ns_id),
        "file": str(e.file_id),
        "path": e.path,
        "kind": int(e.kind),
        "size": e.size,
        "rev": str(e.rev_id),
        "at": e.modified_at_us,
        "deleted": e.deleted,
        "seq": e.seq,
        "device": e.device_id,
        "mtime": e.client_mtime_ns,
        "hash": e.content_hash.hex(),
    }


def _entry_from_json(d: dict[str, Any]) -> EntryRow:
    return EntryRow(
        uuid.UUID(d["ns"]),
        uuid.UUID(d["file"]),
        d["path"],
        Kind(d["kind"]),
        d["size"],
        uuid.UUID(d["rev"]),
        d["at"],
        d["deleted"],
        d["seq"],
        d["device"],
        d["mtime"],
        bytes.fromhex(d["hash"]),
    )
