"""The health process: heartbeat streams over mutual TLS, batched writes, status events, probes.

Two gRPC servers: the mutual-TLS one amphorae stream to (``heartbeat_listen``: ``AmphoraHealth`` and
``grpc.health.v1``), and the plain one for probes (``grpc_listen``: ``grpc.health.v1`` only). On SIGTERM
the probes turn NOT_SERVING, open streams end with UNAVAILABLE (their agents move to another replica),
and what arrived last is written before the process exits.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from cryptography import x509
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.db.engine import make_engine
from octavia_mesh.common.grpcserver import NO_PORT_SHARING, ServiceHealth, run_until_signalled
from octavia_mesh.common.observability import metrics
from octavia_mesh.health import events, failover, tls
from octavia_mesh.health import metrics as health_metrics
from octavia_mesh.health.ingest import AmphoraDirectory, Ingest
from octavia_mesh.health.lag import LagMeter
from octavia_mesh.health.loss import LossMonitor
from octavia_mesh.health.servicer import SERVICE_NAME, AmphoraHealthServicer
from octavia_mesh.health.settings import HealthSettings
from octavia_mesh.health.store import HealthStore
from octavia_mesh.protos.health.v1 import health_pb2_grpc

logger = logging.getLogger(__name__)

#: Seconds open streams get to end when the service stops (agents reconnect elsewhere meanwhile).
STREAM_GRACE_S = 1.0


@dataclass(slots=True)
class HeartbeatPlane:
    """The mutual-TLS server and what it feeds, started and stopped together."""

    engine: AsyncEngine
    ingest: Ingest
    servicer: AmphoraHealthServicer
    server: grpc.aio.Server
    port: int
    publisher: events.EventPublisher
    reporter: str
    health: ServiceHealth
    loss: LossMonitor
    lag: LagMeter
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def start(self) -> None:
        await self.publisher.start()
        self.ingest.start()
        self.lag.start()
        self.loss.start()
        await self.server.start()
        await self.health.set_serving(True)

    async def stop(self) -> None:
        self.servicer.closing = True
        await self.loss.stop()  # streams ending now are not losses
        await self.health.set_serving(False)
        await self.server.stop(STREAM_GRACE_S)
        await self.ingest.stop()
        await self.lag.stop()
        for stop in reversed(self.on_stop):
            await stop()
        await self.publisher.stop()
        await self.engine.dispose()


#: How long a start keeps trying to bind the heartbeat port (see ``_bind_heartbeats``).
HEARTBEAT_BIND_PATIENCE_S = 10.0


def _bind_heartbeats(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials) -> int:
    """Bind the heartbeat port, trying again for a few seconds while it is taken. A restarted mesh listens where
    the last one did, so that the amphorae it kept find it again; the port can still be held for a moment after
    the previous replica stopped (a test run saw the new one fail to bind it about a second later)."""
    deadline = time.monotonic() + HEARTBEAT_BIND_PATIENCE_S
    while True:
        try:
            port = server.add_secure_port(address, credentials)
        except RuntimeError:  # grpc's "Failed to bind": the address is in use
            port = 0
        if port:
            return port
        if time.monotonic() >= deadline:
            raise OSError(f"cannot listen on {address} (still in use after {HEARTBEAT_BIND_PATIENCE_S:.0f}s)")
        logger.warning("heartbeat port %s is in use; trying again", address)
        time.sleep(0.25)


def build(
    settings: HealthSettings,
    *,
    engine: AsyncEngine | None = None,
    publisher: events.EventPublisher | None = None,
    ingest_class: type[Ingest] = Ingest,
) -> HeartbeatPlane:
    """Everything of the heartbeat plane, not started (tests and benchmarks build it on ``:0``; the benchmark
    swaps ``ingest_class`` for its baselines)."""
    identity = tls.load_identity(settings)
    engine = engine if engine is not None else make_engine(settings.database_url)
    server = grpc.aio.server(
        interceptors=metrics.interceptors(settings.metrics_listen),
        options=[
            NO_PORT_SHARING,
            # Thousands of long-lived streams: pings from agents are expected, every 10 s.
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            # No bandwidth-delay pings: heartbeats are a few hundred bytes, the default windows are plenty, and
            # each probe is two more frames on each of thousands of connections.
            ("grpc.http2.bdp_probe", 0),
        ],
    )
    port = _bind_heartbeats(server, settings.heartbeat_listen, tls.server_credentials(identity))
    reporter = settings.replica_name or f"{socket.gethostname()}:{port}"
    store = HealthStore(engine, reporter)
    if publisher is None:
        publisher = events.NatsEventPublisher(
            settings.nats_url,
            settings.events_stream,
            settings.events_max_age_s,
            settings.events_max_bytes,
            f"octavia-mesh-health {reporter}",
        )
    ingest = ingest_class(
        store,
        publisher,
        settings.flush_interval_s,
        settings.flush_max_amphorae,
        settings.status_recheck_s,
        settings.identity_recheck_s,
    )
    lag = LagMeter(settings.heartbeat_timeout_s, ingest.backlog_s)
    loss = LossMonitor(engine, ingest.open_streams, settings.stream_silence_s, lag=lag.recent)
    servicer = AmphoraHealthServicer(
        ingest,
        AmphoraDirectory(store),
        settings.heartbeat_interval_s,
        loss,
        settings.ack_interval_s,
        x509.load_pem_x509_certificates(identity.client_ca),
    )
    health_pb2_grpc.add_AmphoraHealthServicer_to_server(servicer, server)
    health = ServiceHealth(server, [SERVICE_NAME])  # on the mutual-TLS port too, for agents that probe it
    return HeartbeatPlane(engine, ingest, servicer, server, port, publisher, reporter, health, loss, lag)


async def serve(settings: HealthSettings) -> None:
    server = grpc.aio.server(interceptors=metrics.interceptors(settings.metrics_listen), options=[NO_PORT_SHARING])
    health = ServiceHealth(server, [SERVICE_NAME])
    server.add_insecure_port(settings.grpc_listen)
    plane = build(settings)
    await plane.start()
    # Background work sharing the database engine registers its stop in plane.on_stop.
    detector = await failover.start(
        settings, health, engine=plane.engine, writes_ok=plane.ingest.writes_ok, lag=plane.lag.recent
    )
    plane.on_stop.append(detector.stop)
    plane.loss.on_lost = detector.detector.poke
    health_metrics.register(plane.ingest, detector.detector)
    exposition = metrics.serve(settings.metrics_listen)
    if exposition is not None:
        plane.on_stop.append(exposition.aclose)
    logger.info(
        "health listening on %s; heartbeats (mutual TLS) on port %d as %s, every %gs",
        settings.grpc_listen,
        plane.port,
        plane.reporter,
        settings.heartbeat_interval_s,
    )
    await run_until_signalled(server, health, plane.stop)
