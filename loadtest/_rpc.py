"""Calls the harness needs beyond the SDK, over the generated stubs, and SDK adapters.

The SDK grows (``delete``, ``move``, ``share`` are being added); the harness uses an SDK method
when it exists and takes the arguments the harness passes, and otherwise makes the same call on
the wire itself. Either way errors come back as ``client.SyncError`` with ``.status``.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from client import Client, Entry, SyncError
from tessera.pb import meta_pb2, meta_pb2_grpc
from tessera.rpc import auth_metadata, channel_options

ROLES = {"editor": meta_pb2.ROLE_EDITOR, "viewer": meta_pb2.ROLE_VIEWER}


@dataclass(frozen=True)
class NamespaceHead:
    """One namespace a user can see, and where its journal is."""

    namespace_id: str
    mount_path: str
    head_seq: int


def _error(e: grpc.aio.AioRpcError) -> SyncError:
    return SyncError(e.details() or e.code().name, e.code())


class Extras:
    """A user's own channel to the metanode for calls the SDK lacks."""

    def __init__(self, endpoint: str, token: str, *, timeout: float = 30.0) -> None:
        self._channel = grpc.aio.insecure_channel(endpoint, options=channel_options(8 << 20))
        self._meta = meta_pb2_grpc.MetadataStub(self._channel)
        self._md = auth_metadata(token)
        self._timeout = timeout

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Callable[..., Awaitable[Any]], request: Any) -> Any:
        try:
            return await method(request, metadata=self._md, timeout=self._timeout)
        except grpc.aio.AioRpcError as e:
            raise _error(e) from None

    async def namespaces(self) -> list[NamespaceHead]:
        """Every namespace the user can see, with its journal head."""
        resp = await self._call(self._meta.ListNamespaces, meta_pb2.ListNamespacesRequest())
        return [NamespaceHead(n.namespace_id, n.mount_path, n.head_seq) for n in resp.namespaces]

    async def share(self, path: str, user_name: str, role: str) -> str:
        """Share a folder of the caller's root; returns the shared namespace's id."""
        req = meta_pb2.ShareRequest(path=path, user_name=user_name, role=ROLES[role])
        return str((await self._call(self._meta.Share, req)).shared_namespace_id)

    async def delete(self, path: str, *, namespace_id: str, device_id: str) -> Entry:
        req = meta_pb2.DeleteRequest(
            namespace_id=namespace_id,
            path=path,
            device_id=device_id,
            operation_id=uuid.uuid4().hex,
        )
        return Entry.from_pb((await self._call(self._meta.Delete, req)).entry)

    async def move(self, src: str, dst: str, *, namespace_id: str, device_id: str) -> Entry:
        req = meta_pb2.MoveRequest(
            namespace_id=namespace_id,
            from_path=src,
            to_path=dst,
            device_id=device_id,
            operation_id=uuid.uuid4().hex,
        )
        return Entry.from_pb((await self._call(self._meta.Move, req)).entry)


def sdk_method(client: Client, name: str, *needs: str) -> Callable[..., Awaitable[Any]] | None:
    """``client.<name>`` if the SDK has it and it takes the keyword arguments ``needs``."""
    fn = getattr(client, name, None)
    if fn is None or not callable(fn):
        return None
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    has_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not has_kwargs and any(n not in params for n in needs):
        return None
    return fn  # type: ignore[no-any-return]


def entry_of(result: Any) -> Entry | None:
    """The Entry an SDK call returned, whatever it wrapped it in."""
    if isinstance(result, Entry):
        return result
    inner = getattr(result, "entry", None)
    return inner if isinstance(inner, Entry) else None


async def share(
    client: Client, extras: Extras, path: str, user_name: str, role: str = "editor"
) -> str:
    """Share ``path`` with ``user_name``; the shared namespace's id (looked up if not returned)."""
    fn = sdk_method(client, "share", "role")
    result: Any = None
    if fn is not None:
        try:
            result = await fn(path, user_name, role=role)
        except (TypeError, ValueError, KeyError, AttributeError):
            fn = None  # the SDK wants the role in another form: make the call ourselves
    if fn is None:
        result = await extras.share(path, user_name, role)
    if isinstance(result, str) and result:
        return result
    for attr in ("shared_namespace_id", "namespace_id"):
        value = getattr(result, attr, "")
        if isinstance(value, str) and value:
            return value
    for ns in await namespaces(client, extras):
        if ns.mount_path.strip("/") == path.strip("/"):
            return ns.namespace_id
    raise SyncError(f"shared {path!r} but cannot find its namespace", grpc.StatusCode.INTERNAL)


async def namespaces(client: Client, extras: Extras) -> list[NamespaceHead]:
    """Every namespace the user sees with its journal head (SDK ``namespaces()`` if present)."""
    fn = sdk_method(client, "namespaces")
    if fn is None:
        return await extras.namespaces()
    return [
        NamespaceHead(str(n.namespace_id), str(n.mount_path), int(n.head_seq)) for n in await fn()
    ]


async def delete(client: Client, extras: Extras, path: str, namespace_id: str) -> Entry | None:
    """Delete a file; the delete revision's entry when the call returns one."""
    fn = (
        sdk_method(client, "delete", "namespace_id")
        if namespace_id
        else sdk_method(client, "delete")
    )
    if fn is None:
        return await extras.delete(path, namespace_id=namespace_id, device_id=client.device_id)
    result = await (fn(path, namespace_id=namespace_id) if namespace_id else fn(path))
    return entry_of(result)


async def move(
    client: Client, extras: Extras, src: str, dst: str, namespace_id: str
) -> Entry | None:
    """Move a file within one namespace; the new revision's entry when the call returns one."""
    fn = sdk_method(client, "move", "namespace_id") if namespace_id else sdk_method(client, "move")
    if fn is None:
        return await extras.move(src, dst, namespace_id=namespace_id, device_id=client.device_id)
    result = await (fn(src, dst, namespace_id=namespace_id) if namespace_id else fn(src, dst))
    return entry_of(result)
