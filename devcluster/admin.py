"""The local cluster's bootstrap ``admin`` account: created once, logged in on every start."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import grpc

from devcluster.backends import redact
from devcluster.procs import ClusterError, read_json, write_private
from tessera.auth import Signer
from tessera.pb import meta_pb2, meta_pb2_grpc
from tessera.retry import RetryPolicy

ADMIN_USER = "admin"


def bootstrap_admin(cluster_dir: Path, meta_address: str, secret: str, db_dsn: str) -> str:
    """Make sure the ``admin`` user exists at ``meta_address`` and log it in; its token.

    The password is kept in ``cluster_dir/admin.json`` so that a restart of the same
    directory (the same database) logs in again instead of creating the user twice.
    """
    path = cluster_dir / "admin.json"
    saved = read_json(path)
    password = str(saved.get("password") or "")
    node_md = (("authorization", f"Bearer {Signer(secret).node_token('launcher')}"),)
    with grpc.insecure_channel(meta_address) as channel:
        stub = meta_pb2_grpc.MetadataStub(channel)

        def login() -> str:
            resp = _call_retrying(
                stub.Login,
                meta_pb2.LoginRequest(name=ADMIN_USER, password=password, device_name="tessera-up"),
            )
            return str(resp.token)

        if password:
            try:
                return login()
            except grpc.RpcError as e:
                if e.code() not in {
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.PERMISSION_DENIED,
                }:
                    raise ClusterError(
                        f"admin login failed at {meta_address}: {e.code().name}: {e.details()}"
                    ) from None
        else:
            password = secrets.token_urlsafe(18)
            write_private(path, json.dumps({"user": ADMIN_USER, "password": password}))
        try:
            _call_retrying(
                stub.CreateUser,
                meta_pb2.CreateUserRequest(name=ADMIN_USER, password=password, is_admin=True),
                metadata=node_md,
            )
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.ALREADY_EXISTS:
                raise ClusterError(
                    f"user {ADMIN_USER!r} already exists in {redact(db_dsn)} but its password is not the one in {path}; "
                    "use the cluster dir that created it, or a fresh database"
                ) from None
            raise ClusterError(
                f"CreateUser({ADMIN_USER!r}) failed at {meta_address}: {e.code().name}: {e.details()}"
            ) from None
        try:
            return login()
        except grpc.RpcError as e:
            raise ClusterError(
                f"Login({ADMIN_USER!r}) failed at {meta_address}: {e.code().name}: {e.details()}"
            ) from None


def _call_retrying(
    method: Any, request: Any, *, metadata: tuple[tuple[str, str], ...] = (), attempts: int = 20
) -> Any:
    """Call a unary RPC, retrying while the server answers UNAVAILABLE (still warming up)."""
    policy = RetryPolicy(
        base=0.05, cap=0.5, attempts=attempts, budget=10.0, retry_on={grpc.StatusCode.UNAVAILABLE}
    )
    return policy.call_sync(lambda: method(request, metadata=metadata, timeout=10.0))
