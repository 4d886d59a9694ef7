"""The worker process: a consumer per provider, and a gRPC health endpoint for probes."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import uuid
from pathlib import Path

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common import capabilities, commands, network, openstack, secrets
from octavia_mesh.common.barbican import BarbicanCertManager
from octavia_mesh.common.commands import close_nats
from octavia_mesh.common.db.engine import make_engine, session_factories
from octavia_mesh.common.grpcserver import NO_PORT_SHARING, ServiceHealth, run_until_signalled
from octavia_mesh.common.observability import metrics
from octavia_mesh.worker.consumer import CommandConsumer, Provider
from octavia_mesh.worker.deps import AmphoraDeps
from octavia_mesh.worker.drivers.amphora import GrpcAmphoraDriver, NoopAmphoraDriver
from octavia_mesh.worker.drivers.certificates import LocalCertificateDriver
from octavia_mesh.worker.drivers.compute import ComputeDriver, NoopComputeDriver
from octavia_mesh.worker.drivers.namespaces import NamespaceComputeDriver
from octavia_mesh.worker.drivers.shared_host import SharedHostComputeDriver
from octavia_mesh.worker.flows.spares import SparePool
from octavia_mesh.worker.haproxy.render import HaproxyRenderer, create_environment
from octavia_mesh.worker.haproxy.view import connection_cap
from octavia_mesh.worker.providers.amphora import AmphoraProvider
from octavia_mesh.worker.providers.noop import NoopProvider
from octavia_mesh.worker.reconcile import rebuild_lost_amphorae
from octavia_mesh.worker.settings import WorkerSettings
from octavia_mesh.worker.vrrp import render as vrrp_render

logger = logging.getLogger(__name__)


def _amphora_provider(settings: WorkerSettings, sessions: async_sessionmaker[AsyncSession]) -> AmphoraProvider:
    state = Path(settings.state_dir).resolve()
    certificates = LocalCertificateDriver(state / "ca")
    compute: ComputeDriver
    if settings.compute_driver == "local":
        # Local processes; ACTIVE_STANDBY amphorae in network namespaces (which need root).
        local = SharedHostComputeDriver if settings.local_amphorae == "shared" else NamespaceComputeDriver
        compute = local(
            state / "amphorae",
            link_cidr=settings.active_standby_link_cidr,
            health_endpoints=settings.health_endpoints,
            heartbeat_interval_s=settings.heartbeat_interval_s,
        )
    elif settings.compute_driver == "nova":
        compute = nova_driver(settings)
    else:
        compute = NoopComputeDriver()
    amphora = (
        GrpcAmphoraDriver(certificates.controller_certificate())
        if settings.amphora_driver == "grpc"
        else NoopAmphoraDriver()
    )
    return AmphoraProvider(
        AmphoraDeps(
            sessions=sessions,
            compute=compute,
            amphora=amphora,
            certificates=certificates,
            renderer=HaproxyRenderer(create_environment()),
            max_connections=connection_cap(),
            agent_timeout_s=settings.agent_timeout_s,
            cert_validity=dt.timedelta(seconds=settings.amphora_cert_validity_s),
            keyring=secrets.load_keyring(settings.secret_key_file, settings.secret_keys)
            if settings.secret_key_file or settings.secret_keys
            else None,
            vrrp=vrrp_render.VrrpOptions(
                vrrp_render.VrrpRenderer(vrrp_render.create_environment()), advert_int_s=settings.vrrp_advert_int_s
            ),
            network=network.create_driver(settings.network_driver, **_network_options(settings)),
            barbican=BarbicanCertManager(openstack.connect(settings.openstack_cloud))
            if settings.cert_manager == "barbican"
            else None,
            plug_interfaces=settings.plug_interfaces,
        )
    )


def _network_options(settings: WorkerSettings) -> dict[str, str]:
    return {"cloud": settings.openstack_cloud} if settings.network_driver == "neutron" else {}


def nova_driver(settings: WorkerSettings) -> ComputeDriver:
    """The ``nova`` compute driver from the worker's settings (service credentials from ``clouds.yaml``)."""
    from octavia_mesh.worker.drivers.openstack_compute import NovaComputeDriver, NovaOptions  # openstacksdk: lazily

    return NovaComputeDriver(
        openstack.connect(settings.openstack_cloud),
        NovaOptions(
            image_tag=settings.nova_image_tag,
            image_owner=settings.nova_image_owner,
            flavor_id=settings.nova_flavor_id,
            network_id=settings.nova_network_id,
            security_group_ids=settings.nova_security_group_ids,
            key_name=settings.nova_key_name,
            availability_zone=settings.nova_availability_zone,
            config_drive=settings.nova_config_drive,
            agent_port=settings.nova_agent_port,
            boot_timeout_s=settings.nova_boot_timeout_s,
            health_endpoints=settings.health_endpoints,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            log_format=settings.log_format,
            otlp_endpoint=settings.otlp_endpoint,
        ),
    )


def build_providers(settings: WorkerSettings, sessions: async_sessionmaker[AsyncSession]) -> list[Provider]:
    """The providers this worker applies, with their drivers."""
    factories = {"noop": lambda: NoopProvider(sessions), "amphora": lambda: _amphora_provider(settings, sessions)}
    return [factories[name]() for name in settings.providers]


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
    engine = make_engine(settings.database_url)
    read, write = session_factories(engine)
    nats_client, js = await commands.connect(settings.nats_url, "octavia-mesh-worker")
    await commands.ensure_stream(js, settings.stream_replicas)
    providers = build_providers(settings, write)
    consumers = [CommandConsumer(js, write, p, settings.batch_size, settings.ack_wait_s, read) for p in providers]
    for consumer in consumers:
        await consumer.start()
    pools = []
    for provider in providers:
        if isinstance(provider, AmphoraProvider):
            await rebuild_lost_amphorae(write, provider.deps.compute)
            if settings.compute_driver == "local":
                pools.append(
                    SparePool(
                        provider.deps,
                        settings.spare_amphorae,
                        renew_before=dt.timedelta(seconds=settings.spare_cert_renew_before_s),
                    )
                )
    for pool in pools:
        pool.start()
    # Before the health endpoint answers: once the worker is healthy, the API finds what it can build (and what
    # its providers are).
    announcer = capabilities.Announcer(
        js, uuid.uuid4().hex, {p.name: p.capabilities() for p in providers}, {p.name: p.facts() for p in providers}
    )
    await announcer.start()
    server = grpc.aio.server(interceptors=metrics.interceptors(settings.metrics_listen), options=[NO_PORT_SHARING])
    health = ServiceHealth(server, ["octavia_mesh.worker", CONSUMING])
    server.add_insecure_port(settings.grpc_listen)
    _pause_on_signals(consumers, health)
    exposition = metrics.serve(settings.metrics_listen)
    logger.info("worker applying %s; health on %s", ", ".join(settings.providers), settings.grpc_listen)

    async def on_stop() -> None:
        for pool in pools:
            await pool.stop()
        for consumer in consumers:
            await consumer.stop()
        await announcer.stop()
        await close_nats(nats_client)
        await engine.dispose()
        if exposition is not None:
            exposition.close()

    await run_until_signalled(server, health, on_stop)
