"""The Metadata service's reads: entries, files, history, members, namespaces and journals."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import grpc

from metanode import edits, files, journal, permissions, sharing
from metanode.db import Conn
from metanode.model import EntryRow, FileVersion, MemberRow
from metanode.rpcbase import Handlers, change_pb, entry_pb, opt_uuid, parse_path
from tessera.errors import FailedPrecondition, InvalidArgument, TesseraError
from tessera.pb import common_pb2, meta_pb2

log = logging.getLogger(__name__)

MAX_GET_FILES = 1000  # files of one GetFiles call


def _member_pb(m: MemberRow) -> meta_pb2.Member:
    return meta_pb2.Member(
        user_id=str(m.user_id), user_name=m.name, role=int(m.role), namespace_id=str(m.ns_id)
    )


class ReadRpcs(Handlers):
    """Stat, List, GetFile, GetFiles, History, ListMembers, ListNamespaces, ListChanges."""

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
        if request.ticket_for:  # a narrow ticket (delta bases)
            wanted = set(request.ticket_for)
            hashes = [h for h in hashes if h in wanted]
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

    async def GetFiles(
        self, request: meta_pb2.GetFilesRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.GetFilesResponse:
        if len(request.files) > MAX_GET_FILES:
            raise InvalidArgument(
                f"GetFiles takes at most {MAX_GET_FILES} files, got {len(request.files)}"
            )
        asked = [
            (f.namespace_id, parse_path(f.path), opt_uuid(f.revision_id, "revision"))
            for f in request.files
        ]

        async def body(conn: Conn, uid: uuid.UUID) -> Any:
            out: list[FileVersion | TesseraError] = []
            for ns, path, rev in asked:
                try:
                    t = await self._resolve(conn, uid, ns, path, into_mount=True)
                    await permissions.require_role(conn, uid, t.ns_id, write=False, path=path)
                    if not t.path:
                        raise FailedPrecondition(f"{path} is a folder")
                    out.append(await files.get_file(conn, t.ns_id, t.path, rev))
                except TesseraError as e:  # reads only: the transaction goes on
                    out.append(e)
            return out, uid

        found, uid = await self._txn(context, body)
        results, hashes = [], []
        for v in found:
            if isinstance(v, TesseraError):
                results.append(meta_pb2.GetFileResult(code=v.code.value[0], message=v.message))
                continue
            hashes.extend(c.hash for c in v.chunks)
            results.append(
                meta_pb2.GetFileResult(
                    entry=entry_pb(v.entry),
                    blocklist=common_pb2.Blocklist(
                        chunks=[common_pb2.ChunkRef(hash=c.hash, size=c.size) for c in v.chunks]
                    ),
                )
            )
        named = list(dict.fromkeys(hashes))
        expires_at, sig = self.signer.sign_ticket(str(uid), named, self.ticket_ttl)
        ticket = common_pb2.ReadTicket(
            user_id=str(uid), hashes=named, expires_at=expires_at, signature=sig
        )
        return meta_pb2.GetFilesResponse(results=results, ticket=ticket)

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
