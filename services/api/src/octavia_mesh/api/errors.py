"""Octavia's API faults, each with its REST status and the gRPC code a native client sees.

The edge turns a gRPC error into Octavia's fault body
``{"faultcode", "faultstring", "debuginfo"}``; ``x-http-code`` carries the
statuses the transcoder cannot derive from a gRPC code (403 for quotas, 409
for conflicts reported as FAILED_PRECONDITION, 501, 503).
"""

from __future__ import annotations

import grpc

#: How much of a client's value a fault quotes (a fault echoing a 100 KB value made a 100 KB gRPC trailer, and
#: Envoy reset the connection every client shares). Values just over Octavia's longest length limit (4096, flavor
#: and zone data) are still quoted whole, as Octavia quotes them.
SHOWN_CHARS = 4200


def _shown(value: object) -> str:
    text = str(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


class ApiError(Exception):
    """A fault answered to the caller; never a crash."""

    http_status = 500
    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        #: Response headers (initial metadata) sent with the fault, e.g. 401's ``WWW-Authenticate``.
        self.headers: tuple[tuple[str, str], ...] = ()


class InvalidInput(ApiError):
    http_status = 400
    code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidField(InvalidInput):
    """WSME's wording for a value of the wrong type, range or form."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"Invalid input for field/attribute {field}. Value: '{_shown(value)}'. {reason}")
        self.reason = reason


class ValidationFailure(InvalidInput):
    def __init__(self, detail: str) -> None:
        super().__init__(f"Validation failure: {detail}")


class Unauthorized(ApiError):
    http_status = 401
    code = grpc.StatusCode.UNAUTHENTICATED


class Forbidden(ApiError):
    http_status = 403
    code = grpc.StatusCode.PERMISSION_DENIED

    def __init__(self, message: str = "Policy does not allow this request to be performed.") -> None:
        super().__init__(message)


class QuotaExceeded(ApiError):
    http_status = 403
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, resources: str) -> None:
        super().__init__(f"Quota has been met for resources: {resources}")


class NotFound(ApiError):
    http_status = 404
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, resource: str, ident: str | None) -> None:
        super().__init__(f"{resource} {ident} not found.")


class Conflict(ApiError):
    http_status = 409
    code = grpc.StatusCode.ALREADY_EXISTS


class Immutable(Conflict):
    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, resource: str, ident: str) -> None:
        super().__init__(f"{resource} {ident} is immutable and cannot be updated.")


class PendingState(Conflict):
    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, state: str, resource: str, ident: str) -> None:
        super().__init__(f"Invalid state {state} of {resource} resource {ident}")


class NotImplementedByProvider(ApiError):
    http_status = 501
    code = grpc.StatusCode.UNIMPLEMENTED


class Unavailable(ApiError):
    http_status = 503
    code = grpc.StatusCode.UNAVAILABLE
