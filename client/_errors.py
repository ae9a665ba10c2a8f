"""SDK errors: each carries the gRPC status it came from (like Temporal's RPCError)."""

from __future__ import annotations

from typing import Any

import grpc

from tessera.errors import error_detail
from tessera.pb import errors_pb2


class SyncError(Exception):
    """Base of every SDK error; ``status`` is the gRPC status code."""

    def __init__(self, message: str, status: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AuthenticationError(SyncError):
    pass


class PermissionDeniedError(SyncError):
    pass


class NotFoundError(SyncError):
    pass


class InvalidRequestError(SyncError):
    pass


class ConflictError(SyncError):
    """The file changed since the parent revision; ``head_revision`` is what won."""

    def __init__(self, message: str, head_revision: str) -> None:
        super().__init__(message, grpc.StatusCode.ABORTED)
        self.head_revision = head_revision


class UnavailableError(SyncError):
    pass


_BY_CODE: dict[grpc.StatusCode, type[SyncError]] = {
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequestError,
    grpc.StatusCode.ALREADY_EXISTS: InvalidRequestError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: InvalidRequestError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
}


def from_rpc_error(e: grpc.aio.AioRpcError) -> SyncError:
    """The SDK error for a failed call."""
    code, details = e.code(), e.details() or code_name(e.code())
    if code is grpc.StatusCode.ABORTED:
        conflict = error_detail(e, errors_pb2.RevisionConflict)
        return ConflictError(details, conflict.head_revision if conflict else "")
    return _BY_CODE.get(code, SyncError)(details, code)


def error_for(code: grpc.StatusCode, message: str, head_revision: str = "") -> SyncError:
    """The SDK error for a status reported inside a response (one result of a batch)."""
    if code is grpc.StatusCode.ABORTED:
        return ConflictError(message, head_revision)
    return _BY_CODE.get(code, SyncError)(message, code)


def code_name(code: grpc.StatusCode) -> str:
    return str(code.name).replace("_", " ").lower()


async def call_rpc(coro: Any) -> Any:
    """Await a gRPC call, turning its failure into the SDK's typed error."""
    try:
        return await coro
    except grpc.aio.AioRpcError as e:
        raise from_rpc_error(e) from None
