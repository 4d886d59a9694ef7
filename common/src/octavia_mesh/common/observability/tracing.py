"""OpenTelemetry traces, exported over OTLP/gRPC when an endpoint is configured, and nothing otherwise.

With no endpoint, :func:`setup_tracing` returns None and installs nothing: the SDK and the exporter are not even
imported, no gRPC interceptor is added, and the spans the code opens go to OpenTelemetry's no-op tracer (a
function call each, on flows and tasks only, never on a hot path). With one, a ``TracerProvider`` (service name
``octavia-mesh-<service>``) batches spans to it; :func:`grpc_server_interceptors` and
:func:`grpc_client_interceptors` then give OpenTelemetry's own gRPC instrumentation, which propagates W3C
``traceparent`` in gRPC metadata. Across NATS the context rides in the provider command
(``ProviderCommand.trace_context``) and in the message's headers (:func:`inject`, :func:`extract`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import field
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

logger = logging.getLogger(__name__)

#: The standard OpenTelemetry variable a service falls back to when its own ``OTLP_ENDPOINT`` is not set.
OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"

_provider: Any = None  # the SDK's TracerProvider once set up (the OpenTelemetry API keeps it globally anyway)


def otlp_endpoint_field() -> str:
    """A service settings field: where spans go (falls back to ``OTEL_EXPORTER_OTLP_ENDPOINT``; empty: off)."""
    return field(
        default="",
        metadata={"help": "OTLP/gRPC endpoint traces are exported to, e.g. http://collector:4317 (empty: no traces)"},
    )


def enabled() -> bool:
    return _provider is not None


def setup_tracing(service: str, endpoint: str) -> Any:
    """Export this process's spans to ``endpoint`` (OTLP over gRPC); returns the provider, or None when off."""
    global _provider
    if not endpoint:
        return None
    # Imported here so that a service without an endpoint never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"octavia-mesh-{service}"}))
    insecure = endpoint.startswith("http://")
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=insecure)))
    trace.set_tracer_provider(provider)
    _provider = provider
    logger.info("exporting traces to %s", endpoint)
    return provider


def shutdown_tracing() -> None:
    """Flush the spans still batched (at a service's stop)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def grpc_server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """OpenTelemetry's server interceptor when tracing is on (health checks left out), else none."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    return [aio_server_interceptor(filter_=filters.negate(filters.health_check()))]


def grpc_client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """OpenTelemetry's client interceptors when tracing is on, else none."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())


def inject(carrier: MutableMapping[str, str]) -> None:
    """Write the current trace context (``traceparent``, ``tracestate``) into ``carrier``; nothing when off."""
    if _provider is not None:
        propagate.inject(carrier)


def extract(carrier: Mapping[str, str]) -> otel_context.Context | None:
    """The trace context ``carrier`` holds, to parent a span on; None when off or when it holds none."""
    if _provider is None or not carrier:
        return None
    return propagate.extract(carrier)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)
