"""The grpc.aio server bootstrap every node uses.

``run_node`` builds the server with the interceptors, registers the node's services plus the
standard health service and server reflection, binds (TLS when configured), starts the
Prometheus HTTP endpoint, writes the ready file, and on SIGTERM/SIGINT marks itself
NOT_SERVING, drains in-flight calls for ``grace_stop`` seconds and stops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    start_http_server,
)

from tessera.auth import Signer
from tessera.config import NodeConfig
from tessera.logs import setup_logging
from tessera.revocation import Revocations
from tessera.rpc import (
    AuthInterceptor,
    DecodeInterceptor,
    ErrorInterceptor,
    LoggingInterceptor,
    MetricsInterceptor,
    server_options,
)
from tessera.rpcmetrics import enable_client_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bound:
    """Where a started node can be reached."""

    grpc_address: str  # as advertised to others
    grpc_port: int
    metrics_address: str  # "" when metrics are disabled


class NodeApp(Protocol):
    """What a node kind plugs into ``run_node``."""

    service_names: tuple[str, ...]
    public_methods: Collection[str]
    node_methods: Collection[str]
    revocations: Revocations  # started by ``start``; checked on every call
    # Optional ``admin_methods``: node-only methods an admin's token may call too.

    def register(self, server: grpc.aio.Server) -> None:
        """Add the node's servicers to the server."""

    async def start(self, bound: Bound) -> None:
        """Called once the port is bound (register in etcd, start background loops)."""

    async def stop(self) -> None:
        """Called after the server stopped serving."""


def server_credentials(cfg: NodeConfig) -> grpc.ServerCredentials | None:
    """TLS credentials when --tls-cert/--tls-key are set, else None (plaintext)."""
    if not cfg.tls_cert:
        return None
    key, cert = Path(cfg.tls_key).read_bytes(), Path(cfg.tls_cert).read_bytes()
    ca = Path(cfg.tls_ca).read_bytes() if cfg.tls_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=False
    )


def advertise_address(cfg: NodeConfig, port: int) -> str:
    """The address others should dial: --advertise, else the listen host with the bound port."""
    if cfg.advertise:
        return cfg.advertise
    host = cfg.listen.rpartition(":")[0].strip("[]")
    if host in {"0.0.0.0", "::", ""}:
        host = socket.gethostname()
    return f"{host}:{port}"


def _start_metrics(cfg: NodeConfig, registry: CollectorRegistry) -> str:
    if not cfg.metrics_listen:
        return ""
    host, _, port = cfg.metrics_listen.rpartition(":")
    httpd, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    return f"{host}:{httpd.server_port}"


def _write_ready_file(path: str, bound: Bound, node_id: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "node_id": node_id,
                "grpc": bound.grpc_address,
                "port": bound.grpc_port,
                "metrics": bound.metrics_address,
                "pid": os.getpid(),
            }
        )
    )
    tmp.replace(target)


async def run_node(
    cfg: NodeConfig, app: NodeApp, registry: CollectorRegistry, *, node_id: str
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then stop gracefully."""
    signer = Signer(cfg.cluster_secret)
    metrics = MetricsInterceptor(registry)
    metrics.metrics.initialize(app.service_names)
    server = grpc.aio.server(
        interceptors=[
            metrics,
            LoggingInterceptor(),
            DecodeInterceptor(),
            AuthInterceptor(
                signer,
                public=app.public_methods,
                node_only=app.node_methods,
                admin_too=getattr(app, "admin_methods", ()),
                revocations=app.revocations,
            ),
            ErrorInterceptor(),
        ],
        options=server_options(cfg.max_message_bytes),
    )
    app.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (*app.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)

    creds = server_credentials(cfg)
    port = (
        server.add_secure_port(cfg.listen, creds) if creds else server.add_insecure_port(cfg.listen)
    )
    await server.start()
    bound = Bound(advertise_address(cfg, port), port, _start_metrics(cfg, registry))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    try:
        await app.start(bound)
        for name in (*app.service_names, ""):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        if cfg.ready_file:
            _write_ready_file(cfg.ready_file, bound, node_id)
        log.info(
            "%s %s serving on %s (metrics %s)",
            cfg.kind,
            node_id,
            bound.grpc_address,
            bound.metrics_address or "off",
        )
        await stop.wait()
        log.info("%s %s stopping", cfg.kind, node_id)
        await health_servicer.enter_graceful_shutdown()
    finally:
        await server.stop(cfg.grace_stop)
        await app.stop()
    log.info("%s %s stopped", cfg.kind, node_id)


def node_registry() -> CollectorRegistry:
    """A node's registry: process, platform and GC collectors, and ``grpc_client_*`` for
    every channel the node opens (the server side is added by ``run_node``)."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    enable_client_metrics(registry)
    return registry


def main_for(cfg: NodeConfig, app_factory: type, *, node_id: str) -> None:
    """Common ``main`` tail: logging, registry, event loop."""
    setup_logging(cfg.log_level, json_lines=cfg.log_json, name=node_id)
    registry = node_registry()

    async def _main() -> None:
        app = app_factory(cfg, registry, node_id)  # inside the loop: channels bind to it
        await run_node(cfg, app, registry, node_id=node_id)

    asyncio.run(_main())
