"""RPC metrics under the names and labels of the common gRPC Prometheus instrumentation.

Server side: ``tessera.rpc.MetricsInterceptor`` counts every call a node serves. Client side:
``enable_client_metrics(registry)`` makes every channel opened afterwards (``open_channel``,
the block nodes' peer channels) count the calls made on it as ``grpc_client_*``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

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
        self.received = Counter(
            f"grpc_{side}_msg_received",
            f"Messages received ({side} side)",
            self.LABELS,
            registry=registry,
        )
        self.sent = Counter(
            f"grpc_{side}_msg_sent", f"Messages sent ({side} side)", self.LABELS, registry=registry
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
