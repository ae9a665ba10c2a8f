"""The share-link RPCs (``metanode.links``): create, list, revoke, the public OpenLink; and
the list of shared files (``metanode.fileshares``)."""

from __future__ import annotations

import uuid

import grpc

from metanode import files, fileshares, links, users
from metanode.db import Conn
from metanode.model import Kind
from metanode.rpcbase import Handlers, entry_pb, parse_path, parse_uuid
from metanode.service_restore import shown_path
from tessera.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from tessera.paths import InvalidPath, normalize_path
from tessera.pb import common_pb2, meta_pb2

MAX_EXPIRY = 10 * 365 * 86400
MAX_PASSWORD = 1024


def _us(ts: object) -> int:
    return files.us(ts) if ts is not None else 0  # type: ignore[arg-type]


def _link_pb(link: links.LinkRow, path: str, is_folder: bool) -> meta_pb2.ShareLink:
    return meta_pb2.ShareLink(
        link_id=str(link.link_id),
        path=path,
        is_folder=is_folder,
        created_at_us=_us(link.created_at),
        expires_at_us=_us(link.expires_at),
        has_password=bool(link.password_hash),
        downloads=link.downloads,
        last_used_us=_us(link.last_used_at),
        namespace_id=str(link.ns_id),
    )


class LinkRpcs(Handlers):
    """Mixin of MetadataService: CreateLink, ListLinks, RevokeLink, OpenLink, ListSharedFiles."""

    async def CreateLink(
        self, request: meta_pb2.CreateLinkRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.CreateLinkResponse:
        path = parse_path(request.path)
        if not 0 <= request.expires_in_seconds <= MAX_EXPIRY:
            raise InvalidArgument("a link expires in 0 (never) to 10 years, in seconds")
        if len(request.password) > MAX_PASSWORD:
            raise InvalidArgument(f"a link password has at most {MAX_PASSWORD} characters")
        pw_hash = await users.hash_password(request.password) if request.password else ""
        token = links.new_token()

        async def body(conn: Conn, uid: uuid.UUID) -> meta_pb2.ShareLink:
            t = await self._resolve(conn, uid, request.namespace_id, path, into_mount=True)
            link, stored = await links.create(
                conn,
                uid,
                t.ns_id,
                t.path,
                token=token,
                expires_in=request.expires_in_seconds,
                password_hash=pw_hash,
            )
            row = await files.lookup(conn, t.ns_id, stored)
            is_folder = row is not None and row[0].kind is Kind.FOLDER
            return _link_pb(link, shown_path(t, request.namespace_id, stored), is_folder)

        link = await self._write_txn(context, body)
        return meta_pb2.CreateLinkResponse(link=link, token=token)

    async def ListLinks(
        self, request: meta_pb2.ListLinksRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListLinksResponse:
        async def body(conn: Conn, uid: uuid.UUID) -> list[meta_pb2.ShareLink]:
            t = await self._resolve(conn, uid, "", "", into_mount=False)
            out = []
            for link, row, path in await links.list_links(conn, uid):
                shown = path
                if link.ns_id != t.root:
                    shown = next((m.path for m in t.mounts if m.ns_id == link.ns_id), "")
                    shown = f"{shown}/{path}" if shown else path
                is_folder = row is not None and row.kind is Kind.FOLDER
                out.append(_link_pb(link, shown if row else "(deleted)", is_folder))
            return out

        return meta_pb2.ListLinksResponse(links=await self._txn(context, body))

    async def RevokeLink(
        self, request: meta_pb2.RevokeLinkRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.RevokeLinkResponse:
        link_id = parse_uuid(request.link_id, "link")
        await self._write_txn(context, lambda conn, uid: links.revoke(conn, uid, link_id))
        return meta_pb2.RevokeLinkResponse()

    async def ListSharedFiles(
        self, request: meta_pb2.ListSharedFilesRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.ListSharedFilesResponse:
        rows = await self._txn(context, lambda conn, uid: fileshares.list_shared(conn, uid))
        return meta_pb2.ListSharedFilesResponse(
            files=[
                meta_pb2.SharedFile(
                    share_id=str(f.share_id),
                    name=f.name,
                    path=f.path,
                    owner_name=f.owner,
                    role=int(f.role),
                    size=f.size,
                    modified_at_us=f.modified_us,
                    members=[meta_pb2.Member(user_name=n, role=int(r)) for n, r in f.members],
                )
                for f in rows
            ]
        )

    async def OpenLink(
        self, request: meta_pb2.OpenLinkRequest, context: grpc.aio.ServicerContext
    ) -> meta_pb2.OpenLinkResponse:
        """Public: the token is the credential."""
        if not request.token or len(request.token) > 128:
            raise NotFound("no such link (it may have expired or been revoked)")
        try:
            sub = normalize_path(request.path, allow_root=True)
        except InvalidPath:
            raise NotFound("no such file or folder in this link") from None
        link = await self.db.run(lambda conn: links.find(conn, request.token))
        if link.password_hash:
            if not request.password:
                return meta_pb2.OpenLinkResponse(needs_password=True)
            try:
                await users.verify_password(link.password_hash, request.password[:MAX_PASSWORD])
            except Unauthenticated:
                await self.db.run(lambda conn: links.failed(conn, link))
                raise PermissionDenied("wrong password for this link") from None
        opened = await self.db.run(
            lambda conn: links.open_link(conn, link, sub, download=request.download)
        )
        resp = meta_pb2.OpenLinkResponse(
            entry=entry_pb(opened.entry),
            children=[entry_pb(e) for e in opened.children],
            name=opened.name,
        )
        if request.download:
            if opened.row.kind is Kind.FOLDER:
                raise NotFound("a folder is browsed, not downloaded: open its files")
            chunks = await self.db.run(
                lambda conn: files.blocklist_of(
                    conn, link.ns_id, opened.row.file_id, opened.row.head_rev
                )
            )
            hashes = list(dict.fromkeys(c.hash for c in chunks))
            owner = f"link:{link.link_id}"
            expires_at, sig = self.signer.sign_ticket(owner, hashes, self.ticket_ttl)
            resp.read_token = self.signer.issue_token(owner, ttl=self.ticket_ttl)[0]
            resp.blocklist.CopyFrom(
                common_pb2.Blocklist(
                    chunks=[common_pb2.ChunkRef(hash=c.hash, size=c.size) for c in chunks]
                )
            )
            resp.ticket.CopyFrom(
                common_pb2.ReadTicket(
                    user_id=owner, hashes=hashes, expires_at=expires_at, signature=sig
                )
            )
        return resp
