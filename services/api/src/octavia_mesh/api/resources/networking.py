"""Neutron-style lookups of the local VIP subnet, its network and its floating IPs (``/v2.0/subnets``,
``/v2.0/networks``, ``/v2.0/floatingips``).

Octavia's CLI resolves ``--vip-subnet-id`` and ``--subnet-id`` through Neutron before it calls Octavia;
answering those few reads for the local subnet lets the unchanged CLI create load balancers end to end
with no Neutron. Anything else is not found, as Neutron would answer.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import NotFound
from octavia_mesh.api.query import parse_query
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.common.lifecycle.status import FOREIGN_ACTIVE

LOCAL_NAME = "octavia-mesh-local-vip"
_EPOCH = "2026-01-01T00:00:00Z"


def local_subnet(settings: ApiSettings) -> dict[str, Any]:
    network = ipaddress.ip_network(settings.local_vip_cidr)
    hosts = list(network.hosts()) if network.num_addresses <= 4 else [network[1], network[-2]]
    return {
        "id": settings.local_vip_subnet_id,
        "name": LOCAL_NAME,
        "tenant_id": "",
        "project_id": "",
        "network_id": settings.local_vip_network_id,
        "ip_version": network.version,
        "cidr": str(network),
        "gateway_ip": None,
        "allocation_pools": [{"start": str(hosts[0]), "end": str(hosts[-1])}],
        "enable_dhcp": False,
        "dns_nameservers": [],
        "host_routes": [],
        "description": "VIPs on this machine's loopback, for the amphora provider",
        "tags": [],
        "subnetpool_id": None,
        "ipv6_ra_mode": None,
        "ipv6_address_mode": None,
        "service_types": [],
        "revision_number": 0,
        "created_at": _EPOCH,
        "updated_at": _EPOCH,
        "shared": True,
    }


def local_network(settings: ApiSettings) -> dict[str, Any]:
    return {
        "id": settings.local_vip_network_id,
        "name": LOCAL_NAME,
        "tenant_id": "",
        "project_id": "",
        "subnets": [settings.local_vip_subnet_id],
        "status": FOREIGN_ACTIVE,  # Neutron's
        "admin_state_up": True,
        "shared": True,
        "mtu": 65536,
        "router:external": False,
        "description": "",
        "tags": [],
        "revision_number": 0,
        "availability_zones": [],
        "created_at": _EPOCH,
        "updated_at": _EPOCH,
    }


def _matches(item: dict[str, Any], query: str) -> bool:
    params = parse_query(query)
    return all(str(item.get(key)) in values for key, values in params.items() if key in ("id", "name", "network_id"))


async def list_subnets(app: App, call: Call) -> Reply:
    subnet = local_subnet(app.settings)
    return Reply(200, {"subnets": [subnet] if _matches(subnet, call.query) else []})


async def get_subnet(app: App, call: Call) -> Reply:
    if call.id != app.settings.local_vip_subnet_id:
        raise NotFound("Subnet", call.id)
    return Reply(200, {"subnet": local_subnet(app.settings)})


async def list_networks(app: App, call: Call) -> Reply:
    network = local_network(app.settings)
    return Reply(200, {"networks": [network] if _matches(network, call.query) else []})


async def get_network(app: App, call: Call) -> Reply:
    if call.id != app.settings.local_vip_network_id:
        raise NotFound("Network", call.id)
    return Reply(200, {"network": local_network(app.settings)})


async def list_floating_ips(app: App, call: Call) -> Reply:
    """No address of the local VIP subnet has a floating IP (they live on this machine's loopback), so every
    lookup (``?port_id=``, ``?floating_ip_address=``, ...) finds none, as Neutron answers a port without one."""
    parse_query(call.query)  # a malformed query string is still a 400
    return Reply(200, {"floatingips": []})


async def get_floating_ip(app: App, call: Call) -> Reply:
    raise NotFound("Floating IP", call.id)


SUBNET_HANDLERS = {"ListSubnets": list_subnets, "GetSubnet": get_subnet}
FLOATING_IP_HANDLERS = {"ListFloatingIps": list_floating_ips, "GetFloatingIp": get_floating_ip}
NETWORK_HANDLERS = {"ListNetworks": list_networks, "GetNetwork": get_network}
