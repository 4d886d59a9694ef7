"""The agent's logs (text or JSON, each line with the controller's request id) and its traces.

The agent depends on the protos alone, so this repeats, small, what ``octavia_mesh.common.observability`` does
for the services, with the same libraries (python-json-logger; OpenTelemetry's SDK, OTLP exporter and gRPC
instrumentation) and the same names: the request id arrives as ``x-openstack-request-id`` metadata on the
controller's calls, the trace context as W3C ``traceparent``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc
from pythonjsonlogger.json import JsonFormatter

#: The request id of the controller call being served (``req-<uuid>``), or None.
REQUEST_ID: ContextVar[str | None] = ContextVar("octavia_mesh_agent_request_id", default=None)
REQUEST_ID_HEADER = "x-openstack-request-id"
LOG_FORMATS = ("text", "json")

_provider: Any = None


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class _Json(JsonFormatter):
    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        if log_data.get("request_id") == "-":
            del log_data["request_id"]


def setup_logging(log_format: str, log_level: str, amphora_id: str) -> None:
    """Configure the agent's root logger (stderr, which the compute driver keeps as ``agent.log``)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(
            _Json(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",  # ISO 8601 in UTC with microseconds
                static_fields={"service": "amphora-agent", "amphora_id": amphora_id},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level.upper())
    # grpc's DEBUG output is one line per callback; keep it out of the agent's own debug logs.
    logging.getLogger("grpc").setLevel(max(root.level, logging.INFO))


def setup_tracing(endpoint: str, amphora_id: str) -> None:
    """Export spans over OTLP/gRPC to ``endpoint``; with none, nothing is loaded or installed."""
    global _provider
    if not endpoint:
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": "octavia-mesh-amphora-agent", "service.instance.id": amphora_id})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider


def shutdown_tracing() -> None:
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


class _RequestId(grpc.aio.ServerInterceptor):
    """Sets :data:`REQUEST_ID` from the call's metadata for the handler of each unary call."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        metadata = getattr(handler_call_details, "invocation_metadata", None) or ()
        request_id = next((v for k, v in metadata if k == REQUEST_ID_HEADER and isinstance(v, str)), None)
        if handler is None or request_id is None or handler.request_streaming or handler.response_streaming:  # pyright: ignore[reportAttributeAccessIssue]
            return handler
        behavior: Any = handler.unary_unary  # pyright: ignore[reportAttributeAccessIssue]

        async def unary(request: Any, context: Any) -> Any:
            REQUEST_ID.set(request_id[:128])  # this call's own task
            return await behavior(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,  # pyright: ignore[reportAttributeAccessIssue]
            response_serializer=handler.response_serializer,  # pyright: ignore[reportAttributeAccessIssue]
        )


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """OpenTelemetry's server interceptor (tracing on; health checks left out), then the request id's."""
    found: list[grpc.aio.ServerInterceptor] = []
    if _provider is not None:
        from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

        found.append(aio_server_interceptor(filter_=filters.negate(filters.health_check())))
    return [*found, _RequestId()]
