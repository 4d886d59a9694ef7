"""The driver-agent process: its gRPC endpoint (``grpc.health.v1``) and its background work."""

from __future__ import annotations

import logging

import grpc

from octavia_mesh.common.grpcserver import ServiceHealth, run_until_signalled
from octavia_mesh.driver_agent.settings import DriverAgentSettings

logger = logging.getLogger(__name__)


async def serve(settings: DriverAgentSettings) -> None:
    server = grpc.aio.server()
    health = ServiceHealth(server, [])
    server.add_insecure_port(settings.grpc_listen)
    logger.info("driver-agent listening on %s", settings.grpc_listen)
    await run_until_signalled(server, health)
