"""The Metadata gRPC service: validates at the edge, runs one transaction per call, adapts to protos.

Accounts, cluster information and every read live here; the RPCs that change something are
in ``service_writes.WriteRpcs``; the shared helpers in ``rpcbase``. All SQL lives in the
``files``, ``edits``, ``sharing``, ``chunks``, ``users`` and ``gc`` modules.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import grpc

from metanode import accounts, edits, files, journal, permissions, sharing, users
from metanode.db import Conn
from metanode.model import EntryRow, MemberRow
from metanode.rpcbase import ON_BEHALF_KEY, change_pb, entry_pb, opt_uuid, parse_path
from metanode.service_accounts import AccountRpcs
from metanode.service_writes import MAX_BATCH, MAX_BLOCKLIST, MAX_NEED, WriteRpcs
from tessera.chunking import MAX_CHUNK
from tessera.errors import (
    FailedPrecondition,
    InvalidArgument,
    TesseraError,
    Unauthenticated,
)
from tessera.pb import common_pb2, meta_pb2, meta_pb2_grpc
from tessera.rpc import current_principal

log = logging.getLogger(__name__)

__all__ = [
    "MAX_BATCH",
    "MAX_BLOCKLIST",
    "MAX_NEED",
    "ON_BEHALF_KEY",
    "MetadataService",
    "change_pb",
    "entry_pb",
]


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


def _member_pb(m: MemberRow) -> meta_pb2.Member:
    return meta_pb2.Member(
        user_id=str(m.user_id), user_name=m.name, role=int(m.role), namespace_id=str(m.ns_id)
    )


class MetadataService(AccountRpcs, WriteRpcs, meta_pb2_grpc.MetadataServicer):
    """One method per RPC."""

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
        device_name = accounts.check_device_name(request.device_name)
        generation = await self.db.run(lambda conn: accounts.generation(conn, user.user_id))
        token, principal = self.signer.issue_token(
            str(user.user_id),
            ttl=self.token_ttl,
            is_admin=user.is_admin,
            token_id=str(uuid.uuid4()),
            generation=generation,
        )
        stored = await self.db.run(
            lambda conn: accounts.add_device(
                conn, user.user_id, principal.token_id, device_name, principal.expires_at
            )
        )
        return meta_pb2.LoginResponse(
            token=token,
            user_id=str(user.user_id),
            root_namespace_id=str(user.root_ns),
            expires_at=principal.expires_at,
            device_id=principal.token_id,
            device_name=stored,
        )

    async def WhoAmI(
        self, request: meta_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.WhoAmIResponse:
        principal = current_principal()

        async def body(conn: Conn, uid: uuid.UUID) -> Any:
            found = await users.fetch_user(conn, user_id=uid)
            devices = [] if principal.is_node else await accounts.list_devices(conn, uid)
            return found, next((d.name for d in devices if d.device_id == principal.token_id), "")

        found, device_name = await self._txn(context, body)
        if found is None:
            raise Unauthenticated("unknown user: log in again")
        user = found[0]
        return meta_pb2.WhoAmIResponse(
            user_id=str(user.user_id),
            name=user.name,
            root_namespace_id=str(user.root_ns),
            is_admin=user.is_admin,
            device_id="" if principal.is_node else principal.token_id,
            device_name=device_name,
            expires_at=principal.expires_at,
        )

    async def CreateUser(
        self, request: meta_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CreateUserResponse:
        await self._require_admin(context, "add users")
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
        expires_at = (
            principal.expires_at
            if token_id == principal.token_id
            else int(time.time()) + self.token_ttl
        )
        await self._revoke_device(context, token_id, expires_at)
        return meta_pb2.RevokeTokenResponse()

    # -- cluster ----------------------------------------------------------------------------
    def _cluster_info(self) -> meta_pb2.ClusterInfo:
        info = meta_pb2.ClusterInfo(max_chunk_size=MAX_CHUNK)
        if self.block_watch is not None:
            view = self.block_watch.view
            params = view.cluster_params  # published in etcd with the ring
            info.block_ring.CopyFrom(
                common_pb2.RingInfo(
                    revision=view.revision,
                    vnodes=params.vnodes,
                    replicas=params.replicas,
                    write_quorum=params.write_quorum,
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
        await self._require_admin(context, "see the cluster status")
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

        if self.blocks is not None:
            # Each under-replicated chunk is counted by exactly one block node (as of its last pass).
            blocks = await self.blocks.node_statuses()
            status.under_replicated_chunks = sum(b.under_replicated for b in blocks)
        try:
            version, status.users, status.files = await self.db.run(counts)
            status.database_ok, status.database_version = True, version.split(" on ")[0]
        except TesseraError as e:
            status.database_ok, status.database_version = False, e.message
        return status

    # -- reads ------------------------------------------------------------------------------
    async def Stat(
        self, request: meta_pb2.StatRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Entry:
        path = parse_path(request.path)

        async def body(conn: Conn, uid: uuid.UUID) -> EntryRow:
            t = await self._resolve(conn, uid, request.namespace_id, path, into_mount=False)
            await permissions.require_role(conn, uid, t.ns_id, write=False, path=path)
            return await files.stat(conn, t.ns_id, t.path)

        return entry_pb(await self._txn(context, body))

    async def List(
        self, request: meta_pb2.ListRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListResponse:
        path = parse_path(request.path, allow_root=True)

        async def body(conn: Conn, uid: uuid.UUID) -> tuple[list[EntryRow], str]:
            t = await self._resolve(conn, uid, request.namespace_id, path, into_mount=True)
            await permissions.require_role(conn, uid, t.ns_id, write=False, path=path)
            return await files.list_folder(
                conn,
                t.ns_id,
                t.path,
                limit=request.limit,
                after=request.page_token,
                include_deleted=request.include_deleted,
            )

        entries, token = await self._txn(context, body)
        return meta_pb2.ListResponse(entries=[entry_pb(e) for e in entries], next_page_token=token)

    async def GetFile(
        self, request: meta_pb2.GetFileRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.GetFileResponse:
        path = parse_path(request.path)
        rev = opt_uuid(request.revision_id, "revision")

        async def body(conn: Conn, uid: uuid.UUID) -> Any:
            t = await self._resolve(conn, uid, request.namespace_id, path, into_mount=True)
            await permissions.require_role(conn, uid, t.ns_id, write=False, path=path)
            if not t.path:
                raise FailedPrecondition(f"{path} is a folder")
            return await files.get_file(conn, t.ns_id, t.path, rev), uid

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

    async def History(
        self, request: meta_pb2.HistoryRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.HistoryResponse:
        path = parse_path(request.path)

        async def body(conn: Conn, uid: uuid.UUID) -> list[EntryRow]:
            t = await self._resolve(conn, uid, request.namespace_id, path, into_mount=False)
            return await edits.history(conn, uid, t.ns_id, t.path, request.limit)

        return meta_pb2.HistoryResponse(
            revisions=[entry_pb(e) for e in await self._txn(context, body)]
        )

    async def ListMembers(
        self, request: meta_pb2.ListMembersRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListMembersResponse:
        path = parse_path(request.path, allow_root=True)

        async def body(conn: Conn, uid: uuid.UUID) -> list[MemberRow]:
            t = await self._resolve(conn, uid, request.namespace_id, path, into_mount=True)
            return await sharing.list_members(conn, uid, t.ns_id, t.path)

        return meta_pb2.ListMembersResponse(
            members=[_member_pb(m) for m in await self._txn(context, body)]
        )

    async def ListNamespaces(
        self, request: meta_pb2.ListNamespacesRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListNamespacesResponse:
        rows = await self._txn(context, lambda conn, uid: sharing.list_namespaces(conn, uid))
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
        ns_arg = opt_uuid(cursor.namespace_id, "namespace")

        async def body(conn: Conn, uid: uuid.UUID) -> Any:
            ns = ns_arg
            if ns is None:
                ns = (await sharing.resolve(conn, uid, None, "", into_mount=False)).root
            await permissions.require_role(conn, uid, ns, write=False)
            return ns, await journal.list_changes(conn, ns, cursor.seq, request.limit)

        ns, (changes, more, resync, head) = await self._txn(context, body)
        last = changes[-1].seq if changes else (head if resync else cursor.seq)
        return meta_pb2.ListChangesResponse(
            changes=[change_pb(c) for c in changes],
            has_more=more,
            resync_required=resync,
            cursor=common_pb2.Cursor(namespace_id=str(ns), seq=last),
        )
