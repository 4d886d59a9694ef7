"""The ``neutron`` network driver against Neutron (and Nova's ``os-interface``) faked at their HTTP boundary."""

from __future__ import annotations

import uuid

import pytest
from fake_cloud import MEMBER_NET, MEMBER_SUBNET, VIP_NET, VIP_SUBNET, VIP_SUBNET_V6, FakeCloud

from octavia_mesh.common.network import InvalidVip, ListenerAccess, NetworkError, Vip, VipRequest, VipUnavailable
from octavia_mesh.common.network.neutron import OCTAVIA_OWNER, NeutronNetworkDriver


def _driver(cloud: FakeCloud) -> NeutronNetworkDriver:
    return NeutronNetworkDriver(cloud.connection())


def _request(**values: object) -> VipRequest:
    return VipRequest(load_balancer_id=str(uuid.uuid4()), project_id="proj-1", **values)  # type: ignore[arg-type]


def _ports(cloud: FakeCloud, **match: object) -> list[dict]:
    return [p for p in cloud.neutron.ports() if all(p.get(k) == v for k, v in match.items())]


def _ingress(cloud: FakeCloud, group_id: str) -> set[tuple]:
    return {
        (r["protocol"], r["port_range_min"], r["remote_ip_prefix"], r["remote_group_id"])
        for r in cloud.neutron.rules()
        if r["security_group_id"] == group_id and r["direction"] == "ingress"
    }


async def test_vip_port_allocation_and_refusals(cloud: FakeCloud) -> None:
    driver = _driver(cloud)
    request = _request(subnet_id=VIP_SUBNET)
    vip = await driver.allocate_vip(None, request)  # type: ignore[arg-type]
    (port,) = cloud.neutron.ports()
    assert port["name"] == f"octavia-lb-{request.load_balancer_id}" and port["device_owner"] == OCTAVIA_OWNER
    assert port["admin_state_up"] is False and port["project_id"] == "proj-1"
    assert port["device_id"] == f"lb-{request.load_balancer_id}"
    assert (vip.address, vip.port_id, vip.subnet_id, vip.network_id) == ("10.0.0.1", port["id"], VIP_SUBNET, VIP_NET)

    asked = await driver.allocate_vip(None, _request(subnet_id=VIP_SUBNET, address="10.0.0.77"))  # type: ignore[arg-type]
    assert asked.address == "10.0.0.77"
    with pytest.raises(VipUnavailable, match=r"10\.0\.0\.77 is not available"):
        await driver.allocate_vip(None, _request(subnet_id=VIP_SUBNET, address="10.0.0.77"))  # type: ignore[arg-type]
    with pytest.raises(InvalidVip, match="Subnet 00000000-0000-4000-8000-000000000000 not found"):
        await driver.allocate_vip(None, _request(subnet_id="00000000-0000-4000-8000-000000000000"))  # type: ignore[arg-type]
    with pytest.raises(InvalidVip, match="Port"):
        await driver.allocate_vip(None, _request(port_id=str(uuid.uuid4())))  # type: ignore[arg-type]
    with pytest.raises(InvalidVip, match="QoS Policy"):
        await driver.allocate_vip(None, _request(subnet_id=VIP_SUBNET, qos_policy_id=str(uuid.uuid4())))  # type: ignore[arg-type]
    assert len(cloud.neutron.ports()) == 2  # refusals create nothing

    qos = str(uuid.uuid4())
    cloud.neutron.qos_policies[qos] = {"id": qos, "name": "gold", "rules": []}
    by_network = await driver.allocate_vip(None, _request(network_id=VIP_NET, qos_policy_id=qos))  # type: ignore[arg-type]
    assert by_network.subnet_id == VIP_SUBNET and by_network.qos_policy_id == qos
    assert _ports(cloud, id=by_network.port_id)[0]["qos_policy_id"] == qos

    # The user's own port: its address is the VIP, and deallocation leaves it alone.
    user_port = cloud.neutron._create_port({"network_id": VIP_NET, "name": "mine"})[1]["port"]
    own = await driver.allocate_vip(None, _request(port_id=user_port["id"]))  # type: ignore[arg-type]
    assert (own.port_id, own.address, own.network_id) == (
        user_port["id"],
        user_port["fixed_ips"][0]["ip_address"],
        VIP_NET,
    )
    await driver.deallocate_vip(None, own)  # type: ignore[arg-type]
    assert _ports(cloud, id=user_port["id"])
    await driver.deallocate_vip(None, vip)  # type: ignore[arg-type]
    assert not _ports(cloud, id=vip.port_id)
    await driver.deallocate_vip(None, vip)  # type: ignore[arg-type]  # idempotent


