"""VIP allocation for load balancers whose provider has no network of its own (the noop provider).

Like Octavia's no-op network driver, it keeps the address the caller asked
for, or hands out ``198.51.100.1`` (TEST-NET-2), and derives stable port and
network ids. The amphora provider replaces this with real local VIPs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

NOOP_ADDRESS = "198.51.100.1"
_NAMESPACE = uuid.UUID("5b0f1c8e-33a3-4c1e-9b8a-0c7d2f4e6a10")


@dataclass(frozen=True, slots=True)
class VipAddress:
    address: str
    port_id: str
    subnet_id: str | None
    network_id: str
    additional_vips: list[dict[str, Any]] = field(default_factory=list)


def allocate(values: dict[str, Any], lb_id: str) -> VipAddress:
    """Choose the VIP of a new load balancer from its request ``values``."""
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
