"""The API service's gRPC server: every edge service, health and reflection."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from types import ModuleType

import grpc

from octavia_mesh.api import edge
from octavia_mesh.api.app import App
from octavia_mesh.api.bridge import Bridge
from octavia_mesh.api.identity import Authenticator
from octavia_mesh.api.reads import Reader
from octavia_mesh.api.resources import (
    amphorae,
    availabilityzoneprofiles,
    availabilityzones,
    flavorprofiles,
    flavors,
    healthmonitors,
    l7policies,
    l7rules,
    listeners,
    loadbalancers,
    members,
    networking,
    pools,
    providers,
    quotas,
    secrets,
    versions,
)
from octavia_mesh.api.resources.barbican import keyring
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.common import capabilities, commands, openstack
from octavia_mesh.common.barbican import BarbicanCertManager
from octavia_mesh.common.commands import close_nats
from octavia_mesh.common.db.engine import make_engine, session_factories
from octavia_mesh.common.grpcserver import NO_PORT_SHARING, ServiceHealth, add_reflection, run_until_signalled
from octavia_mesh.common.observability import metrics, tracing
from octavia_mesh.common.observability.interceptors import RequestContextInterceptor
from octavia_mesh.protos.lbaas.v2 import (
    amphorae_pb2,
    availabilityzoneprofiles_pb2,
    availabilityzones_pb2,
    flavorprofiles_pb2,
    flavors_pb2,
    healthmonitors_pb2,
    l7policies_pb2,
    l7rules_pb2,
    listeners_pb2,
    loadbalancers_pb2,
    members_pb2,
    pools_pb2,
    providers_pb2,
    quotas_pb2,
    versions_pb2,
)
from octavia_mesh.protos.neutron.v2 import networking_pb2

logger = logging.getLogger(__name__)
#: Request metadata the API takes (bytes).
METADATA_LIMIT = 128 * 1024
#: The largest request or reply message (bytes).
MESSAGE_LIMIT = 64 * 1024 * 1024


def services(app: App) -> list[tuple[ModuleType, str, Mapping[str, edge.Handler]]]:
    """Every edge service with its handlers."""
    return [
        (versions_pb2, "Versions", versions.HANDLERS),
        (loadbalancers_pb2, "LoadBalancers", loadbalancers.HANDLERS),
        (listeners_pb2, "Listeners", listeners.HANDLERS),
        (pools_pb2, "Pools", pools.HANDLERS),
        (members_pb2, "Members", members.HANDLERS),
        (healthmonitors_pb2, "HealthMonitors", healthmonitors.HANDLERS),
        (l7policies_pb2, "L7Policies", l7policies.HANDLERS),
        (l7rules_pb2, "L7Rules", l7rules.HANDLERS),
        (quotas_pb2, "Quotas", quotas.HANDLERS),
        (providers_pb2, "Providers", providers.HANDLERS),
        (flavors_pb2, "Flavors", flavors.HANDLERS),
        (flavorprofiles_pb2, "FlavorProfiles", flavorprofiles.HANDLERS),
        (availabilityzones_pb2, "AvailabilityZones", availabilityzones.HANDLERS),
        (
            availabilityzoneprofiles_pb2,
            "AvailabilityZoneProfiles",
            availabilityzoneprofiles.HANDLERS,
        ),
        (amphorae_pb2, "Amphorae", amphorae.HANDLERS),
        (networking_pb2, "Subnets", networking.SUBNET_HANDLERS),
        (networking_pb2, "Networks", networking.NETWORK_HANDLERS),
        (networking_pb2, "FloatingIps", networking.FLOATING_IP_HANDLERS),
    ]


def interceptors(app: App) -> list[grpc.aio.ServerInterceptor]:
    """Counts and latencies (when metrics are on), then OpenTelemetry's span (when tracing is on) around the
    request id and the access line of each call: the gRPC server's and the bridge's, in that order."""
    return [
        *metrics.interceptors(app.settings.metrics_listen),
        *tracing.grpc_server_interceptors(),
        RequestContextInterceptor(generate=True, access_logger=logging.getLogger("octavia_mesh.api.access")),
    ]


def handlers(app: App) -> list[tuple[grpc.GenericRpcHandler, str]]:
    """Every edge service's generic handler with the service's full name."""
    bound = []
    for module, service, service_handlers in services(app):
        public = module is versions_pb2
        bound.append(
            (
                edge.bind(app, module, service, service_handlers, public),
                module.DESCRIPTOR.services_by_name[service].full_name,
            )
        )
    bound.extend(secrets.bindings(app))  # Barbican-shaped faults and raw payloads: their own adapter
    return bound


def create_server(
    listen: str, bound: list[tuple[grpc.GenericRpcHandler, str]], chain: list[grpc.aio.ServerInterceptor]
) -> tuple[grpc.aio.Server, ServiceHealth, int]:
    """Build the server (not started) for the ``bound`` handlers (:func:`handlers`) behind the interceptors
    ``chain`` (:func:`interceptors`); return it with its health switch and bound port."""
    server = grpc.aio.server(
        interceptors=chain,
        options=[
            NO_PORT_SHARING,
            ("grpc.max_receive_message_length", MESSAGE_LIMIT),
            ("grpc.max_send_message_length", MESSAGE_LIMIT),
            # Above Envoy's own 60 KiB request-header limit, so that no header a client can send reaches
            # gRPC's default 8 KiB soft limit (which answered long paths with RESOURCE_EXHAUSTED, a 429).
            ("grpc.max_metadata_size", METADATA_LIMIT),
            ("grpc.absolute_max_metadata_size", METADATA_LIMIT),
        ],
    )
    names = []
    for handler, name in bound:
        server.add_generic_rpc_handlers((handler,))
        names.append(name)
    health = ServiceHealth(server, names)
    add_reflection(server, names)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    return server, health, port


async def start_bridge(
    listen: str, bound: list[tuple[grpc.GenericRpcHandler, str]], chain: list[grpc.aio.ServerInterceptor]
) -> tuple[Bridge, int]:
    """The listener for the edge's unary calls on HTTP/1.1 (:mod:`octavia_mesh.api.bridge`), listening: the
    gRPC server's own handlers and interceptors."""
    bridge = Bridge([h for h, _ in bound], chain, METADATA_LIMIT, MESSAGE_LIMIT)
    host, _, port = listen.rpartition(":")
    return bridge, await bridge.start(host.strip("[]") or "127.0.0.1", int(port))