async def test_plugging_security_group_and_unplugging(cloud: FakeCloud) -> None:
    driver = _driver(cloud)
    qos = str(uuid.uuid4())
    cloud.neutron.qos_policies[qos] = {"id": qos, "name": "gold", "rules": []}
    vip: Vip = await driver.allocate_vip(None, _request(subnet_id=VIP_SUBNET, qos_policy_id=qos))  # type: ignore[arg-type]
    master, backup = cloud.nova.add_server("amphora-a"), cloud.nova.add_server("amphora-b")

    assert not await driver.vip_plugged(vip, master)
    plugged = await driver.plug_vip(vip, master)
    assert await driver.vip_plugged(vip, master)
    assert await driver.plug_vip(vip, master) == plugged  # idempotent
    await driver.plug_vip(vip, backup)
    (group,) = cloud.neutron.items["security-groups"].values()
    assert group["name"] == f"lb-{vip.load_balancer_id}"
    for server in (master, backup):
        (port,) = _ports(cloud, device_id=server)
        assert port["name"] == f"octavia-lb-vrrp-{server}" and port["network_id"] == VIP_NET
        assert port["allowed_address_pairs"] == [{"ip_address": vip.address}]  # either amphora may hold the VIP
        assert port["security_groups"] == [group["id"]] and port["qos_policy_id"] == qos
    assert plugged.port_id == _ports(cloud, device_id=master)[0]["id"]
    assert plugged.address == _ports(cloud, device_id=master)[0]["fixed_ips"][0]["ip_address"]

    listeners = [
        ListenerAccess("HTTP", 80),
        ListenerAccess("TERMINATED_HTTPS", 443, ("192.0.2.0/24", "10.9.0.0/16")),
        ListenerAccess("UDP", 53),
    ]
    await driver.update_vip(vip, listeners, "ACTIVE_STANDBY")
    assert _ingress(cloud, group["id"]) == {
        ("tcp", 80, "0.0.0.0/0", None),
        ("tcp", 443, "192.0.2.0/24", None),
        ("tcp", 443, "10.9.0.0/16", None),
        ("udp", 53, "0.0.0.0/0", None),
        ("112", None, None, group["id"]),  # VRRP between the pair
    }
    await driver.update_vip(vip, listeners, "ACTIVE_STANDBY")  # idempotent: no duplicate rule (Neutron: 409)
    await driver.update_vip(vip, [ListenerAccess("TCP", 443, ("192.0.2.0/24",))], "SINGLE")
    assert _ingress(cloud, group["id"]) == {("tcp", 443, "192.0.2.0/24", None)}
    egress = [r for r in cloud.neutron.rules() if r["direction"] == "egress"]
    assert len(egress) == 2  # Neutron's defaults stay

    await driver.plug_member_subnets(master, [MEMBER_SUBNET])
    await driver.plug_member_subnets(master, [MEMBER_SUBNET])
    (member_port,) = _ports(cloud, network_id=MEMBER_NET)
    assert member_port["device_id"] == master and member_port["name"] == f"octavia-member-{master}-{MEMBER_SUBNET}"
    await driver.plug_member_subnets(master, [])
    assert not _ports(cloud, network_id=MEMBER_NET)

    await driver.unplug_vip(vip, master)
    await driver.unplug_vip(vip, master)
    assert not await driver.vip_plugged(vip, master) and await driver.vip_plugged(vip, backup)
    assert not _ports(cloud, device_id=master) and len(_ports(cloud, device_id=backup)) == 1
    with pytest.raises(Exception, match="in use"):  # the backup's port still uses the group
        await driver.deallocate_vip(None, vip)  # type: ignore[arg-type]
    await driver.unplug_vip(vip, backup)
    await driver.deallocate_vip(None, vip)  # type: ignore[arg-type]
    assert cloud.neutron.ports() == [] and cloud.neutron.items["security-groups"] == {}


