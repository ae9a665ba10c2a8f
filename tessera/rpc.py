"""Server interceptors (auth, metrics, logging, error mapping) and client channel helpers.

Each interceptor wraps the method's behaviour with one async context manager ("hook"), so
the same wrapping serves unary and streaming methods alike. Domain errors become gRPC
statuses in exactly one place, ``ErrorInterceptor``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from tessera.auth import AuthError, Principal, Signer
from tessera.errors import TesseraError, wire_trailers

log = logging.getLogger(__name__)

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "tessera_principal", default=None
)

Hook = Callable[[str, grpc.aio.ServicerContext], contextlib.AbstractAsyncContextManager[None]]


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    principal = _principal.get()
    if principal is None:
        raise RuntimeError("no authenticated principal in this context")
    return principal


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


class AuthInterceptor(_HookInterceptor):
    """Checks the bearer token of every call; node-only methods need node credentials."""

    def __init__(
        self, signer: Signer, *, public: Collection[str] = (), node_only: Collection[str] = ()
    ) -> None:
        self._signer = signer
        self._public = frozenset(public)
        self._node_only = frozenset(node_only)

    @contextlib.asynccontextmanager
    async def hook(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        if method in self._public:
            yield
            return
        token = bearer_token(context)
        if token is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing bearer token: log in first (tessera login)",
            )
        try:
            principal = self._signer.verify_token(token)
        except AuthError as e:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, f"{e}: log in again (tessera login)"
            )
        if method in self._node_only and not principal.is_node:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, "this call is only for cluster nodes"
            )
        reset = _principal.set(principal)
        try:
            yield
        finally:
            _principal.reset(reset)


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
    """RPC latency histogram and counter by method and status code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "tessera_rpc_duration_seconds",
            "RPC latency by method and status code",
            ["method", "code"],
            registry=registry,
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
                60,
            ),
        )
        self.total = Counter(
            "tessera_rpc_total",
            "RPCs by method and status code",
            ["method", "code"],
            registry=registry,
        )

    @contextlib.asynccontextmanager
    async def hook(self, method: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
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
            self.latency.labels(method, code).observe(time.perf_counter() - start)
            self.total.labels(method, code).inc()


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


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Options shared by servers and client channels."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


@dataclass(frozen=True)
class ChannelSecurity:
    """How to dial: plaintext, or TLS verified against a CA (and optionally a fixed name)."""

    tls: bool = False
    ca_pem: bytes | None = None
    server_name: str = ""   # verify peers' certificates against this name instead of the host dialled

    @classmethod
    def from_files(cls, *, tls: bool, ca_file: str = "", server_name: str = "") -> ChannelSecurity:
        """TLS when ``tls`` or a CA file is given; the CA bundle read once here."""
        ca = Path(ca_file).read_bytes() if ca_file else None
        return cls(tls=tls or ca is not None, ca_pem=ca, server_name=server_name)

    @classmethod
    def for_node(cls, cfg: Any) -> ChannelSecurity:
        """A node dials its peers with TLS whenever it serves TLS itself (or has a CA)."""
        return cls.from_files(tls=bool(cfg.tls_cert), ca_file=cfg.tls_ca, server_name=cfg.tls_server_name)


PLAINTEXT = ChannelSecurity()


def open_channel(address: str, security: ChannelSecurity = PLAINTEXT, *, max_message_bytes: int = 8 * 1024 * 1024) -> grpc.aio.Channel:
    """A grpc.aio channel to ``address`` with the shared options, over TLS when configured."""
    options = channel_options(max_message_bytes)
    if not security.tls:
        return grpc.aio.insecure_channel(address, options=options)
    if security.server_name:
        options.append(("grpc.ssl_target_name_override", security.server_name))
    creds = grpc.ssl_channel_credentials(root_certificates=security.ca_pem)
    return grpc.aio.secure_channel(address, creds, options=options)


def auth_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a bearer token."""
    return (("authorization", f"Bearer {token}"),)
