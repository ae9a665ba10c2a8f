"""Domain errors, each bound to one gRPC status code (mapped in one place: tessera.rpc)."""

from __future__ import annotations

import grpc


class TesseraError(Exception):
    """Base of every error a node turns into a gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, trailers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.trailers = trailers


class InvalidArgument(TesseraError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(TesseraError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(TesseraError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(TesseraError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(TesseraError):
    code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(TesseraError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(TesseraError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(TesseraError):
    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(TesseraError):
    code = grpc.StatusCode.UNIMPLEMENTED


HEAD_REVISION_KEY = "tessera-head-revision"


class Conflict(TesseraError):
    """The parent revision is not the head: ABORTED, with the head revision in trailers."""

    code = grpc.StatusCode.ABORTED

    def __init__(self, message: str, head_revision: str) -> None:
        super().__init__(message, trailers=((HEAD_REVISION_KEY, head_revision),))
        self.head_revision = head_revision
