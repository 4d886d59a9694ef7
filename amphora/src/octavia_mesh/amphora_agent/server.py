"""The agent process: a mutual-TLS grpc.aio server in front of :class:`Agent`, stopped gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from octavia_mesh.amphora_agent import observability
from octavia_mesh.amphora_agent.agent import Agent
from octavia_mesh.amphora_agent.auth import ControllerOnly
from octavia_mesh.amphora_agent.counters import CounterLedger
from octavia_mesh.amphora_agent.haproxy import HaproxyOptions
from octavia_mesh.amphora_agent.heartbeat import HeartbeatSender, Sampler
from octavia_mesh.amphora_agent.identity import AgentIdentity
from octavia_mesh.amphora_agent.keepalived import Keepalived, find_keepalived
from octavia_mesh.amphora_agent.prometheus import PrometheusProxy
from octavia_mesh.amphora_agent.reaper import ChildReaper
from octavia_mesh.amphora_agent.servicer import AmphoraAgentServicer
from octavia_mesh.amphora_agent.settings import AgentSettings
from octavia_mesh.amphora_agent.store import Store
from octavia_mesh.protos.agent.v1 import agent_pb2, agent_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["AmphoraAgent"].full_name


def haproxy_options(settings: AgentSettings) -> HaproxyOptions:
    return HaproxyOptions(
        binary=settings.haproxy_binary,
        hard_stop_after_s=settings.hard_stop_after_s,
        start_timeout_s=settings.start_timeout_s,
        stop_timeout_s=settings.stop_timeout_s,
        reload_timeout_s=settings.reload_timeout_s,
        restart_backoff_max_s=settings.restart_backoff_max_s,
    )


def identity_of(settings: AgentSettings) -> AgentIdentity:
    """The agent's certificate and key (replaceable by ``RotateCertificate``), and the client CA."""
    return AgentIdentity(Path(settings.server_cert), Path(settings.server_key), Path(settings.client_ca))


def create_server(
    settings: AgentSettings, agent: Agent, identity: AgentIdentity | None = None, keepalived: Keepalived | None = None
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:  # pyright: ignore[reportAttributeAccessIssue]  # typeshed's grpc_health stub lacks aio
    """Build the server (not started); the port it bound, for ``listen`` ending in ``:0``."""
    identity = identity or identity_of(settings)
    # No SO_REUSEPORT (gRPC's default): a port another agent holds must fail this start, not be shared with it.
    server = grpc.aio.server(
        # The controller's identity first; then, for its calls, the trace (when on) and the request id.
        interceptors=[ControllerOnly(settings.controller_identities), *observability.server_interceptors()],
        options=[("grpc.so_reuseport", 0)],
    )
    agent_pb2_grpc.add_AmphoraAgentServicer_to_server(
        AmphoraAgentServicer(agent, settings.amphora_id, identity, keepalived), server
    )
    health_servicer = health.aio.HealthServicer()  # pyright: ignore[reportAttributeAccessIssue]  # typeshed's grpc_health stub lacks aio
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # Dynamic credentials: a rotated certificate is presented from the next handshake on, with no restart.
    port = server.add_secure_port(settings.listen, identity.server_credentials())
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    return server, port, health_servicer


async def _set_health(servicer: health.aio.HealthServicer, serving: bool) -> None:  # pyright: ignore[reportAttributeAccessIssue]  # typeshed's grpc_health stub lacks aio
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        await servicer.set(name, status)


def _start_heartbeats(settings: AgentSettings, agent: Agent, identity: AgentIdentity) -> asyncio.Task[None] | None:
    """Stream heartbeats to the health service, when the agent was given its endpoints."""
    if not settings.health_endpoints:
        return None
    sampler = Sampler(agent, CounterLedger(settings.state_path / "counters.json"))
    agent.before_reset, agent.forgotten = sampler.before_reset, sampler.forget
    return asyncio.create_task(HeartbeatSender(settings, sampler, identity).run(), name="heartbeats")


async def serve(settings: AgentSettings) -> None:
    """Run the agent until SIGTERM or SIGINT, then stop the server, every HAProxy and every child."""
    # Sockets, configurations and keys are the agent's alone.
    os.umask(0o077)
    reaper = ChildReaper()
    reaper.install()
    store = Store(settings.state_path)
    agent = Agent(store, reaper, haproxy_options(settings))
    # keepalived, for ACTIVE_STANDBY amphorae (found lazily: SINGLE amphorae never start it).
    keepalived = Keepalived(
        settings.state_path,
        settings.state_path / "lb",
        reaper,
        binary=find_keepalived(settings.keepalived_binary),
        router_id=settings.amphora_id.replace("-", "")[:12] or "amphora",
        stop_timeout_s=settings.stop_timeout_s,
        restart_backoff_max_s=settings.restart_backoff_max_s,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # PROMETHEUS listeners' exporter (Octavia's names): before any HAProxy that sends scrapes to it starts.
    exporter = PrometheusProxy(store.run_dir)
    try:
        await exporter.start()
        # Load balancers that ran before this agent (re)started serve again before the controller
        # can see the agent, so GetStatus never reports a transient STOPPED.
        await agent.start()
        await keepalived.resume()
        # One identity object: the server presents it, and so does anything that calls out as this amphora.
        identity = identity_of(settings)
        heartbeats = _start_heartbeats(settings, agent, identity)
        server, port, health_servicer = create_server(settings, agent, identity, keepalived)
        await server.start()
        await _set_health(health_servicer, True)
        host = settings.listen.rsplit(":", 1)[0]
        logger.info(
            "amphora %s agent listening on %s:%d (HAProxy %s)", settings.amphora_id, host, port, agent.haproxy_version
        )
        await stop.wait()
        logger.info("stopping")
        if heartbeats is not None:
            # Before HAProxy stops: a last heartbeat must not report the amphora's own shutdown as an outage.
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats
        await _set_health(health_servicer, False)
        await server.stop(settings.grace_s)
    finally:
        # keepalived first: a master hands the VIP to its peer while its HAProxy still serves.
        await keepalived.shutdown()
        await agent.shutdown()
        await exporter.close()
        reaper.close()
    logger.info("stopped")
