"""Prometheus metrics shared by every service: gRPC request counts and latencies, and the ``/metrics`` server.

Each service builds its gRPC servers with :func:`interceptors` and starts :func:`serve` on its
``metrics_listen`` setting (``host:port``; empty: no exposition). The gRPC series follow
go-grpc-prometheus's names (``grpc_server_started_total``, ``grpc_server_handled_total``,
``grpc_server_handling_seconds``), which existing gRPC dashboards and alerts already know. Metrics of one
service's own work (flows, heartbeats, the breaker...) are defined in that service, on the same default
registry; the service's process and Python collectors come with it.

Exposition is prometheus-client's own threaded HTTP server: scrapes are answered off the event loop, so a
busy loop never delays a scrape, and a scrape never stalls a request.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics, start_http_server

logger = logging.getLogger(__name__)

# The ``*_created`` timestamp series double every counter's output for nothing Prometheus uses.
disable_created_metrics()

#: The ``metrics_listen`` setting every service has (``OCTAVIA_MESH_<SERVICE>_METRICS_LISTEN``).
METRICS_LISTEN_HELP = "host:port serving Prometheus metrics at /metrics (port 0: any free port); empty: none"

#: Latency buckets (seconds) for gRPC calls and flows: from a cached GET (~1 ms) to a slow create (~1 min).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_LABELS = ("grpc_type", "grpc_service", "grpc_method")
STARTED = Counter("grpc_server_started", "gRPC calls started on the server.", _LABELS)
HANDLED = Counter("grpc_server_handled", "gRPC calls completed on the server, by status code.", (*_LABELS, "grpc_code"))
HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of a gRPC call to its status, by status code.",
    (*_LABELS, "grpc_code"),
    buckets=LATENCY_BUCKETS,
)


def _split(method: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> (``pkg.Service``, ``Method``)."""
    service, _, name = method.lstrip("/").partition("/")
    return service, name


def _code(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    """The status a call ended with: what the handler set (``abort`` sets it too), else OK or UNKNOWN."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int) and code != 0:  # grpc.aio stores the raw integer when set through abort
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN")
    if error is None:
        return "OK"
    return "CANCELLED" if isinstance(error, (asyncio.CancelledError, GeneratorExit)) else "UNKNOWN"


class _Call:
    """One call's labels and start time."""

    __slots__ = ("labels", "started")

    def __init__(self, kind: str, method: str) -> None:
        self.labels = (kind, *_split(method))
        self.started = time.perf_counter()
        STARTED.labels(*self.labels).inc()

    def done(self, context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> None:
        code = _code(context, error)
        HANDLED.labels(*self.labels, code).inc()
        HANDLING.labels(*self.labels, code).observe(time.perf_counter() - self.started)


def _unary_reply(kind: str, method: str, behavior: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(kind, method)
        try:
            result = behavior(request, context)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            call.done(context, exc)
            raise
        call.done(context, None)
        return result

    return wrapped


def _streamed_reply(kind: str, method: str, behavior: Callable[..., Any]) -> Callable[..., Awaitable[None]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        call = _Call(kind, method)
        try:
            result = behavior(request, context)
            # An async generator, or a coroutine that calls context.write (grpc_health's Watch): grpc.aio forbids
            # mixing the two styles in one call, so this wrapper writes in both cases.
            if inspect.isasyncgen(result):
                async for item in result:
                    await context.write(item)
            else:
                await result
        except BaseException as exc:
            call.done(context, exc)
            raise
        call.done(context, None)

    return wrapped


class RpcMetrics(grpc.aio.ServerInterceptor):
    """Counts every call of the server it is given to, and times it, by method and status code."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # an unknown method: gRPC answers UNIMPLEMENTED itself
        method = handler_call_details.method  # pyright: ignore[reportAttributeAccessIssue]
        # The handlers are grpc's namedtuples: swap the one behaviour that is set, keep the (de)serializers.
        replace: Callable[..., grpc.RpcMethodHandler] = handler._replace  # pyright: ignore[reportAttributeAccessIssue]
        if handler.unary_unary is not None:
            return replace(unary_unary=_unary_reply("unary", method, handler.unary_unary))
        if handler.stream_unary is not None:
            return replace(stream_unary=_unary_reply("client_stream", method, handler.stream_unary))
        if handler.unary_stream is not None:
            return replace(unary_stream=_streamed_reply("server_stream", method, handler.unary_stream))
        if handler.stream_stream is not None:
            return replace(stream_stream=_streamed_reply("bidi_stream", method, handler.stream_stream))
        return handler


def interceptors(listen: str) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors a service's gRPC server is built with (``grpc.aio.server(interceptors=...)``), given its
    ``metrics_listen``: none when metrics are off, so that a service without them pays nothing per call."""
    return [RpcMetrics()] if listen else []


@dataclass(slots=True)
class MetricsServer:
    """A running ``/metrics`` endpoint."""

    host: str
    port: int
    _httpd: WSGIServer

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    async def aclose(self) -> None:
        """:meth:`close`, for a list of coroutine functions run at stop."""
        self.close()


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port); raises ValueError naming the value."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"metrics listen address {listen!r} is not host:port")
    return host.strip("[]"), int(port)


def serve(listen: str) -> MetricsServer | None:
    """Serve the default registry on ``listen`` (``host:port``, port 0 picks one) in a daemon thread.

    Empty ``listen`` serves nothing and returns None. The bound address is logged, and returned.
    """
    if not listen:
        return None
    host, port = parse_listen(listen)
    httpd, _ = start_http_server(port, addr=host, registry=REGISTRY)
    bound = MetricsServer(host, httpd.server_port, httpd)
    logger.info("metrics on http://%s:%d/metrics", host, bound.port)
    return bound
