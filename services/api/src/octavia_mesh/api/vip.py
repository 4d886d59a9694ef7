"""Choosing a new load balancer's VIP.

* The ``amphora`` provider serves VIPs on this machine: each load balancer gets its own address from the
  local VIP subnet, a range of 127.0.0.0/8 (no root needed), allocated once and given back on delete.
  That subnet has a stable id (settings ``local_vip_subnet_id``), which ``octavia-mesh up`` prints and the
  edge answers Neutron-style subnet lookups for.
* The ``noop`` provider has no network: like Octavia's no-op network driver, it keeps the address asked
  for, or hands out ``198.51.100.1`` (TEST-NET-2), and derives stable port and network ids.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api.errors import Conflict, InvalidInput
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.common.db import vips

NOOP_ADDRESS = "198.51.100.1"
_NAMESPACE = uuid.UUID("5b0f1c8e-33a3-4c1e-9b8a-0c7d2f4e6a10")
#: Providers whose VIPs live on the local VIP subnet.
LOCAL_PROVIDERS = ("amphora",)


@dataclass(frozen=True, slots=True)
class VipAddress:
    address: str
    port_id: str
    subnet_id: str | None
    network_id: str
    additional_vips: list[dict[str, Any]] = field(default_factory=list)


async def allocate(
    settings: ApiSettings, session: AsyncSession, provider: str, values: dict[str, Any], lb_id: str
) -> VipAddress:
    """Choose the VIP of a new load balancer of ``provider`` from its request ``values``."""
    if provider in LOCAL_PROVIDERS:
        return await _local(settings, session, values, lb_id)
    return _noop(values, lb_id)


async def _local(settings: ApiSettings, session: AsyncSession, values: dict[str, Any], lb_id: str) -> VipAddress:
    subnet, network = values.get("vip_subnet_id"), values.get("vip_network_id")
    if values.get("vip_port_id"):
        raise InvalidInput(f"Port {values['vip_port_id']} not found.")
    if network and network != settings.local_vip_network_id:
        raise InvalidInput(f"Network {network} not found.")
    if subnet and subnet != settings.local_vip_subnet_id:
        raise InvalidInput(f"Subnet {subnet} not found.")
    if values.get("additional_vips"):
        raise InvalidInput("The local VIP subnet offers one VIP per load balancer: additional_vips are not supported.")
    try:
        address = await vips.allocate(
            session, settings.local_vip_subnet_id, settings.local_vip_cidr, lb_id, values.get("vip_address")
        )
    except vips.AddressUnavailable as exc:
        raise Conflict(
            f"IP address {values.get('vip_address') or ''} is not available: {exc}".replace("  ", " ")
        ) from None
    return VipAddress(
        address=address,
        port_id=str(uuid.uuid5(_NAMESPACE, f"port:{lb_id}")),
        subnet_id=settings.local_vip_subnet_id,
        network_id=settings.local_vip_network_id,
    )


def _noop(values: dict[str, Any], lb_id: str) -> VipAddress:
    subnet = values.get("vip_subnet_id")
    network = values.get("vip_network_id") or str(uuid.uuid5(_NAMESPACE, subnet or lb_id))
    if subnet is None and values.get("vip_network_id"):
        subnet = str(uuid.uuid5(_NAMESPACE, f"subnet:{network}"))
    extra = [
        {"subnet_id": v.get("subnet_id"), "ip_address": v.get("ip_address") or NOOP_ADDRESS}
        for v in values.get("additional_vips") or []
        if isinstance(v, dict)
    ]
    return VipAddress(
        address=values.get("vip_address") or NOOP_ADDRESS,
        port_id=values.get("vip_port_id") or str(uuid.uuid5(_NAMESPACE, f"port:{lb_id}")),
        subnet_id=subnet,
        network_id=network,
        additional_vips=extra,
    )
