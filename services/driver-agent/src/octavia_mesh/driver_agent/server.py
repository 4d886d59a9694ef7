"""The driver-agent process: the ``DriverAgent`` gRPC service (with health and reflection) and the provider
agents it runs."""

from __future__ import annotations

import logging

import grpc

from octavia_mesh.common import secrets
from octavia_mesh.common.db.engine import make_engine, session_factories
from octavia_mesh.common.grpcserver import NO_PORT_SHARING, ServiceHealth, add_reflection, run_until_signalled
from octavia_mesh.common.observability import metrics
from octavia_mesh.driver_agent.provider_agents import ProviderAgents, choose, discover
from octavia_mesh.driver_agent.service import SERVICE_NAME, DriverAgent
from octavia_mesh.driver_agent.settings import DriverAgentSettings
from octavia_mesh.protos.driveragent.v1 import driver_agent_pb2_grpc

logger = logging.getLogger(__name__)

_WILDCARDS = {"", "0.0.0.0", "[::]", "::"}


def advertised(settings: DriverAgentSettings, port: int) -> str:
    """The address provider agents call: the configured one, or the bound port on a connectable host."""
    if settings.advertise_address:
        return settings.advertise_address
    host = settings.grpc_listen.rpartition(":")[0]
    return f"{'127.0.0.1' if host in _WILDCARDS else host}:{port}"


def load_keyring(settings: DriverAgentSettings) -> secrets.Keyring | None:
    if not settings.secret_key_file and not settings.secret_keys:
        return None
    return secrets.load_keyring(settings.secret_key_file, settings.secret_keys)


async def serve(settings: DriverAgentSettings) -> None:
    """Run the driver agent until SIGTERM/SIGINT."""
    agents_to_run = choose(settings.provider_agents, discover())
    engine = make_engine(settings.database_url)
    read, write = session_factories(engine)
    server = grpc.aio.server(interceptors=metrics.interceptors(settings.metrics_listen), options=[NO_PORT_SHARING])
    driver_agent_pb2_grpc.add_DriverAgentServicer_to_server(DriverAgent(read, write, load_keyring(settings)), server)
    health = ServiceHealth(server, [SERVICE_NAME])
    add_reflection(server, [SERVICE_NAME])
    port = server.add_insecure_port(settings.grpc_listen)
    address = advertised(settings, port)
    # The agents' calls wait for the server (wait_for_ready), which starts right after this.
    agents = ProviderAgents(agents_to_run, address, settings.nats_url)
    agents.start()
    exposition = metrics.serve(settings.metrics_listen)
    logger.info(
        "driver-agent listening on %s; provider agents: %s", settings.grpc_listen, ", ".join(agents_to_run) or "none"
    )

    async def on_stop() -> None:
        await agents.stop()
        await engine.dispose()
        if exposition is not None:
            exposition.close()
        logger.info("driver-agent stopped")

    await run_until_signalled(server, health, on_stop)
