"""Configuring the ports the controller attaches to the amphora's server (Octavia's ``plug_vip`` and
``plug_network`` amphora calls), with pyroute2 (netlink; what Octavia's own amphora agent uses).

The controller creates a Neutron port and has Nova attach it; inside the VM a new interface appears, with the
port's MAC address and no configuration. The agent is told the MAC, the port's addresses (with their subnets'
prefixes), the gateway, host routes and MTU, and for the VIP's port the VIPs:

* **VIP port** (:func:`plug_vip`): MTU, up, the port's own addresses and (SINGLE) the VIPs as host addresses
  (/32, /128: the connected route comes from the subnet route below; an ACTIVE_STANDBY amphora's keepalived
  adds and removes them). Replies must leave through the port the request came in by, not the management
  network's default route, so, as Octavia's amphora does, the subnet and its gateway go in a routing table of
  the interface's own (``1000 + ifindex``) and a rule sends traffic *from* each of the port's and the VIPs'
  addresses to it.
* **Member port** (:func:`plug_network`): MTU, up, its addresses (their subnet routes come with them) and the
  subnet's host routes in the main table.

Every call is repeatable and converges: addresses not asked for any more are removed (IPv6 link-local ones
stay, and VIPs keepalived holds stay when keepalived manages them). The configuration lives in the kernel only:
a rebooted amphora is rebuilt by a failover, as Octavia's are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from octavia_mesh.amphora_agent.agent import NotFound

#: A just-attached port's interface may take a moment to appear in the VM (PCI hot-plug, udev).
APPEAR_TIMEOUT_S = 10.0
#: Rules from the VIP port's addresses come before the main table's (priority 32766).
RULE_PRIORITY = 100
TABLE_BASE = 1000


@dataclass(frozen=True, slots=True)
class Address:
    address: str
    prefix_length: int

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.address)

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_interface(f"{self.address}/{self.prefix_length}").network

    @property
    def family(self) -> int:
        return socket.AF_INET6 if self.ip.version == 6 else socket.AF_INET

    @property
    def host_prefix(self) -> int:
        return 128 if self.ip.version == 6 else 32


@dataclass(frozen=True, slots=True)
class Port:
    """What the controller says of one attached port."""

    mac_address: str
    addresses: tuple[Address, ...] = ()
    vips: tuple[Address, ...] = ()
    gateway: str = ""
    host_routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, next hop)
    mtu: int = 0


def _attr(message: Any, name: str) -> Any:
    return message.get_attr(name)


def _find(ipr: IPRoute, mac: str, timeout_s: float) -> tuple[int, str]:
    """The ifindex and name of the interface with ``mac``, waiting for it to appear."""
    wanted = mac.lower()
    deadline = time.monotonic() + timeout_s
    while True:
        for link in ipr.get_links():
            if str(_attr(link, "IFLA_ADDRESS") or "").lower() == wanted:
                return int(link["index"]), str(_attr(link, "IFLA_IFNAME"))
        if time.monotonic() >= deadline:
            raise NotFound(f"no network interface has MAC address {mac}")
        time.sleep(0.1)


def _up(ipr: IPRoute, index: int, mtu: int) -> None:
    if mtu > 0:
        ipr.link("set", index=index, mtu=mtu)
    ipr.link("set", index=index, state="up")


def _sync_addresses(ipr: IPRoute, index: int, wanted: Iterable[tuple[str, int]], keep: set[str]) -> None:
    """Leave exactly ``wanted`` (address, prefix) on the interface, but IPv6 link-local ones and ``keep``."""
    want = {(ipaddress.ip_address(a).compressed, p) for a, p in wanted}
    have = set()
    for message in ipr.get_addr(index=index):
        address = ipaddress.ip_address(_attr(message, "IFA_ADDRESS"))
        if address.is_link_local and address.version == 6:
            continue
        have.add((address.compressed, int(message["prefixlen"])))
    for address, prefix in have - want:
        if address not in keep:
            ipr.addr("del", index=index, address=address, prefixlen=prefix)
    for address, prefix in sorted(want - have):
        ipr.addr("add", index=index, address=address, prefixlen=prefix)


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _plug_vip(port: Port, vrrp_managed: bool, timeout_s: float) -> str:
    with IPRoute() as ipr:
        index, name = _find(ipr, port.mac_address, timeout_s)
        _up(ipr, index, port.mtu)
        wanted = [(a.address, a.prefix_length) for a in port.addresses]
        if not vrrp_managed:
            wanted += [(v.address, v.host_prefix) for v in port.vips]
        keepalived_holds = {v.ip.compressed for v in port.vips} if vrrp_managed else set()
        _sync_addresses(ipr, index, wanted, keepalived_holds)
        table = TABLE_BASE + index
        for subnet in {a.network for a in (*port.addresses, *port.vips)}:
            family = socket.AF_INET6 if subnet.version == 6 else socket.AF_INET
            ipr.route("replace", dst=str(subnet), oif=index, table=table, scope="link", family=family)
        if port.gateway:
            family = _family(port.gateway)
            default = "::/0" if family == socket.AF_INET6 else "0.0.0.0/0"
            ipr.route("replace", dst=default, gateway=port.gateway, oif=index, table=table, family=family)
        for destination, next_hop in port.host_routes:
            ipr.route("replace", dst=destination, gateway=next_hop, oif=index, table=table, family=_family(next_hop))
        sources = {(a.ip.compressed, a.family, a.host_prefix) for a in (*port.addresses, *port.vips)}
        existing = {
            (ipaddress.ip_address(_attr(rule, "FRA_SRC")).compressed, int(rule["src_len"]), _attr(rule, "FRA_TABLE"))
            for family in (socket.AF_INET, socket.AF_INET6)
            for rule in ipr.get_rules(family=family)
            if _attr(rule, "FRA_SRC")
        }
        for address, family, prefix in sorted(sources):
            if (address, prefix, table) not in existing:  # a rule added twice would be there twice
                ipr.rule("add", src=address, src_len=prefix, table=table, priority=RULE_PRIORITY, family=family)
        return name


def _plug_network(port: Port, timeout_s: float) -> str:
    with IPRoute() as ipr:
        index, name = _find(ipr, port.mac_address, timeout_s)
        _up(ipr, index, port.mtu)
        _sync_addresses(ipr, index, [(a.address, a.prefix_length) for a in port.addresses], set())
        for destination, next_hop in port.host_routes:
            ipr.route("replace", dst=destination, gateway=next_hop, oif=index, family=_family(next_hop))
        return name


async def plug_vip(port: Port, vrrp_managed: bool, timeout_s: float = APPEAR_TIMEOUT_S) -> str:
    """Configure the VIP's port; the interface's name."""
    return await asyncio.to_thread(_plug_vip, port, vrrp_managed, timeout_s)


async def plug_network(port: Port, timeout_s: float = APPEAR_TIMEOUT_S) -> str:
    """Configure a member subnet's port; the interface's name."""
    return await asyncio.to_thread(_plug_network, port, timeout_s)
