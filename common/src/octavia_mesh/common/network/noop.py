"""Octavia's no-op network driver: no network at all, stable answers.

It keeps the address asked for, or hands out ``198.51.100.1`` (TEST-NET-2), and derives port, network and
subnet ids from what the call gave, so a retried create answers the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.common.network import AmphoraInterface, AmphoraVipPort, ListenerAccess, Vip, VipRequest

NOOP_ADDRESS = "198.51.100.1"
_IDS = uuid.UUID("5b0f1c8e-33a3-4c1e-9b8a-0c7d2f4e6a10")


class NoopNetworkDriver:
    """Allocates VIPs on paper and plugs nothing."""

    name = "noop"

    async def allocate_vip(self, session: AsyncSession, request: VipRequest) -> Vip:
        subnet = request.subnet_id
        network = request.network_id or str(uuid.uuid5(_IDS, subnet or request.load_balancer_id))
        if subnet is None and request.network_id:
            subnet = str(uuid.uuid5(_IDS, f"subnet:{network}"))
        extra = tuple(
            {"subnet_id": v.get("subnet_id"), "ip_address": v.get("ip_address") or NOOP_ADDRESS}
            for v in request.additional_vips
        )
        return Vip(
            load_balancer_id=request.load_balancer_id,
            address=request.address or NOOP_ADDRESS,
            port_id=request.port_id or str(uuid.uuid5(_IDS, f"port:{request.load_balancer_id}")),
            subnet_id=subnet,
            network_id=network,
            additional_vips=extra,
        )

    async def deallocate_vip(self, session: AsyncSession, vip: Vip) -> None:
        return None

    async def plug_vip(self, vip: Vip, compute_id: str) -> AmphoraVipPort:
        return AmphoraVipPort(compute_id)

    async def unplug_vip(self, vip: Vip, compute_id: str) -> None:
        return None

    async def plug_member_subnets(self, compute_id: str, subnet_ids: Collection[str]) -> None:
        return None

    async def update_vip(self, vip: Vip, listeners: Sequence[ListenerAccess], topology: str = "SINGLE") -> None:
        return None  # no security groups on loopback

    async def interfaces(self, vip: Vip, compute_id: str) -> Sequence[AmphoraInterface]:
        return ()  # nothing plugged: nothing for the agent to configure

    async def check_security_groups(self, sg_ids: Collection[str]) -> None:
        return None  # no security groups to look up (nor to apply) here