async def serve(settings: ApiSettings) -> None:
    """Run the API service until SIGTERM/SIGINT."""
    keyring(settings)  # a missing or bad secret store key fails at start-up, not at the first TLS call
    engine = make_engine(settings.database_url)
    read, write = session_factories(engine)
    app = App(
        settings=settings, read=read, write=write, auth=Authenticator(settings), reader=Reader(settings.database_url)
    )
    if settings.cert_manager == "barbican":
        app.barbican = BarbicanCertManager(openstack.connect(settings.openstack_cloud))
    nats_client = None
    if settings.nats_url:
        nats_client, js = await commands.connect(settings.nats_url, "octavia-mesh-api")
        await commands.ensure_stream(js, settings.stream_replicas)
        app.relay = commands.OutboxRelay(write, js, owner=settings.outbox_owner)
        app.relay.start()
        app.provider_capabilities = functools.partial(capabilities.of_provider, js)
        facts = capabilities.FactsReader(js)
        facts.start()
        app.provider_facts = facts
    bound, chain = handlers(app), interceptors(app)  # built once, served on both listeners
    bridge = None
    if settings.bridge_listen:  # listening before the gRPC server reports SERVING
        bridge, bridge_port = await start_bridge(settings.bridge_listen, bound, chain)
        logger.info("API unary calls on HTTP/1.1 listening on %s (port %d)", settings.bridge_listen, bridge_port)
    server, health, port = create_server(settings.grpc_listen, bound, chain)
    logger.info("API service listening on %s (port %d)", settings.grpc_listen, port)
    exposition = metrics.serve(settings.metrics_listen)

    async def on_stop() -> None:
        if bridge is not None:
            await bridge.close(grace=5.0)
        if app.relay is not None:
            await app.relay.stop()
        if isinstance(app.provider_facts, capabilities.FactsReader):
            await app.provider_facts.stop()
        if nats_client is not None:
            await close_nats(nats_client)
        await engine.dispose()
        if app.reader is not None:
            await app.reader.dispose()
        app.auth.close()
        if exposition is not None:
            exposition.close()

    await run_until_signalled(server, health, on_stop)
