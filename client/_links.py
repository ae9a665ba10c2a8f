"""Share links as a visitor without an account sees them: open a link (``OpenLink``, public)
and stream a linked file from the block nodes with the ticket and short-lived read token it
returns."""

from __future__ import annotations

from collections.abc import AsyncIterator

from client._blocks import BlockPool, ring_from_pb
from client._client import ClientConfig
from client._errors import call_rpc as _rpc
from client._recover import read_range
from tessera.pb import meta_pb2, meta_pb2_grpc
from tessera.rpc import auth_metadata, open_channel


class LinkVisitor:
    """One connection to a metanode for anonymous link visits; ``await close()`` when done."""

    def __init__(self, target: str, config: ClientConfig | None = None) -> None:
        self.config = config or ClientConfig()
        self.security = self.config.security()
        self._channel = open_channel(target, self.security)
        self._meta = meta_pb2_grpc.MetadataStub(self._channel)

    async def open(
        self, token: str, *, password: str = "", path: str = "", download: bool = False
    ) -> meta_pb2.OpenLinkResponse:
        """What the link shows at ``path``; with ``download``, a file's blocklist and ticket
        (and the download is counted). NotFoundError for a wrong, expired or revoked token."""
        req = meta_pb2.OpenLinkRequest(token=token, password=password, path=path, download=download)
        return await _rpc(self._meta.OpenLink(req, timeout=self.config.timeout))

    async def read(
        self, opened: meta_pb2.OpenLinkResponse, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` of a file opened with ``download``."""
        md = auth_metadata(opened.read_token)
        info = await _rpc(
            self._meta.GetClusterInfo(
                meta_pb2.GetClusterInfoRequest(), metadata=md, timeout=self.config.timeout
            )
        )
        pool = BlockPool(
            ring_from_pb(info.block_ring),
            opened.read_token,
            max_message_bytes=self.config.max_message_bytes,
            replicas=info.block_ring.replicas or 3,
            security=self.security,
        )
        try:
            async for data in read_range(
                pool, list(opened.blocklist.chunks), opened.ticket, start, end
            ):
                yield data
        finally:
            await pool.close()

    async def close(self) -> None:
        await self._channel.close()