async def test_failed_plug_leaks_no_port(cloud: FakeCloud) -> None:
    driver = _driver(cloud)
    vip = await driver.allocate_vip(None, _request(subnet_id=VIP_SUBNET))  # type: ignore[arg-type]
    gone = str(uuid.uuid4())  # a server Nova does not know
    with pytest.raises(NetworkError, match="not found"):
        await driver.plug_vip(vip, gone)
    with pytest.raises(NetworkError, match="not found"):
        await driver.plug_member_subnets(gone, [MEMBER_SUBNET])
    assert [p["id"] for p in cloud.neutron.ports()] == [vip.port_id]


async def test_additional_vips_are_fixed_ips_of_the_vip_port_and_pairs_of_each_amphora(cloud: FakeCloud) -> None:
    driver = _driver(cloud)
    other = str(uuid.uuid4())
    refusals = [
        ([{"subnet_id": VIP_SUBNET}], "Duplicate VIP subnet"),  # the primary's subnet again
        ([{"subnet_id": VIP_SUBNET_V6}, {"subnet_id": VIP_SUBNET_V6}], "Duplicate VIP subnet"),
        ([{"subnet_id": MEMBER_SUBNET}], "All VIP subnets must belong to the same network."),
        ([{"subnet_id": other}], f"Subnet {other} not found"),
        ([{"ip_address": "fd00:b::9"}], "needs a subnet_id"),
    ]
    for extra, message in refusals:
        with pytest.raises(InvalidVip, match=message):
            await driver.allocate_vip(None, _request(subnet_id=VIP_SUBNET, additional_vips=tuple(extra)))  # type: ignore[arg-type]
    assert cloud.neutron.ports() == []  # refused before anything was created

    request = _request(subnet_id=VIP_SUBNET, additional_vips=({"subnet_id": VIP_SUBNET_V6, "ip_address": "fd00:b::9"},))
    vip = await driver.allocate_vip(None, request)  # type: ignore[arg-type]
    (port,) = cloud.neutron.ports()
    assert [ip["subnet_id"] for ip in port["fixed_ips"]] == [VIP_SUBNET, VIP_SUBNET_V6]
    assert vip.additional_vips == ({"subnet_id": VIP_SUBNET_V6, "ip_address": "fd00:b::9"},)
    by_network = await driver.allocate_vip(
        None, _request(network_id=VIP_NET, additional_vips=({"subnet_id": VIP_SUBNET_V6},))
    )  # type: ignore[arg-type]
    assert by_network.subnet_id == VIP_SUBNET and by_network.additional_vips[0]["ip_address"].startswith("fd00:b::")

    server = cloud.nova.add_server("amphora-a")
    await driver.plug_vip(vip, server)
    (vrrp,) = _ports(cloud, device_id=server)
    assert vrrp["allowed_address_pairs"] == [{"ip_address": vip.address}, {"ip_address": "fd00:b::9"}]
    assert await driver.vip_plugged(vip, server)
    await driver.update_vip(vip, [ListenerAccess("HTTP", 80)])
    group = vrrp["security_groups"][0]
    assert _ingress(cloud, group) == {("tcp", 80, "0.0.0.0/0", None), ("tcp", 80, "::/0", None)}  # both families

    (interface,) = await driver.interfaces(vip, server)  # what the amphora's agent is told to configure
    assert interface.mac_address == vrrp["mac_address"] and interface.network_id == VIP_NET and interface.mtu == 1450
    assert interface.fixed_ips == ((vrrp["fixed_ips"][0]["ip_address"], "10.0.0.0/24"),)
    assert interface.vips == ((vip.address, "10.0.0.0/24"), ("fd00:b::9", "fd00:b::/64"))
    await driver.plug_member_subnets(server, [MEMBER_SUBNET])
    _, member = await driver.interfaces(vip, server)
    assert member.network_id == MEMBER_NET and not member.is_vip and member.fixed_ips[0][1] == "10.1.0.0/24"

    await driver.plug_member_subnets(server, [])
    await driver.unplug_vip(vip, server)
    for allocated in (vip, by_network):
        await driver.deallocate_vip(None, allocated)  # type: ignore[arg-type]
    assert cloud.neutron.ports() == [] and cloud.neutron.items["security-groups"] == {}


