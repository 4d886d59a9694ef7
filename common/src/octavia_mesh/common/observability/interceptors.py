"""gRPC interceptors that carry the request id between services and log each API call once.

Server side, :class:`RequestContextInterceptor` takes the id from the call's metadata (``x-openstack-request-id``,
else Envoy's ``x-request-id`` as ``req-<uuid>``, else a new one where ``generate`` says so), sets
:data:`~octavia_mesh.common.observability.logging.REQUEST_ID` for the handler, and optionally writes one access
line per call. Client side, :class:`RequestIdClientInterceptor` puts the current id into the metadata of every
unary call. Both only touch a context variable and a dict, so they cost microseconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import trace

from octavia_mesh.common.observability.logging import REQUEST_ID, REQUEST_ID_HEADER, new_request_id, request_id_from


@dataclass(slots=True)
class AccessRecord:
    """What a handler tells the access line of its call: the REST status it answered and the caller's project."""

    status: int | None = None
    project: str | None = None


#: The access record of the call in progress (None outside an API call).
ACCESS: ContextVar[AccessRecord | None] = ContextVar("octavia_mesh_access", default=None)


def note_access(status: int, project: str | None) -> None:
    """Record the REST status and project of the current call for its access line."""
    record = ACCESS.get()
    if record is not None:
        record.status, record.project = status, project


def _metadata(details: grpc.HandlerCallDetails) -> dict[str, str]:
    found = getattr(details, "invocation_metadata", None) or ()
    return {k: v for k, v in found if isinstance(v, str)}


class RequestContextInterceptor(grpc.aio.ServerInterceptor):
    """Sets the request id of each call; with ``access_logger``, logs each call at INFO when it ends.

    Calls to ``quiet_prefixes`` (health checks, reflection) are neither logged nor given a generated id.
    """

    def __init__(
        self,
        *,
        generate: bool,
        access_logger: logging.Logger | None = None,
        quiet_prefixes: Sequence[str] = ("/grpc.",),
    ) -> None:
        self._generate = generate
        self._log = access_logger
        self._quiet = tuple(quiet_prefixes)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method  # pyright: ignore[reportAttributeAccessIssue]
        if handler is None or method.startswith(self._quiet):
            return handler
        metadata = _metadata(handler_call_details)
        request_id = request_id_from(metadata) or (new_request_id() if self._generate else None)
        if request_id is None and self._log is None:
            return handler
        # A REST call's method and path as the client sent them (the edge's Lua passes them on); a native gRPC
        # call is logged by its gRPC method.
        rest = (
            (metadata.get("x-octavia-method", "POST"), metadata["x-octavia-path"])
            if "x-octavia-path" in metadata
            else None
        )
        return _wrap(handler, lambda behavior: self._wrapped(behavior, method, rest, request_id))

    def _wrapped(self, behavior: Any, rpc: str, rest: tuple[str, str] | None, request_id: str | None) -> Any:
        log = self._log

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            REQUEST_ID.set(request_id)  # this call's own task: nothing else sees it
            if request_id:
                span = trace.get_current_span()
                if span.is_recording():
                    span.set_attribute("octavia.request_id", request_id)
            if log is None:
                return await behavior(request, context)
            record = AccessRecord()
            ACCESS.set(record)
            began = time.perf_counter()
            failed = True
            try:
                reply = await behavior(request, context)
                failed = False
                return reply
            finally:
                if log.isEnabledFor(logging.INFO):
                    elapsed_ms = (time.perf_counter() - began) * 1000
                    status = record.status if record.status is not None else ("error" if failed else "ok")
                    method, path = rest or ("gRPC", rpc)
                    log.info(
                        "%s %s %s %.1fms project=%s",
                        method,
                        path,
                        status,
                        elapsed_ms,
                        record.project or "-",
                        extra={
                            "method": method,
                            "path": path,
                            "rpc": rpc,
                            "status": status,
                            "duration_ms": round(elapsed_ms, 2),
                            "project": record.project,
                        },
                    )

        return unary


def _wrap(handler: grpc.RpcMethodHandler, wrap: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
    """``handler`` with its unary-unary behaviour wrapped (streaming calls are left as they are)."""
    if handler.request_streaming or handler.response_streaming:  # pyright: ignore[reportAttributeAccessIssue]
        return handler
    return grpc.unary_unary_rpc_method_handler(
        wrap(handler.unary_unary),  # pyright: ignore[reportAttributeAccessIssue]
        request_deserializer=handler.request_deserializer,  # pyright: ignore[reportAttributeAccessIssue]
        response_serializer=handler.response_serializer,  # pyright: ignore[reportAttributeAccessIssue]
    )


class RequestIdClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Sends the current request id (if any) as ``x-openstack-request-id`` with every unary call."""

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        request_id = REQUEST_ID.get()
        if request_id:
            metadata = grpc.aio.Metadata(*tuple(client_call_details.metadata or ()))
            metadata[REQUEST_ID_HEADER] = request_id
            client_call_details = grpc.aio.ClientCallDetails(
                client_call_details.method,
                client_call_details.timeout,
                metadata,
                client_call_details.credentials,
                client_call_details.wait_for_ready,
            )
        return await continuation(client_call_details, request)
