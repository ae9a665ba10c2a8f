"""Server interceptors (auth, metrics, logging, error mapping) and client channel helpers.

Each interceptor wraps the method's behaviour with one async context manager ("hook"), so
the same wrapping serves unary and streaming methods alike. Domain errors become gRPC
statuses in exactly one place, ``ErrorInterceptor``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from tessera.auth import AuthError, Principal, Signer
from tessera.errors import TesseraError, wire_trailers
from tessera.revocation import Revocations, RevokedError, StaleError
from tessera.rpcmetrics import (
    RpcMetrics,
    client_interceptors,
    rpc_type,
    split_method,
)

log = logging.getLogger(__name__)

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "tessera_principal", default=None
)
_bearer: contextvars.ContextVar[str | None] = contextvars.ContextVar("tessera_bearer", default=None)

# A node acting for a user may forward the user's own bearer token in this header: the
# metanode then refuses the call if that token was revoked, in the same transaction as the
# read (the sync node does, so nothing committed after a revocation reaches an old stream).
ON_BEHALF_TOKEN_KEY = "x-tessera-user-token"

Hook = Callable[[str, grpc.aio.ServicerContext], contextlib.AbstractAsyncContextManager[None]]


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    principal = _principal.get()
    if principal is None:
        raise RuntimeError("no authenticated principal in this context")
    return principal


def current_bearer() -> str | None:
    """The bearer token the RPC being served came with (None for a public method).

    Tasks started while serving inherit it: the sync node forwards it when it reads journals
    on a user's behalf, so the metanode refuses a revoked credential in the same transaction.
    """
    return _bearer.get()


def _replace_behaviour(
    handler: grpc.RpcMethodHandler, behaviour: Any, *, request_deserializer: Any = None
) -> grpc.RpcMethodHandler:
    """``handler`` (of any kind) with its behaviour (and maybe deserializer) replaced."""
    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return factory(
        behaviour,
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _wrap(handler: grpc.RpcMethodHandler, method: str, hook: Hook) -> grpc.RpcMethodHandler:
    """Return ``handler`` with its behaviour run inside ``hook(method, context)``."""
    if handler.unary_unary or handler.stream_unary:
        inner = handler.unary_unary or handler.stream_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with hook(method, context):
                return await inner(request, context)

        factory = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary
            else grpc.stream_unary_rpc_method_handler
        )
        return factory(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    inner_stream = handler.unary_stream or handler.stream_stream

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async with hook(method, context):
            async for item in inner_stream(request, context):
                yield item

    factory = (
        grpc.unary_stream_rpc_method_handler
        if handler.unary_stream
        else grpc.stream_stream_rpc_method_handler
    )
    return factory(
        streaming,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _HookInterceptor(grpc.aio.ServerInterceptor):
    """Base: wraps every handler (but health and reflection) with ``self.hook``."""

    skip_prefixes = ("/grpc.health.", "/grpc.reflection.")

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(self.skip_prefixes):
            return handler
        return self.wrapped(handler, method)

    def wrapped(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """``handler`` run inside ``self.hook`` (a subclass may wrap more)."""
        return _wrap(handler, method, self.hook)

    def hook(
        self, method: str, context: grpc.aio.ServicerContext
    ) -> contextlib.AbstractAsyncContextManager[None]:
        raise NotImplementedError


def bearer_token(context: grpc.aio.ServicerContext) -> str | None:
    """The token from the ``authorization: Bearer …`` metadata, if any."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :]
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the bearer token of every call; node-only methods need node credentials, except
    those in ``admin_too``, which an admin's token may call as well (operator read-outs).

    With ``revocations`` (every node has them), a revoked credential is UNAUTHENTICATED, and
    a response stream open under a credential that gets revoked ends with UNAUTHENTICATED.
    """

    skip_prefixes = _HookInterceptor.skip_prefixes

    def __init__(
        self,
        signer: Signer,
        *,
        public: Collection[str] = (),
        node_only: Collection[str] = (),
        admin_too: Collection[str] = (),
        revocations: Revocations | None = None,
    ) -> None:
        self._signer = signer
        self._public = frozenset(public)
        self._node_only = frozenset(node_only)
        self._admin_too = frozenset(admin_too)
        self._revocations = revocations

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(self.skip_prefixes) or method in self._public:
            return handler
        if handler.unary_unary or handler.stream_unary:
            return _wrap(handler, method, self._unary_hook)
        return _replace_behaviour(handler, self._guarded_stream(handler, method))

    async def _authenticate(self, method: str, context: grpc.aio.ServicerContext) -> Principal:
        token = bearer_token(context)
        if token is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing bearer token: log in first (tessera login)",
            )
            raise AssertionError("abort raises")
        try:
            principal = self._signer.verify_token(token)
        except AuthError as e:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, f"{e}: log in again (tessera login)"
            )
        if method in self._node_only and not principal.is_node:
            if not (principal.is_admin and method in self._admin_too):
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED, "this call is only for cluster nodes"
                )
        if self._revocations is not None:
            try:
                self._revocations.check(principal)
            except RevokedError as e:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, _revoked_message(str(e)))
            except StaleError as e:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        # Each RPC runs in its own task (its own context), so the variables are never reset:
        # a stream's generator may be closed from another context, where a reset would fail.
        _principal.set(principal)
        _bearer.set(token)
        return principal

    @contextlib.asynccontextmanager
    async def _unary_hook(
        self, method: str, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[None]:
        await self._authenticate(method, context)
        yield

    def _guarded_stream(self, handler: grpc.RpcMethodHandler, method: str) -> Any:
        inner = handler.unary_stream or handler.stream_stream

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            principal = await self._authenticate(method, context)
            if self._revocations is None or principal.is_node:
                async for item in inner(request, context):
                    yield item
                return
            with self._revocations.track(principal) as call:
                async for item in _until(inner(request, context), call.ended):
                    yield item
                if call.revoked:
                    await context.abort(
                        grpc.StatusCode.UNAUTHENTICATED, _revoked_message(call.revoked)
                    )

        return streaming


def _revoked_message(why: str) -> str:
    return f"credentials revoked ({why}): log in again (tessera login)"


async def _until(items: AsyncIterator[Any], ended: asyncio.Event) -> AsyncIterator[Any]:
    """Yield from ``items`` until they end or ``ended`` is set (then close them and stop)."""
    iterator = aiter(items)
    stop = asyncio.ensure_future(ended.wait())
    step: asyncio.Future[Any] | None = None
    try:
        while not ended.is_set():
            step = asyncio.ensure_future(anext(iterator))
            await asyncio.wait((step, stop), return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                return
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            step = None
            yield item
    finally:
        stop.cancel()
        if step is not None and not step.done():
            step.cancel()
            with contextlib.suppress(BaseException):
                await step
        with contextlib.suppress(RuntimeError):
            await iterator.aclose()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request message that did not decode."""

    reason: str


