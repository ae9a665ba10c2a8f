"""Domain errors, each bound to one gRPC status code (mapped in one place: tessera.rpc).

What a client must act on travels as typed details (``tessera/v1/errors.proto``) in the
call's ``google.rpc.Status``, the ``grpc-status-details-bin`` trailer: ``wire_trailers`` packs
them on the server, ``error_detail`` reads one back on the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from tessera.pb import errors_pb2

M = TypeVar("M", bound=Message)
DETAILS_KEY = "grpc-status-details-bin"


class TesseraError(Exception):
    """Base of every error a node turns into a gRPC status.

    Args:
        message: The status message, for people.
        trailers: Extra trailing metadata.
        details: Typed details (``errors_pb2`` messages) for programs.
    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        trailers: tuple[tuple[str, str], ...] = (),
        details: Sequence[Message] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.trailers = trailers
        self.details = tuple(details)


def wire_trailers(e: TesseraError) -> tuple[tuple[str, str | bytes], ...]:
    """The trailing metadata of a call failed with ``e``: its trailers, and its typed details
    packed into a ``google.rpc.Status`` (code and message equal to the call's)."""
    if not e.details:
        return e.trailers
    packed = []
    for detail in e.details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    status = status_pb2.Status(code=e.code.value[0], message=e.message, details=packed)
    return (*e.trailers, *rpc_status.to_status(status).trailing_metadata)


def error_detail(e: grpc.RpcError, kind: type[M]) -> M | None:
    """The first detail of type ``kind`` in a failed call's status, or None."""
    try:
        status = rpc_status.from_call(e)  # an RpcError is a Call
    except (ValueError, DecodeError):  # a status that contradicts the call's: not ours
        return None
    if status is None:
        return None
    for any_detail in status.details:
        if any_detail.Is(kind.DESCRIPTOR):
            detail = kind()
            any_detail.Unpack(detail)
            return detail
    return None


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


# Still sent for clients from before typed details; no client in this tree reads it.
HEAD_REVISION_KEY = "tessera-head-revision"


class Conflict(TesseraError):
    """The parent revision is not the head: ABORTED, with a ``RevisionConflict`` detail."""

    code = grpc.StatusCode.ABORTED

    def __init__(self, message: str, head_revision: str) -> None:
        super().__init__(
            message,
            trailers=((HEAD_REVISION_KEY, head_revision),),
            details=(errors_pb2.RevisionConflict(head_revision=head_revision),),
        )
        self.head_revision = head_revision
