"""The network drivers behind :class:`octavia_mesh.common.network.NetworkDriver`: local and no-op."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common import network
from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.network.local import LocalNetworkDriver, LocalSubnet
from octavia_mesh.common.network.neutron import NeutronNetworkDriver
from octavia_mesh.common.network.noop import NOOP_ADDRESS, NoopNetworkDriver


def test_drivers_by_name_satisfy_the_protocol() -> None:
    local, noop = network.create_driver("local"), network.create_driver("noop")
    assert isinstance(local, LocalNetworkDriver) and isinstance(noop, NoopNetworkDriver)
    assert all(isinstance(d, network.NetworkDriver) for d in (local, noop))
    assert local.subnet == LocalSubnet()
    assert isinstance(NeutronNetworkDriver(connection=None), network.NetworkDriver)  # built by name from clouds.yaml
    assert sorted(network.DRIVERS) == ["local", "neutron", "noop"]
    with pytest.raises(ValueError, match="unknown network driver 'nuetron'; known: local, neutron, noop"):
        network.create_driver("nuetron")


async def test_local_driver_allocates_each_address_once_and_gives_it_back(engine: AsyncEngine) -> None:
    _, write = session_factories(engine)
    subnet = LocalSubnet(str(uuid.uuid4()), str(uuid.uuid4()), "127.97.0.0/30")  # two hosts
    driver = LocalNetworkDriver(subnet)

    def ask(lb: str, **fields: str) -> network.VipRequest:
        return network.VipRequest(lb, "p", subnet_id=subnet.id, **fields)

    async with write() as session, session.begin():
        first = await driver.allocate_vip(session, ask("lb-1"))
        second = await driver.allocate_vip(session, ask("lb-2"))
    assert (first.address, second.address) == ("127.97.0.1", "127.97.0.2")
    assert (first.subnet_id, first.network_id) == (subnet.id, subnet.network_id)
    assert first.port_id != second.port_id
    async with write() as session, session.begin():
        with pytest.raises(network.VipUnavailable, match="is not available: no free address left"):
            await driver.allocate_vip(session, ask("lb-3"))
        with pytest.raises(network.VipUnavailable, match="IP address 127.97.0.2 is not available"):
            await driver.allocate_vip(session, ask("lb-3", address="127.97.0.2"))
        await driver.deallocate_vip(session, first)
        await driver.deallocate_vip(session, first)  # idempotent
    async with write() as session, session.begin():
        assert (await driver.allocate_vip(session, ask("lb-3"))).address == "127.97.0.1"
    # Plugging is nothing on loopback, but answers.
    assert (await driver.plug_vip(second, "amp-1")).compute_id == "amp-1"
    await driver.plug_member_subnets("amp-1", ["s1"])
    await driver.unplug_vip(second, "amp-1")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"port_id": "p-1"}, "Port p-1 not found."),
        ({"network_id": "n-1"}, "Network n-1 not found."),
        ({"subnet_id": "s-1"}, "Subnet s-1 not found."),
        ({"additional_vips": ({"subnet_id": "x"},)}, "additional_vips are not supported"),
    ],
)
async def test_local_driver_refuses_what_it_cannot_give(engine: AsyncEngine, fields: dict, message: str) -> None:
    _, write = session_factories(engine)
    async with write() as session, session.begin():
        with pytest.raises(network.InvalidVip, match=message):
            await LocalNetworkDriver().allocate_vip(session, network.VipRequest("lb-9", "p", **fields))


async def test_noop_driver_keeps_what_it_is_given_and_derives_the_rest(engine: AsyncEngine) -> None:
    _, write = session_factories(engine)
    driver = NoopNetworkDriver()
    async with write() as session:
        plain = await driver.allocate_vip(session, network.VipRequest("lb-1", "p", subnet_id="s"))
        again = await driver.allocate_vip(session, network.VipRequest("lb-1", "p", subnet_id="s"))
        given = await driver.allocate_vip(
            session,
            network.VipRequest.from_values(
                "lb-2",
                "p",
                {"vip_network_id": "n", "vip_address": "203.0.113.5", "additional_vips": [{"subnet_id": "s2"}, 3]},
            ),
        )
    assert plain == again and plain.address == NOOP_ADDRESS and plain.subnet_id == "s"
    assert (given.address, given.network_id) == ("203.0.113.5", "n") and given.subnet_id
    assert given.additional_vips == ({"subnet_id": "s2", "ip_address": NOOP_ADDRESS},)
