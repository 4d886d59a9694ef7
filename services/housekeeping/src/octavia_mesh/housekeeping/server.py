"""The housekeeping process: its periodic jobs, its own outbox relay, and a gRPC endpoint (``grpc.health.v1``).

Housekeeping runs a local :class:`~octavia_mesh.common.commands.OutboxRelay` (``owner=False``): it
publishes the commands housekeeping itself queues (certificate rotations, orphan sweeps, re-driven
changes) right after their commit, so they reach the workers even while the API service is down; sweeping
the whole outbox is the API's relay's job.
"""

from __future__ import annotations

import logging

import grpc

from octavia_mesh.common import commands
from octavia_mesh.common.db.engine import make_engine, session_factories
from octavia_mesh.common.grpcserver import NO_PORT_SHARING, ServiceHealth, run_until_signalled
from octavia_mesh.common.observability import metrics
from octavia_mesh.housekeeping.jobs import Housekeeper, Scheduler
from octavia_mesh.housekeeping.settings import HousekeepingSettings

logger = logging.getLogger(__name__)


async def serve(settings: HousekeepingSettings) -> None:
    """Run housekeeping until SIGTERM/SIGINT."""
    engine = make_engine(settings.database_url)
    _, write = session_factories(engine)
    nats_client, js = await commands.connect(settings.nats_url, "octavia-mesh-housekeeping")
    await commands.ensure_stream(js, settings.stream_replicas)
    relay = commands.OutboxRelay(write, js, sweep_interval_s=settings.relay_sweep_s, owner=False)
    relay.start()
    scheduler = Scheduler(Housekeeper(write, settings, relay.wake).jobs())
    scheduler.start()
    server = grpc.aio.server(interceptors=metrics.interceptors(settings.metrics_listen), options=[NO_PORT_SHARING])
    health = ServiceHealth(server, ["octavia_mesh.housekeeping"])
    server.add_insecure_port(settings.grpc_listen)
    logger.info("housekeeping listening on %s", settings.grpc_listen)
    exposition = metrics.serve(settings.metrics_listen)

    async def on_stop() -> None:
        await scheduler.stop()
        await relay.stop()
        await commands.close_nats(nats_client)
        await engine.dispose()
        if exposition is not None:
            exposition.close()

    await run_until_signalled(server, health, on_stop)
