"""The plugging calls of ``octavia_mesh.agent.v1.AmphoraAgent`` (``PlugVip``, ``PlugNetwork``): protos in and out
of :mod:`octavia_mesh.amphora_agent.plug`."""

from __future__ import annotations

import ipaddress
import re

import grpc
from pyroute2 import NetlinkError

from octavia_mesh.amphora_agent.agent import NotConfigured
from octavia_mesh.amphora_agent.errors import mapped
from octavia_mesh.amphora_agent.plug import Address, Port, plug_network, plug_vip
from octavia_mesh.protos.agent.v1 import agent_pb2

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def _addresses(items: object, field: str) -> tuple[Address, ...]:
    out = []
    for item in items:  # type: ignore[attr-defined]
        try:
            address = ipaddress.ip_address(item.address)
        except ValueError:
            raise ValueError(f"{field}: {item.address!r} is not an IP address") from None
        if not 0 <= item.prefix_length <= address.max_prefixlen:
            raise ValueError(f"{field}: prefix length {item.prefix_length} of {item.address}")
        out.append(Address(address.compressed, item.prefix_length))
    return tuple(out)


def _routes(items: object) -> tuple[tuple[str, str], ...]:
    out = []
    for route in items:  # type: ignore[attr-defined]
        try:
            out.append(
                (str(ipaddress.ip_network(route.destination, strict=False)), str(ipaddress.ip_address(route.next_hop)))
            )
        except ValueError as exc:
            raise ValueError(f"host_routes: {exc}") from None
    return tuple(out)


def _mac(value: str) -> str:
    if not _MAC.match(value):
        raise ValueError(f"mac_address: {value!r} is not a MAC address")
    return value.lower()


class PlugHandlers:
    """Mixed into the agent's servicer."""

    @mapped
    async def PlugVip(
        self, request: agent_pb2.PlugVipRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.PlugVipResponse:
        if not request.vips:
            raise ValueError("vips: at least the VIP is required")
        if request.gateway:
            ipaddress.ip_address(request.gateway)  # a ValueError names it
        port = Port(
            mac_address=_mac(request.mac_address),
            addresses=_addresses(request.addresses, "addresses"),
            vips=_addresses(request.vips, "vips"),
            gateway=request.gateway,
            host_routes=_routes(request.host_routes),
            mtu=request.mtu,
        )
        try:
            name = await plug_vip(port, request.vrrp_managed)
        except NetlinkError as exc:  # not root, or the kernel refused: this amphora cannot configure it
            raise NotConfigured(f"configuring the VIP port failed: {exc}") from None
        return agent_pb2.PlugVipResponse(interface=name)

    @mapped
    async def PlugNetwork(
        self, request: agent_pb2.PlugNetworkRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.PlugNetworkResponse:
        port = Port(
            mac_address=_mac(request.mac_address),
            addresses=_addresses(request.addresses, "addresses"),
            host_routes=_routes(request.host_routes),
            mtu=request.mtu,
        )
        try:
            name = await plug_network(port)
        except NetlinkError as exc:
            raise NotConfigured(f"configuring the member port failed: {exc}") from None
        return agent_pb2.PlugNetworkResponse(interface=name)