async def test_vip_security_groups_replace_the_listener_rules(cloud: FakeCloud) -> None:
    driver = _driver(cloud)
    missing = str(uuid.uuid4())
    with pytest.raises(InvalidVip, match=f"Security Group {missing} not found"):
        await driver.allocate_vip(None, _request(subnet_id=VIP_SUBNET, sg_ids=(missing,)))  # type: ignore[arg-type]
    with pytest.raises(InvalidVip, match=f"Security Group {missing} not found"):
        await driver.check_security_groups([missing])
    users = [cloud.neutron._create_security_group({"name": n})[1]["security_group"]["id"] for n in ("web", "ops")]
    await driver.check_security_groups(users)

    vip = await driver.allocate_vip(None, _request(subnet_id=VIP_SUBNET, sg_ids=(users[0],)))  # type: ignore[arg-type]
    assert vip.sg_ids == (users[0],) and _ports(cloud, id=vip.port_id)[0]["security_groups"] == [users[0]]
    master, backup = cloud.nova.add_server("amphora-a"), cloud.nova.add_server("amphora-b")
    for server in (master, backup):
        await driver.plug_vip(vip, server)
    (ours,) = [g["id"] for g in cloud.neutron.items["security-groups"].values() if g["name"].startswith("lb-")]
    await driver.update_vip(vip, [ListenerAccess("HTTP", 80), ListenerAccess("TCP", 22)], "ACTIVE_STANDBY")
    assert _ingress(cloud, ours) == {("112", None, None, ours)}  # VRRP only: the user's groups decide the rest
    for port in _ports(cloud, network_id=VIP_NET):
        assert port["security_groups"] == [ours, users[0]], port["name"]

    # vip_sg_ids changed (a load-balancer update): every port of the VIP follows; emptied, our rules return.
    changed = Vip(vip.load_balancer_id, vip.address, vip.port_id, vip.subnet_id, vip.network_id, sg_ids=(users[1],))
    await driver.update_vip(changed, [ListenerAccess("HTTP", 80)], "ACTIVE_STANDBY")
    assert {tuple(p["security_groups"]) for p in _ports(cloud, network_id=VIP_NET)} == {(ours, users[1])}
    assert await driver.vip_plugged(changed, master)
    cleared = Vip(vip.load_balancer_id, vip.address, vip.port_id, vip.subnet_id, vip.network_id)
    await driver.update_vip(cleared, [ListenerAccess("HTTP", 80)], "SINGLE")
    assert _ingress(cloud, ours) == {("tcp", 80, "0.0.0.0/0", None)}
    assert {tuple(p["security_groups"]) for p in _ports(cloud, network_id=VIP_NET)} == {(ours,)}

    for server in (master, backup):
        await driver.unplug_vip(cleared, server)
    await driver.deallocate_vip(None, cleared)  # type: ignore[arg-type]
    assert cloud.neutron.ports() == []
    assert sorted(cloud.neutron.items["security-groups"]) == sorted(users)  # the user's groups stay
