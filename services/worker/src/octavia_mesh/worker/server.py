"""The worker process: a consumer per provider, and a gRPC health endpoint for probes."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc

from octavia_mesh.common import commands
from octavia_mesh.common.db.engine import make_engine, session_factories
from octavia_mesh.common.grpcserver import ServiceHealth, run_until_signalled
from octavia_mesh.worker.consumer import CommandConsumer, Provider
from octavia_mesh.worker.providers.noop import NoopProvider
from octavia_mesh.worker.settings import WorkerSettings

logger = logging.getLogger(__name__)

PROVIDERS: dict[str, type[Provider]] = {"noop": NoopProvider}


#: Health-check service name that reports whether the worker is taking commands (NOT_SERVING while paused).
CONSUMING = "octavia_mesh.worker.Consuming"


def _pause_on_signals(consumers: list[CommandConsumer], health: ServiceHealth) -> None:
    """SIGUSR1 pauses taking commands (for maintenance: they wait in JetStream), SIGUSR2 resumes.

    Health service ``CONSUMING`` turns NOT_SERVING only once the commands in hand are applied, so whoever
    paused the worker can tell when nothing is in flight any more.
    """
    loop = asyncio.get_running_loop()

    async def pause() -> None:
        await asyncio.gather(*(c.pause() for c in consumers))
        await health.set_status(CONSUMING, serving=False)
        logger.info("paused: commands wait in JetStream")

    async def resume() -> None:
        for consumer in consumers:
            consumer.resume()
        await health.set_status(CONSUMING, serving=True)
        logger.info("resumed")

    loop.add_signal_handler(signal.SIGUSR1, lambda: asyncio.ensure_future(pause()))
    loop.add_signal_handler(signal.SIGUSR2, lambda: asyncio.ensure_future(resume()))


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
    health = ServiceHealth(server, ["octavia_mesh.worker", CONSUMING])
    server.add_insecure_port(settings.grpc_listen)
    _pause_on_signals(consumers, health)
    logger.info("worker applying %s; health on %s", ", ".join(settings.providers), settings.grpc_listen)

    async def on_stop() -> None:
        for consumer in consumers:
            await consumer.stop()
        await nats_client.drain()
        await engine.dispose()

    await run_until_signalled(server, health, on_stop)
