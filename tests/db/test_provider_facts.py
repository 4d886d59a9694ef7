"""What the API knows of a provider comes from the registry its workers write, never from its name.

The real API handlers (in this process) over a migrated database and a real NATS registry: providers whose
workers published facts (the in-tree ones with the facts their code declares, and a made-up ``tcponly``), and
``acme``, which published none (an out-of-tree provider, or one whose first worker has not started yet).
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import InvalidInput, NotImplementedByProvider, Unavailable
from octavia_mesh.api.identity import Authenticator
from octavia_mesh.api.policy import Caller
from octavia_mesh.api.resources import flavorprofiles, listeners, loadbalancers, providers
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.api.vip import NOOP_ADDRESS
from octavia_mesh.common import capabilities, commands
from octavia_mesh.common.capabilities import (
    OCTAVIA_FLAVOR_OPTIONS,
    OCTAVIA_ZONE_OPTIONS,
    SINGLE,
    UNKNOWN,
    Capabilities,
    Facts,
    Option,
)
from octavia_mesh.common.db.engine import make_engine, session_factories
from octavia_mesh.common.lifecycle.transitions import settle
from octavia_mesh.worker.providers.amphora import AmphoraProvider
from octavia_mesh.worker.providers.noop import NoopProvider

PROJECT = uuid.uuid4().hex
ADMIN = Caller(project_id=PROJECT, roles=frozenset({"admin"}), noauth=True)
SIZE = Option("size", "How big the appliance is.", "string", ("L", "S"))
#: A provider whose data plane serves no HTTP, with a flavor vocabulary of its own.
TCP_ONLY = Facts(
    unsupported_protocols={"HTTP": "its appliances balance TCP only"},
    vip_from_network=True,
    flavor_options=(SIZE,),
    zone_options=(),
)
PROVIDERS = ("amphora", "noop", "acme", "tcponly")


@pytest.fixture
async def app(database_url: str, js: JetStreamContext, tmp_path: Path) -> AsyncIterator[App]:
    settings = ApiSettings(
        database_url=database_url,
        enabled_provider_drivers=tuple(f"{name}:The {name} provider" for name in PROVIDERS),
        default_provider_driver="noop",
        secret_key_file=str(tmp_path / "secret.key"),
    )
    engine = make_engine(database_url)
    read, write = session_factories(engine)
    workers = capabilities.Announcer(
        js,
        uuid.uuid4().hex,
        {name: Capabilities(frozenset({SINGLE})) for name in ("amphora", "noop", "tcponly")},
        {"amphora": AmphoraProvider.FACTS, "noop": NoopProvider.FACTS, "tcponly": TCP_ONLY},
    )
    await workers.start()
    try:
        yield App(
            settings=settings,
            read=read,
            write=write,
            auth=Authenticator(settings),
            provider_facts=capabilities.FactsReader(js),
        )
    finally:
        await workers.stop()
        await engine.dispose()


def call(body: dict[str, Any] | None = None, ident: str = "") -> Call:
    return Call(caller=ADMIN, body=json.dumps(body).encode() if body is not None else b"", id=ident)


async def new_lb(app: App, provider: str, **fields: Any) -> dict[str, Any]:
    """A load balancer of ``provider``, created and settled as its provider would (ACTIVE)."""
    body = {"provider": provider, "project_id": PROJECT, "vip_subnet_id": str(uuid.uuid4()), **fields}
    reply = await loadbalancers.create(app, call({"loadbalancer": body}))
    lb = reply.body["loadbalancer"]
    async with app.write() as session, session.begin():
        await settle(session, lb["id"], noop=True)
    return lb


async def new_listener(app: App, lb: dict[str, Any], protocol: str, port: int, **fields: Any) -> Reply:
    body = {"listener": {"loadbalancer_id": lb["id"], "protocol": protocol, "protocol_port": port, **fields}}
    reply = await listeners.create(app, call(body))
    async with app.write() as session, session.begin():
        await settle(session, lb["id"], noop=True)
    return reply


def names(reply: Reply, key: str) -> list[str]:
    return [c["name"] for c in reply.body[key]]


async def test_facts_outlive_the_workers_that_published_them(js: JetStreamContext) -> None:
    reader = capabilities.FactsReader(js, cache_s=0)
    assert await reader("ephemeral") is None
    worker = capabilities.Announcer(js, "w1", {"ephemeral": Capabilities(frozenset({SINGLE}))}, {"ephemeral": TCP_ONLY})
    await worker.start()
    assert await capabilities.of_provider(js, "ephemeral") is not None
    assert await reader("ephemeral") == TCP_ONLY
    await worker.stop()
    # What the machines can build goes with the worker; what the provider is stays (a restart changes no answer).
    assert await capabilities.of_provider(js, "ephemeral") is None
    assert await reader("ephemeral") == TCP_ONLY


def test_facts_round_trip_and_default_to_unknown() -> None:
    for facts in (AmphoraProvider.FACTS, NoopProvider.FACTS, TCP_ONLY, UNKNOWN):
        assert Facts.decode(facts.encode()) == facts
    # A key a worker of another version did not write keeps its default.
    assert Facts.decode(b"{}") == UNKNOWN
    assert Facts.decode(b'{"vip_from_network": true}') == Facts(vip_from_network=True)
    assert UNKNOWN.flavor_options == OCTAVIA_FLAVOR_OPTIONS and UNKNOWN.zone_options == OCTAVIA_ZONE_OPTIONS
    assert not UNKNOWN.unsupported_protocols and not UNKNOWN.vip_from_network and UNKNOWN.checks_certificates


async def test_a_reader_keeps_the_facts_it_read_when_nats_is_away(nats_url: str) -> None:
    client, js = await commands.connect(nats_url, "tests-facts")
    worker = capabilities.Announcer(js, "w2", {}, {"kept": TCP_ONLY})
    await worker.start()
    await worker.stop()
    reader = capabilities.FactsReader(js, cache_s=0)
    assert await reader("kept") == TCP_ONLY
    assert await reader("none") is None
    await client.close()
    assert await reader("kept") == TCP_ONLY  # read before: used, however old
    assert await reader("none") is None  # so is having found none
    with pytest.raises(Exception):  # noqa: B017 - whatever nats-py raises on a closed connection
        await reader("never-read")


async def test_an_unreadable_registry_is_a_503_not_a_guess(app: App) -> None:
    async def away(provider: str) -> Facts | None:
        raise ConnectionError("NATS is away")

    app.provider_facts = away
    with pytest.raises(Unavailable) as caught:
        await loadbalancers.create(
            app, call({"loadbalancer": {"provider": "amphora", "vip_subnet_id": str(uuid.uuid4())}})
        )
    assert caught.value.message == "Provider 'amphora' cannot be reached at the moment. Please retry later."
    assert caught.value.http_status == 503


async def test_flavor_and_zone_capabilities_come_from_the_facts(app: App) -> None:
    octavia_flavor = [o.name for o in OCTAVIA_FLAVOR_OPTIONS]
    for provider in ("amphora", "noop", "acme"):  # acme published nothing: Octavia's keys
        assert names(await providers.flavor_capabilities(app, call(ident=provider)), "flavor_capabilities") == (
            octavia_flavor
        )
        zones = await providers.availability_zone_capabilities(app, call(ident=provider))
        assert names(zones, "availability_zone_capabilities") == [o.name for o in OCTAVIA_ZONE_OPTIONS]
    mine = await providers.flavor_capabilities(app, call(ident="tcponly"))
    assert mine.body == {"flavor_capabilities": [{"name": "size", "description": "How big the appliance is."}]}
    zones = await providers.availability_zone_capabilities(app, call(ident="tcponly"))
    assert zones.body == {"availability_zone_capabilities": []}

    profiles = flavorprofiles.PROFILES
    with pytest.raises(NotImplementedByProvider) as caught:
        body = {"name": "p", "provider_name": "tcponly", "flavor_data": '{"loadbalancer_topology": "SINGLE"}'}
        await profiles.create(app, call({"flavorprofile": body}))
    assert caught.value.message == (
        "Provider 'tcponly' does not support a requested option: "
        "Additional properties are not allowed ('loadbalancer_topology' was unexpected)"
    )
    with pytest.raises(NotImplementedByProvider) as caught:
        body = {"name": "p", "provider_name": "tcponly", "flavor_data": '{"size": "M"}'}
        await profiles.create(app, call({"flavorprofile": body}))
    assert (
        caught.value.message
        == "Provider 'tcponly' does not support a requested option: size 'M' is not one of ['L', 'S']"
    )
    for provider in ("tcponly", "acme"):
        data = '{"size": "L"}' if provider == "tcponly" else '{"loadbalancer_topology": "SINGLE"}'
        reply = await profiles.create(
            app, call({"flavorprofile": {"name": "p", "provider_name": provider, "flavor_data": data}})
        )
        assert reply.status == 201


async def test_vips_come_from_the_network_only_for_providers_that_say_so(app: App) -> None:
    local = ipaddress.ip_network(app.settings.local_vip_cidr)
    for provider in ("amphora", "tcponly"):
        lb = await new_lb(app, provider, vip_subnet_id=app.settings.local_vip_subnet_id)
        assert ipaddress.ip_address(lb["vip_address"]) in local, (provider, lb)
    with pytest.raises(InvalidInput):  # the deployment's network knows only its own subnet
        await new_lb(app, "amphora")
    for provider in ("noop", "acme"):  # acme published nothing: no network of ours
        lb = await new_lb(app, provider)
        assert lb["vip_address"] == NOOP_ADDRESS, (provider, lb)


async def test_protocols_a_provider_cannot_serve_are_refused_up_front(app: App) -> None:
    amphora = await new_lb(app, "amphora", vip_subnet_id=app.settings.local_vip_subnet_id)
    tcponly = await new_lb(app, "tcponly", vip_subnet_id=app.settings.local_vip_subnet_id)
    acme = await new_lb(app, "acme")
    for lb, protocol, why in (
        (amphora, "UDP", "UDP listeners need a UDP data plane (HAProxy balances TCP only)"),
        (amphora, "SCTP", "SCTP listeners need an SCTP data plane (HAProxy balances TCP only)"),
        (tcponly, "HTTP", "its appliances balance TCP only"),
    ):
        with pytest.raises(NotImplementedByProvider) as caught:
            await new_listener(app, lb, protocol, 53)
        assert caught.value.message == f"Provider '{lb['provider']}' does not support a requested option: {why}"
        assert caught.value.http_status == 501
    assert (await new_listener(app, tcponly, "TCP", 80)).status == 201
    assert (await new_listener(app, amphora, "HTTP", 80)).status == 201
    # A provider that published nothing is not limited here: it refuses what it cannot build when it applies it.
    for port, protocol in ((53, "UDP"), (54, "SCTP"), (80, "HTTP")):
        assert (await new_listener(app, acme, protocol, port)).status == 201


async def test_certificates_are_checked_unless_the_provider_uses_none(app: App) -> None:
    ref = f"http://127.0.0.1/v1/containers/{uuid.uuid4()}"
    https = {"default_tls_container_ref": ref}
    noop = await new_lb(app, "noop")
    assert (await new_listener(app, noop, "TERMINATED_HTTPS", 443, **https)).status == 201
    for lb in (await new_lb(app, "acme"), await new_lb(app, "amphora", vip_subnet_id=app.settings.local_vip_subnet_id)):
        with pytest.raises(InvalidInput) as caught:
            await new_listener(app, lb, "TERMINATED_HTTPS", 443, **https)
        assert caught.value.message == f"Could not retrieve certificate: {[ref]!r}"
