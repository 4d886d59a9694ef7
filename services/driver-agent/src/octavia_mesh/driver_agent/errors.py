"""Why the driver agent refuses a call, and how that reaches the caller.

The domain raises :class:`Refused` subclasses; :func:`to_status` is the one
place that turns them into gRPC statuses with rich details
(``google.rpc.ResourceInfo`` naming the object, ``google.rpc.BadRequest``
naming the field), carried in the standard ``grpc-status-details-bin``
trailer that every gRPC client library can read. The provider SDK reads them
back into octavia-lib's ``UpdateStatusError`` fields (``status_object``,
``status_object_id``).
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

#: The trailer gRPC's rich error model travels in.
DETAILS_KEY = "grpc-status-details-bin"


class Refused(Exception):
    """A call the driver agent will not carry out; nothing was changed."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, kind: str | None = None, object_id: str | None = None, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.object_id = object_id
        self.field = field


class InvalidArgument(Refused):
    """A malformed request: bad id, unknown status value, negative counter, duplicate entry."""


class NotFound(Refused):
    """An object that does not exist."""

    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"{kind} {object_id} not found", kind, object_id)


class PermissionDenied(Refused):
    """An object of a load balancer that another provider serves."""

    code = grpc.StatusCode.PERMISSION_DENIED


def to_status(exc: Refused) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """``(code, message, trailing metadata)`` for ``context.abort``."""
    details = []
    if exc.kind is not None:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ResourceInfo(resource_type=exc.kind, resource_name=exc.object_id or ""))
        details.append(info)
    if exc.field:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.message)]
            )
        )
        details.append(bad)
    status = status_pb2.Status(code=getattr(code_pb2, exc.code.name), message=exc.message, details=details)
    return exc.code, exc.message, ((DETAILS_KEY, status.SerializeToString()),)
