"""The local VIP subnet: each load balancer's VIP is its own address of a range of 127.0.0.0/8.

HAProxy binds such an address without root and without configuring any interface, so plugging is a no-op
(ACTIVE_STANDBY amphorae in network namespaces get their VIP route from the namespace compute driver). The
allocations are rows of ``vip_allocation`` (:mod:`octavia_mesh.common.db.vips`), written in the create's
transaction, so two concurrent creates never get the same address.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.common.db import vips
from octavia_mesh.common.network import (
    AmphoraInterface,
    AmphoraVipPort,
    InvalidVip,
    ListenerAccess,
    Vip,
    VipRequest,
    VipUnavailable,
)

#: The ids and range ``octavia-mesh`` uses unless configured otherwise (the API's settings name them).
DEFAULT_SUBNET_ID = "7a9d3c2e-5b1f-4e8a-9c6d-0f2b4a6e8d10"
DEFAULT_NETWORK_ID = "0c5b7e3a-9d2f-4b6e-8a1c-3e5f7a9b1d20"
DEFAULT_CIDR = "127.226.0.0/16"
#: Port ids are derived from the load balancer id, so the same create always names the same port.
PORT_IDS = uuid.UUID("5b0f1c8e-33a3-4c1e-9b8a-0c7d2f4e6a10")


@dataclass(frozen=True, slots=True)
class LocalSubnet:
    id: str = DEFAULT_SUBNET_ID
    network_id: str = DEFAULT_NETWORK_ID
    cidr: str = DEFAULT_CIDR


class LocalNetworkDriver:
    """VIPs on the local VIP subnet; one per load balancer."""

    name = "local"

    def __init__(self, subnet: LocalSubnet | None = None) -> None:
        self.subnet = subnet or LocalSubnet()

    async def allocate_vip(self, session: AsyncSession, request: VipRequest) -> Vip:
        subnet = self.subnet
        if request.port_id:
            raise InvalidVip(f"Port {request.port_id} not found.")
        if request.network_id and request.network_id != subnet.network_id:
            raise InvalidVip(f"Network {request.network_id} not found.")
        if request.subnet_id and request.subnet_id != subnet.id:
            raise InvalidVip(f"Subnet {request.subnet_id} not found.")
        if request.additional_vips:
            raise InvalidVip(
                "The local VIP subnet offers one VIP per load balancer: additional_vips are not supported."
            )
        try:
            address = await vips.allocate(session, subnet.id, subnet.cidr, request.load_balancer_id, request.address)
        except vips.AddressUnavailable as exc:
            raise VipUnavailable(
                f"IP address {request.address or ''} is not available: {exc}".replace("  ", " ")
            ) from None
        return Vip(
            load_balancer_id=request.load_balancer_id,
            address=address,
            port_id=str(uuid.uuid5(PORT_IDS, f"port:{request.load_balancer_id}")),
            subnet_id=subnet.id,
            network_id=subnet.network_id,
        )

    async def deallocate_vip(self, session: AsyncSession, vip: Vip) -> None:
        await vips.release(session, vip.load_balancer_id)

    async def plug_vip(self, vip: Vip, compute_id: str) -> AmphoraVipPort:
        return AmphoraVipPort(compute_id)  # loopback: every local process can bind the address

    async def unplug_vip(self, vip: Vip, compute_id: str) -> None:
        return None

    async def plug_member_subnets(self, compute_id: str, subnet_ids: Collection[str]) -> None:
        return None  # members are reached through the host's own routes

    async def update_vip(self, vip: Vip, listeners: Sequence[ListenerAccess], topology: str = "SINGLE") -> None:
        return None  # no security groups on loopback

    async def interfaces(self, vip: Vip, compute_id: str) -> Sequence[AmphoraInterface]:
        return ()  # nothing plugged: nothing for the agent to configure

    async def check_security_groups(self, sg_ids: Collection[str]) -> None:
        return None  # no security groups to look up (nor to apply) here
