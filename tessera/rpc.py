"""Server interceptors (auth, metrics, logging, error mapping), client metrics, channel helpers.

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
        return _wrap(handler, method, self.hook_for(handler))

    def hook_for(self, handler: grpc.RpcMethodHandler) -> Hook:
        """The hook for one method (the same for all, unless a subclass needs the handler)."""
        return self.hook

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
    """Checks the bearer token of every call; node-only methods need node credentials, except
    those in ``admin_too``, which an admin's token may call as well (operator read-outs)."""

    def __init__(
        self,
        signer: Signer,
        *,
        public: Collection[str] = (),
        node_only: Collection[str] = (),
        admin_too: Collection[str] = (),
    ) -> None:
        self._signer = signer
        self._public = frozenset(public)
        self._node_only = frozenset(node_only)
        self._admin_too = frozenset(admin_too)

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
            if not (principal.is_admin and method in self._admin_too):
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


# Buckets of the RPC latency histograms (seconds), server and client side.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def rpc_type(handler: grpc.RpcMethodHandler) -> str:
    """The ``grpc_type`` label of a method: unary, client_stream, server_stream, bidi_stream."""
    if handler.unary_unary:
        return "unary"
    if handler.stream_unary:
        return "client_stream"
    if handler.unary_stream:
        return "server_stream"
    return "bidi_stream"


def split_method(method: str | bytes) -> tuple[str, str]:
    """``/pkg.Service/Method`` as its ``grpc_service`` and ``grpc_method`` labels."""
    text = method.decode() if isinstance(method, bytes) else method
    service, _, name = text.lstrip("/").rpartition("/")
    return service or "unknown", name


def go_code(name: str) -> str:
    """A status code's ``grpc_code`` label as the common instrumentation writes it (Go's
    ``codes.Code.String()``): ``OK``, ``NotFound``, ``Canceled``, ``DeadlineExceeded``, …"""
    if name == "OK":
        return name
    if name == "CANCELLED":
        return "Canceled"
    return "".join(word.capitalize() for word in name.split("_"))


class RpcMetrics:
    """The metrics of the common gRPC Prometheus instrumentation for one side (``server`` or
    ``client``): ``grpc_<side>_started_total``, ``grpc_<side>_handled_total`` (with
    ``grpc_code``) and the ``grpc_<side>_handling_seconds`` histogram, labelled ``grpc_type``,
    ``grpc_service`` and ``grpc_method``."""

    LABELS = ("grpc_type", "grpc_service", "grpc_method")

    def __init__(self, registry: CollectorRegistry, side: str) -> None:
        what = "RPCs started on the server" if side == "server" else "RPCs started by this client"
        self.started = Counter(f"grpc_{side}_started", what, self.LABELS, registry=registry)
        self.handled = Counter(
            f"grpc_{side}_handled",
            f"RPCs completed ({side} side), by status code",
            (*self.LABELS, "grpc_code"),
            registry=registry,
        )
        self.seconds = Histogram(
            f"grpc_{side}_handling_seconds",
            f"RPC latency until completion ({side} side)",
            self.LABELS,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )

    def initialize(self, service_names: Collection[str]) -> None:
        """Zero series for every method of these services (as the Go instrumentation's
        ``InitializeMetrics``), so that rates and alerts see a node that served nothing yet."""
        from google.protobuf import descriptor_pool

        pool = descriptor_pool.Default()
        for service_name in service_names:
            try:
                service = pool.FindServiceByName(service_name)
            except KeyError:
                continue
            for m in service.methods:
                kind = {
                    (False, False): "unary",
                    (True, False): "client_stream",
                    (False, True): "server_stream",
                    (True, True): "bidi_stream",
                }[(m.client_streaming, m.server_streaming)]
                self.started.labels(kind, service_name, m.name)
                self.handled.labels(kind, service_name, m.name, "OK")
                self.seconds.labels(kind, service_name, m.name)

    def start(self, kind: str, service: str, method: str) -> None:
        self.started.labels(kind, service, method).inc()

    def done(self, kind: str, service: str, method: str, code: str, seconds: float) -> None:
        self.handled.labels(kind, service, method, go_code(code)).inc()
        self.seconds.labels(kind, service, method).observe(seconds)


class MetricsInterceptor(_HookInterceptor):
    """Server RPC metrics under the standard gRPC Prometheus names (see ``RpcMetrics``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.metrics = RpcMetrics(registry, "server")

    def hook_for(self, handler: grpc.RpcMethodHandler) -> Hook:
        return functools.partial(self._hook, rpc_type(handler))

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


class _ClientMetricsBase:
    """Counts one client call: started now, handled (with its code) when it completes."""

    kind = "unary"

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics
        self._pending: set[asyncio.Task[None]] = set()

    async def _call(self, continuation: Any, details: Any, request: Any) -> Any:
        service, name = split_method(details.method)
        self._metrics.start(self.kind, service, name)
        start = time.perf_counter()
        try:
            call = await continuation(details, request)
        except grpc.aio.AioRpcError as e:
            self._metrics.done(self.kind, service, name, e.code().name, time.perf_counter() - start)
            raise

        def finished(done_call: Any) -> None:
            seconds = time.perf_counter() - start
            task = asyncio.ensure_future(self._record(done_call, service, name, seconds))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        call.add_done_callback(finished)
        return call

    async def _record(self, call: Any, service: str, name: str, seconds: float) -> None:
        try:
            code = "CANCELLED" if call.cancelled() else (await call.code()).name
        except Exception:  # a call torn down with its channel
            code = "UNKNOWN"
        self._metrics.done(self.kind, service, name, code, seconds)


def _client_interceptor_class(base: type, kind: str, hook: str) -> type:
    """A ``_ClientMetricsBase`` for one of grpc.aio's four client interceptor kinds (a channel
    files each interceptor under one kind only)."""

    async def intercept(
        self: _ClientMetricsBase, continuation: Any, details: Any, request: Any
    ) -> Any:
        return await self._call(continuation, details, request)

    return type(f"_{kind}_metrics", (_ClientMetricsBase, base), {"kind": kind, hook: intercept})


_CLIENT_KINDS = [
    _client_interceptor_class(base, kind, f"intercept_{hook}")
    for base, kind, hook in (
        (grpc.aio.UnaryUnaryClientInterceptor, "unary", "unary_unary"),
        (grpc.aio.UnaryStreamClientInterceptor, "server_stream", "unary_stream"),
        (grpc.aio.StreamUnaryClientInterceptor, "client_stream", "stream_unary"),
        (grpc.aio.StreamStreamClientInterceptor, "bidi_stream", "stream_stream"),
    )
]


_client_interceptors: list[grpc.aio.ClientInterceptor] = []


def enable_client_metrics(registry: CollectorRegistry) -> None:
    """Count every RPC made on channels opened from now on (``open_channel`` and the block
    nodes' peer channels) as ``grpc_client_*`` in ``registry``. Nodes call this once at start;
    an SDK user may call it with their own registry."""
    metrics = RpcMetrics(registry, "client")
    _client_interceptors[:] = [cls(metrics) for cls in _CLIENT_KINDS]


def client_interceptors() -> list[grpc.aio.ClientInterceptor] | None:
    """The interceptors for a new channel (None when client metrics are off)."""
    return list(_client_interceptors) or None


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
    address: str, security: ChannelSecurity = PLAINTEXT, *, max_message_bytes: int = 8 * 1024 * 1024
) -> grpc.aio.Channel:
    """A grpc.aio channel to ``address`` with the shared options, over TLS when configured."""
    options = channel_options(max_message_bytes)
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
