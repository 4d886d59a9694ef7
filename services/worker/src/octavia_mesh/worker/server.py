"""The worker process: a consumer per provider, and a gRPC health endpoint for probes."""

from __future__ import annotations

import logging

import grpc

from octavia_mesh.common import commands
from octavia_mesh.common.db.engine import make_engine, session_factories
from octavia_mesh.common.grpcserver import ServiceHealth, run_until_signalled
from octavia_mesh.worker.consumer import CommandConsumer, Provider
from octavia_mesh.worker.providers.noop import NoopProvider
from octavia_mesh.worker.settings import WorkerSettings

logger = logging.getLogger(__name__)

PROVIDERS: dict[str, type[Provider]] = {"noop": NoopProvider}


async def serve(settings: WorkerSettings) -> None:
    """Run the worker until SIGTERM/SIGINT."""
    unknown = [p for p in settings.providers if p not in PROVIDERS]
    if unknown:
        raise SystemExit(f"octavia-mesh-worker: unknown providers {unknown}; known: {sorted(PROVIDERS)}")
    engine = make_engine(settings.database_url)
    _, write = session_factories(engine)
    nats_client, js = await commands.connect(settings.nats_url, "octavia-mesh-worker")
    await commands.ensure_stream(js)
    consumers = [
        CommandConsumer(js, write, PROVIDERS[name](), settings.batch_size, settings.ack_wait_s)
        for name in settings.providers
    ]
    for consumer in consumers:
        await consumer.start()
    server = grpc.aio.server()
    health = ServiceHealth(server, ["octavia_mesh.worker"])
    server.add_insecure_port(settings.grpc_listen)
    logger.info("worker applying %s; health on %s", ", ".join(settings.providers), settings.grpc_listen)

    async def on_stop() -> None:
        for consumer in consumers:
            await consumer.stop()
        await nats_client.drain()
        await engine.dispose()

    await run_until_signalled(server, health, on_stop)
