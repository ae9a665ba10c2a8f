"""Kubernetes exec probe: the standard gRPC health check (grpc.health.v1), over TLS when the node
serves TLS.

Why not the kubelet's native ``grpc:`` probe: it always dials in plaintext and cannot be given a
CA or client certificate, and in Kubernetes every Tessera listener serves TLS (DESIGN.md,
"Security"), so a native probe would fail its handshake on every node. This script runs in the
node's own container with the node's environment: when ``TESSERA_TLS_CERT`` is set it dials TLS,
verifies the server against ``TESSERA_TLS_CA`` under the name ``--server-name`` (the serving
certificate carries ``localhost`` for this) and presents the node's certificate in case the server
asks for one; otherwise it dials plaintext.

    python grpc_health_probe.py PORT            # readiness: exit 0 only when SERVING
    python grpc_health_probe.py PORT --live     # liveness: exit 0 when the server answers at all

Liveness passes on any gRPC answer (NOT_SERVING, UNAUTHENTICATED, ...): a node that answers is
alive, and restarting it because a dependency (database, etcd) is down would not help. Only no
answer (UNAVAILABLE, DEADLINE_EXCEEDED, a failed handshake) fails it. The first output line
says why, and the kubelet records it in the probe's event.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEAD_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def channel_for(port: int, server_name: str, environ: Mapping[str, str]) -> grpc.Channel:
    target = f"127.0.0.1:{port}"
    cert = environ.get("TESSERA_TLS_CERT", "")
    if not cert:
        return grpc.insecure_channel(target)
    key = environ.get("TESSERA_TLS_KEY", "")
    roots = _read(environ.get("TESSERA_TLS_CA") or cert)
    creds = grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=_read(key) if key else None,
        certificate_chain=_read(cert) if key else None,
    )
    return grpc.secure_channel(
        target, creds, options=[("grpc.ssl_target_name_override", server_name)]
    )


def check(
    port: int,
    *,
    live: bool,
    service: str,
    server_name: str,
    timeout: float,
    environ: Mapping[str, str] | None = None,
) -> tuple[bool, str]:
    """Returns (healthy, reason)."""
    env = os.environ if environ is None else environ
    try:
        channel = channel_for(port, server_name, env)
    except OSError as e:
        return False, f"cannot read TLS material: {e}"
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as e:
            code = e.code()
            if live and code not in DEAD_CODES:
                return True, f"alive (health check answered {code.name})"
            return False, f"health check failed: {code.name}: {e.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status == health_pb2.HealthCheckResponse.SERVING or live:
        return True, status
    return False, f"not ready: {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gRPC health probe for Tessera nodes (TLS-aware)")
    parser.add_argument("port", type=int, help="the node's gRPC port")
    parser.add_argument("--live", action="store_true", help="liveness: any answer passes")
    parser.add_argument("--service", default="", help="health service name (default: the server)")
    parser.add_argument(
        "--server-name", default="localhost", help="TLS name to verify (default: localhost)"
    )
    parser.add_argument(
        "--timeout", type=float, default=4.0, help="seconds (keep under timeoutSeconds)"
    )
    args = parser.parse_args(argv)
    ok, reason = check(
        args.port,
        live=args.live,
        service=args.service,
        server_name=args.server_name,
        timeout=args.timeout,
    )
    print(reason)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
