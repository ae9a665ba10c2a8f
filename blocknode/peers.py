"""Channels to the other block nodes: one grpc.aio channel per peer, with node credentials."""

from __future__ import annotations

import contextlib
from pathlib import Path

import grpc

from tessera.auth import Signer
from tessera.config import BlockConfig
from tessera.ring import Member
from tessera.rpc import auth_metadata, channel_options


class Peers:
    """One channel per peer node, redialled when the peer's advertised address changes."""

    def __init__(self, cfg: BlockConfig, signer: Signer, node_id: str) -> None:
        self._options = channel_options(cfg.max_message_bytes)
        self._creds: grpc.ChannelCredentials | None = None
        if cfg.tls_ca or cfg.tls_cert:
            ca = Path(cfg.tls_ca).read_bytes() if cfg.tls_ca else None
            self._creds = grpc.ssl_channel_credentials(root_certificates=ca)
        self.metadata = auth_metadata(signer.node_token(node_id))
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}
        self._retired: list[grpc.aio.Channel] = []

    def channel(self, member: Member) -> grpc.aio.Channel:
        """The channel to a peer, dialling (or redialling) its advertised address."""
        known = self._channels.get(member.node_id)
        if known and known[0] == member.address:
            return known[1]
        if known:
            self._retired.append(known[1])  # calls in flight on it may finish; closed at stop
        if self._creds is not None:
            channel = grpc.aio.secure_channel(member.address, self._creds, options=self._options)
        else:
            channel = grpc.aio.insecure_channel(member.address, options=self._options)
        self._channels[member.node_id] = (member.address, channel)
        return channel

    async def close(self) -> None:
        """Close every channel."""
        channels = [c for _, c in self._channels.values()] + self._retired
        self._channels.clear()
        self._retired.clear()
        for channel in channels:
            with contextlib.suppress(Exception):
                await channel.close(grace=1.0)
