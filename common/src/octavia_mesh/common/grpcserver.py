"""What every gRPC service of the mesh does the same way: health, reflection, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

logger = logging.getLogger(__name__)

#: gRPC servers on Linux set SO_REUSEPORT by default, so a second server of the same user binds a port that is
#: taken and silently gets half of its connections (two meshes on one machine did). Without it a taken port
#: fails the start, and ``octavia-mesh up``'s supervisor tries again.
NO_PORT_SHARING = ("grpc.so_reuseport", 0)


class ServiceHealth:
    """The ``grpc.health.v1`` servicer of a server, with one switch for every service it names."""

    def __init__(self, server: grpc.aio.Server, service_names: Iterable[str]) -> None:
        # grpcio-health-checking imports its asyncio servicer into ``health`` at run time; the stubs omit it.
        self._servicer = health.aio.HealthServicer()  # pyright: ignore[reportAttributeAccessIssue]
        self._names = ["", *service_names]
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)

    async def set_serving(self, serving: bool) -> None:
        for name in self._names:
            await self.set_status(name, serving)

    async def set_status(self, name: str, serving: bool) -> None:
        """Report one service name as SERVING or NOT_SERVING."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self._servicer.set(name, status)


#: ``grpc.reflection.v1``: what grpcurl and current clients ask first. grpcio-reflection ships only v1alpha, whose
#: messages v1 copied field for field (only the package differs), so one servicer answers both.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def add_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection (v1 and v1alpha) for ``service_names`` and the standard services."""
    names = [*service_names, health.SERVICE_NAME, REFLECTION_V1, reflection.SERVICE_NAME]
    servicer = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": v1}),)
    )


async def run_until_signalled(
    server: grpc.aio.Server,
    health_switch: ServiceHealth,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    grace: float = 5.0,
) -> None:
    """Start ``server``, report SERVING, and stop gracefully on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await health_switch.set_serving(True)
    await stop.wait()
    logger.info("stopping")
    await health_switch.set_serving(False)
    await server.stop(grace)
    if on_stop is not None:
        await on_stop()
