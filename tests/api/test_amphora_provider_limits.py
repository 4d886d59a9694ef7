"""What the amphora provider cannot serve yet is refused up front with Octavia's 501, never left PENDING_*."""

from __future__ import annotations

import ipaddress

import pytest
from support import PROJECT, VIP_CIDR_VAR, Rest, assert_fault, vip_network

from octavia_mesh.cli.mesh import Mesh


@pytest.fixture(scope="module")
def mesh(envoy_mesh: Mesh) -> Mesh:
    """This module boots amphorae (the amphora provider): the whole mesh, not the fast tier's light one, which
    runs no health service for their heartbeats."""
    return envoy_mesh


@pytest.fixture(scope="module")
def rest(envoy_rest: Rest) -> Rest:
    return envoy_rest


LBS = "/v2/lbaas/loadbalancers"


@pytest.fixture(scope="module")
def amphora_lb(mesh: Mesh, rest: Rest) -> dict:
    subnet = rest.ok("GET", "/v2.0/subnets")["subnets"][0]["id"]
    lb = rest.ok(
        "POST",
        LBS,
        {"loadbalancer": {"name": "amp-limits", "vip_subnet_id": subnet, "project_id": PROJECT, "provider": "amphora"}},
    )["loadbalancer"]
    assert ipaddress.ip_address(lb["vip_address"]) in vip_network(mesh) and lb["vip_subnet_id"] == subnet
    yield rest.wait_lb_active(lb["id"])
    rest.delete(f"{LBS}/{lb['id']}?cascade=true")


@pytest.mark.parametrize(
    ("protocol", "why"),
    [
        ("UDP", "UDP listeners need a UDP data plane (HAProxy balances TCP only)"),
        ("SCTP", "SCTP listeners need an SCTP data plane (HAProxy balances TCP only)"),
    ],
)
def test_udp_and_sctp_refused(rest: Rest, amphora_lb: dict, protocol: str, why: str) -> None:
    response = rest.post(
        "/v2/lbaas/listeners",
        {"listener": {"loadbalancer_id": amphora_lb["id"], "protocol": protocol, "protocol_port": 53}},
    )
    assert_fault(response, 501, f"Provider 'amphora' does not support a requested option: {why}")
    assert rest.ok("GET", f"/v2/lbaas/listeners?loadbalancer_id={amphora_lb['id']}")["listeners"] == []
    assert rest.ok("GET", f"{LBS}/{amphora_lb['id']}")["loadbalancer"]["provisioning_status"] == "ACTIVE"


def test_local_subnet_only(rest: Rest) -> None:
    other = "11111111-1111-1111-1111-111111111111"
    response = rest.post(
        LBS,
        {"loadbalancer": {"vip_subnet_id": other, "project_id": PROJECT, "provider": "amphora", "name": "elsewhere"}},
    )
    assert_fault(response, 400, f"Subnet {other} not found.")
    assert rest.ok("GET", f"{LBS}?name=elsewhere")["loadbalancers"] == []


def test_requested_vip_is_honoured_once(rest: Rest, amphora_lb: dict) -> None:
    subnet = amphora_lb["vip_subnet_id"]
    taken = amphora_lb["vip_address"]
    response = rest.post(
        LBS,
        {"loadbalancer": {"vip_subnet_id": subnet, "vip_address": taken, "project_id": PROJECT, "provider": "amphora"}},
    )
    assert response.status_code == 409 and taken in response.json()["faultstring"]


def test_neutron_style_lookups(mesh: Mesh, rest: Rest) -> None:
    (subnet,) = rest.ok("GET", "/v2.0/subnets")["subnets"]
    assert subnet["cidr"] == mesh.options.service_env[VIP_CIDR_VAR] and subnet["ip_version"] == 4
    assert rest.ok("GET", f"/v2.0/subnets?id={subnet['id']}")["subnets"] == [subnet]
    assert rest.ok("GET", "/v2.0/subnets?id=11111111-1111-1111-1111-111111111111")["subnets"] == []
    assert rest.ok("GET", f"/v2/subnets/{subnet['id']}")["subnet"] == subnet
    (network,) = rest.ok("GET", "/v2.0/networks")["networks"]
    assert network["subnets"] == [subnet["id"]] and network["id"] == subnet["network_id"]
    assert rest.get("/v2.0/subnets/11111111-1111-1111-1111-111111111111").status_code == 404


def test_floating_ip_lookups(rest: Rest) -> None:
    """Addresses of the local VIP subnet have no floating IP: Neutron's lookups (Ansible's
    openstack.cloud.loadbalancer makes them on every run) find none."""
    lb = rest.create_lb(name="fip-lookup")
    for query in ("", f"?port_id={lb['vip_port_id']}", f"?floating_ip_address={lb['vip_address']}", "?fields=id"):
        assert rest.ok("GET", f"/v2.0/floatingips{query}") == {"floatingips": []}, query
    assert rest.ok("GET", "/v2/floatingips") == {"floatingips": []}
    assert_fault(rest.get(f"/v2.0/floatingips/{lb['id']}"), 404, f"Floating IP {lb['id']} not found.")
    assert rest.delete(f"{LBS}/{lb['id']}").status_code == 204
