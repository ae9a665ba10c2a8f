"""One pool of client channels for every process: a grpc.aio channel per address and security.

Every outgoing call of a node or of the SDK goes through a ``ChannelPool``: the SDK to block
nodes, the metanode to block and sync nodes, the sync node to the metanode, block nodes to
their peers. Channels are dialled with ``open_channel`` (shared options, TLS when the
``ChannelSecurity`` says so) and stubs are cached beside them, so a caller asks for a stub by
address and never holds a channel of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from tessera.rpc import PLAINTEXT, ChannelSecurity, open_channel

StubT = TypeVar("StubT")

DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class ChannelPool:
    """Channels keyed by (address, security), dialled on first use, closed together.

    Args:
        security: How to dial when a call does not say (plaintext or TLS with a CA).
        max_message_bytes: The send/receive limit of every channel of this pool.
        options: Extra channel options (e.g. a faster reconnect backoff for peers).
    """

    def __init__(
        self,
        security: ChannelSecurity = PLAINTEXT,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.security = security
        self._max_message_bytes = max_message_bytes
        self._options = list(options)
        self._channels: dict[tuple[str, ChannelSecurity], grpc.aio.Channel] = {}
        self._stubs: dict[tuple[str, ChannelSecurity, Callable[..., Any]], Any] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def channel(self, address: str, security: ChannelSecurity | None = None) -> grpc.aio.Channel:
        """The channel to ``address`` (dialled now if this pool has none yet)."""
        key = (address, security or self.security)
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = open_channel(
                address,
                key[1],
                max_message_bytes=self._max_message_bytes,
                extra_options=self._options,
            )
        return channel

    def stub(
        self,
        address: str,
        stub_class: Callable[[grpc.aio.Channel], StubT],
        security: ChannelSecurity | None = None,
    ) -> StubT:
        """A stub of ``stub_class`` on the channel to ``address`` (cached with it)."""
        key = (address, security or self.security, stub_class)
        stub = self._stubs.get(key)
        if stub is None:
            stub = self._stubs[key] = stub_class(self.channel(address, security))
        return stub

    def discard(
        self, address: str, *, grace: float | None = None, security: ChannelSecurity | None = None
    ) -> None:
        """Forget the channel to ``address``: the next call redials. Calls in flight on the old
        channel get ``grace`` seconds to finish while it closes in the background."""
        key = (address, security or self.security)
        channel = self._channels.pop(key, None)
        for stub_key in [k for k in self._stubs if k[:2] == key]:
            del self._stubs[stub_key]
        if channel is None:
            return
        task = asyncio.get_running_loop().create_task(channel.close(grace=grace))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def __len__(self) -> int:
        return len(self._channels)

    async def close(self, grace: float | None = None) -> None:
        """Close every channel (and stop background closes of discarded ones)."""
        channels = list(self._channels.values())
        self._channels.clear()
        self._stubs.clear()
        for channel in channels:
            with contextlib.suppress(Exception):
                await channel.close(grace=grace)
        for task in list(self._closing):
            task.cancel()