def _safe_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None
    kind = getattr(getattr(deserialize, "__self__", None), "DESCRIPTOR", None)
    name = getattr(kind, "full_name", "the request message")

    def safe(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as e:  # noqa: BLE001 - DecodeError, or anything a bad buffer raises
            detail = str(e).rpartition(": ")[2] if ": " in str(e) else "malformed bytes"
            return _Undecodable(f"the request is not a valid {name}: {detail}")

    return safe


class DecodeInterceptor(grpc.aio.ServerInterceptor):
    """Before authentication: a request that does not decode (bad bytes, a string field holding
    invalid UTF-8) is INVALID_ARGUMENT with the reason, not gRPC's UNKNOWN or INTERNAL.

    gRPC uses the deserializer of the outermost handler: interceptors listed before this one
    must pass it on unchanged (``_wrap`` does)."""

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        inner = (
            handler.unary_unary
            or handler.unary_stream
            or handler.stream_unary
            or handler.stream_stream
        )

        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
            return request

        async def checked_stream(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            async for item in requests:
                yield await checked(item, context)

        async def prepare(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if handler.request_streaming:
                return checked_stream(request, context)
            return await checked(request, context)

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await inner(await prepare(request, context), context)

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for item in inner(await prepare(request, context), context):
                yield item

        return _replace_behaviour(
            handler,
            streaming if handler.response_streaming else unary,
            request_deserializer=_safe_deserializer(handler.request_deserializer),
        )


class ErrorInterceptor(_HookInterceptor):
    """Maps TesseraError subclasses to their status; anything unexpected to INTERNAL, logged."""

    @contextlib.asynccontextmanager
    async def hook(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        try:
            yield
        except TesseraError as e:
            trailers = wire_trailers(e)
            if trailers:
                context.set_trailing_metadata(trailers)
            await context.abort(e.code, e.message)
        except grpc.aio.AbortError:
            raise
        except (TimeoutError, ConnectionError) as e:
            log.warning("%s unavailable: %r", method, e)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"a backing service is unavailable: {e}"
            )


class MetricsInterceptor(_HookInterceptor):
    """Server RPC metrics under the standard gRPC Prometheus names (see ``RpcMetrics``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.metrics = RpcMetrics(registry, "server")

    def wrapped(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        counted = self._counting(handler, method)
        return _wrap(counted, method, functools.partial(self._hook, rpc_type(handler)))

    def _counting(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """``handler`` counting the messages it receives and sends (``grpc_server_msg_*``)."""
        labels = (rpc_type(handler), *split_method(method))
        received = self.metrics.received.labels(*labels)
        sent = self.metrics.sent.labels(*labels)
        inner = (
            handler.unary_unary
            or handler.unary_stream
            or handler.stream_unary
            or handler.stream_stream
        )

        async def counted_requests(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for item in requests:
                received.inc()
                yield item

        def requests_of(request: Any) -> Any:
            if handler.request_streaming:
                return counted_requests(request)
            received.inc()
            return request

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            response = await inner(requests_of(request), context)
            sent.inc()
            return response

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for item in inner(requests_of(request), context):
                sent.inc()
                yield item

        return _replace_behaviour(handler, streaming if handler.response_streaming else unary)

    @contextlib.asynccontextmanager
    async def _hook(
        self, kind: str, method: str, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[None]:
        service, name = split_method(method)
        self.metrics.start(kind, service, name)
        start = time.perf_counter()
        code = "OK"
        try:
            yield
        except grpc.aio.AbortError:
            code = context.code().name if context.code() else "UNKNOWN"
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception:
            code = "UNKNOWN"
            raise
        finally:
            self.metrics.done(kind, service, name, code, time.perf_counter() - start)


class LoggingInterceptor(_HookInterceptor):
    """One debug line per call; one warning line per unexpected failure, with traceback."""

    @contextlib.asynccontextmanager
    async def hook(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        start = time.perf_counter()
        try:
            yield
        except grpc.aio.AbortError:
            log.debug(
                "%s %s in %.1f ms", method, context.code(), (time.perf_counter() - start) * 1000
            )
            raise
        except Exception:
            log.exception("%s failed", method)
            raise
        else:
            log.debug("%s OK in %.1f ms", method, (time.perf_counter() - start) * 1000)


# Keepalive, in one place for both ends: a client pings an idle connection every
# KEEPALIVE_TIME_MS; a server accepts pings up to twice as often. A server that accepted them
# less often (gRPC's default: every 5 minutes) counts each ping as a strike and, after two,
# drops the connection with GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000


def keepalive_options(time_ms: int = KEEPALIVE_TIME_MS, *, server: bool) -> list[tuple[str, Any]]:
    """The keepalive half of the options; the server's accepts what the client's sends."""
    options: list[tuple[str, Any]] = [
        ("grpc.keepalive_time_ms", time_ms),
        ("grpc.keepalive_timeout_ms", min(KEEPALIVE_TIMEOUT_MS, time_ms)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    if server:
        options += [
            ("grpc.http2.min_ping_interval_without_data_ms", time_ms // 2),
            ("grpc.http2.max_ping_strikes", 2),
        ]
    return options


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Options of client channels."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        *keepalive_options(server=False),
    ]


def server_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Options of every node's server."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        *keepalive_options(server=True),
    ]


@dataclass(frozen=True)
class ChannelSecurity:
    """How to dial: plaintext, or TLS verified against a CA (and optionally a fixed name)."""

    tls: bool = False
    ca_pem: bytes | None = None
    server_name: str = (
        ""  # verify peers' certificates against this name instead of the host dialled
    )

    @classmethod
    def from_files(cls, *, tls: bool, ca_file: str = "", server_name: str = "") -> ChannelSecurity:
        """TLS when ``tls`` or a CA file is given; the CA bundle read once here."""
        ca = Path(ca_file).read_bytes() if ca_file else None
        return cls(tls=tls or ca is not None, ca_pem=ca, server_name=server_name)

    @classmethod
    def for_node(cls, cfg: Any) -> ChannelSecurity:
        """A node dials its peers with TLS whenever it serves TLS itself (or has a CA)."""
        return cls.from_files(
            tls=bool(cfg.tls_cert), ca_file=cfg.tls_ca, server_name=cfg.tls_server_name
        )


PLAINTEXT = ChannelSecurity()


def open_channel(
    address: str,
    security: ChannelSecurity = PLAINTEXT,
    *,
    max_message_bytes: int = 8 * 1024 * 1024,
    extra_options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A grpc.aio channel to ``address`` with the shared options, over TLS when configured.

    Long-lived callers take channels from ``tessera.channels.ChannelPool`` instead."""
    options = [*channel_options(max_message_bytes), *extra_options]
    interceptors = client_interceptors()
    if not security.tls:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    if security.server_name:
        options.append(("grpc.ssl_target_name_override", security.server_name))
    creds = grpc.ssl_channel_credentials(root_certificates=security.ca_pem)
    return grpc.aio.secure_channel(address, creds, options=options, interceptors=interceptors)


def auth_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a bearer token."""
    return (("authorization", f"Bearer {token}"),)
