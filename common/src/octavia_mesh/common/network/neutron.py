"""The Neutron network driver (``neutron``), through openstacksdk, after Octavia's
``octavia/network/drivers/neutron/allowed_address_pairs.py``.

* **VIP** (API, ``allocate_vip``): a port ``octavia-lb-<lb id>`` on the VIP subnet (the address asked for, or
  Neutron's pick), ``admin_state_up`` false and ``device_owner`` ``Octavia`` as Octavia's, with the QoS policy
  when one is asked for; or the user's own port (``vip_port_id``), which is used and never deleted.
  An unknown subnet, network, port or QoS policy is :class:`InvalidVip` (400); a taken address or a full
  subnet (Neutron's 409) is :class:`VipUnavailable` (409).
* **Plugging** (worker): each amphora gets a port ``octavia-lb-vrrp-<compute id>`` on the VIP subnet, with
  the VIP as an *allowed address pair* (so either amphora of an ACTIVE_STANDBY pair may answer for it), the
  load balancer's security group ``lb-<lb id>`` and the VIP's QoS policy, attached to its server through
  Nova's ``os-interface``. Member subnets get ports ``octavia-member-<compute id>-<subnet id>`` the same way;
  ports for subnets no member uses any more are detached and deleted.
* **Security group** (``update_vip``): ``lb-<lb id>`` opens each listener's port (TCP; UDP and SCTP
  listeners their own protocol) to its ``allowed_cidrs`` (0.0.0.0/0 when none), plus VRRP (IP protocol 112)
  between the group's own ports for ACTIVE_STANDBY; rules nobody wants any more are removed.
* **Floating IPs**: Octavia creates none for a VIP (users associate one with the VIP port themselves);
  neither does this driver.

Calls are synchronous in openstacksdk; they run in threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from openstack import exceptions as os_exc
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.common.network import (
    AmphoraVipPort,
    InvalidVip,
    ListenerAccess,
    NetworkError,
    Vip,
    VipRequest,
    VipUnavailable,
)

logger = logging.getLogger(__name__)

OCTAVIA_OWNER = "Octavia"  # Octavia's device_owner for the ports it creates
VRRP_PROTOCOL = 112
T = TypeVar("T")


def vip_port_name(lb_id: str) -> str:
    return f"octavia-lb-{lb_id}"


def vrrp_port_name(compute_id: str) -> str:
    return f"octavia-lb-vrrp-{compute_id}"


def member_port_prefix(compute_id: str) -> str:
    return f"octavia-member-{compute_id}-"


def security_group_name(lb_id: str) -> str:
    return f"lb-{lb_id}"


def _ip_protocol(listener_protocol: str) -> str:
    return {"UDP": "udp", "SCTP": "sctp"}.get(listener_protocol.upper(), "tcp")


class NeutronNetworkDriver:
    """VIPs as Neutron ports; amphorae plugged with allowed address pairs."""

    name = "neutron"

    def __init__(self, connection: Any) -> None:
        self._conn = connection  # an openstack.connection.Connection (service credentials)

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # --- VIP -----------------------------------------------------------------------------------------

    def _get(self, getter: Callable[[str], Any], kind: str, ident: str) -> Any:
        try:
            return getter(ident)
        except os_exc.NotFoundException:
            raise InvalidVip(f"{kind} {ident} not found.") from None

    def _allocate(self, request: VipRequest) -> Vip:
        net = self._conn.network
        if request.port_id:  # the user's port: Octavia takes its first address
            port = self._get(net.get_port, "Port", request.port_id)
            if not port.fixed_ips:
                raise InvalidVip(f"Port {request.port_id} has no IP address.")
            fixed = port.fixed_ips[0]
            return Vip(request.load_balancer_id, fixed["ip_address"], port.id, fixed["subnet_id"], port.network_id)
        if request.subnet_id:
            subnet = self._get(net.get_subnet, "Subnet", request.subnet_id)
            if request.network_id and subnet.network_id != request.network_id:
                raise InvalidVip(f"Subnet {subnet.id} is not on network {request.network_id}.")
        elif request.network_id:
            network = self._get(net.get_network, "Network", request.network_id)
            subnets = [net.get_subnet(s) for s in network.subnet_ids or ()]
            subnet = next((s for s in subnets if s.ip_version == 4), subnets[0] if subnets else None)
            if subnet is None:
                raise InvalidVip(f"Network {request.network_id} has no subnet.")
        else:
            raise InvalidVip("A VIP subnet, network or port is required.")
        if request.qos_policy_id:
            self._get(net.get_qos_policy, "QoS Policy", request.qos_policy_id)
        fixed_ip = {"subnet_id": subnet.id, **({"ip_address": request.address} if request.address else {})}
        attrs: dict[str, Any] = {
            "name": vip_port_name(request.load_balancer_id),
            "network_id": subnet.network_id,
            "fixed_ips": [fixed_ip],
            "admin_state_up": False,
            "device_id": f"lb-{request.load_balancer_id}",
            "device_owner": OCTAVIA_OWNER,
        }
        if request.project_id:
            attrs["project_id"] = request.project_id
        if request.qos_policy_id:
            attrs["qos_policy_id"] = request.qos_policy_id
        try:
            port = net.create_port(**attrs)
        except os_exc.ConflictException as exc:  # IpAddressAlreadyAllocated, IpAddressGenerationFailure
            raise VipUnavailable(f"IP address {request.address or ''} is not available: {exc.details or exc}") from None
        except os_exc.BadRequestException as exc:
            raise InvalidVip(f"Invalid VIP: {exc.details or exc}") from None
        address = port.fixed_ips[0]["ip_address"]
        return Vip(request.load_balancer_id, address, port.id, subnet.id, subnet.network_id, (), request.qos_policy_id)

    async def allocate_vip(self, session: AsyncSession, request: VipRequest) -> Vip:
        return await self._call(self._allocate, request)

    def _deallocate(self, vip: Vip) -> None:
        net = self._conn.network
        for name in (security_group_name(vip.load_balancer_id),):
            for group in list(net.security_groups(name=name)):
                try:
                    net.delete_security_group(group.id, ignore_missing=True)
                except os_exc.ConflictException:
                    logger.warning("security group %s still in use; housekeeping retries", group.id)
                    raise
        if not vip.port_id:
            return
        try:
            port = net.get_port(vip.port_id)
        except os_exc.NotFoundException:
            return
        if port.device_owner == OCTAVIA_OWNER and port.name == vip_port_name(vip.load_balancer_id):
            net.delete_port(port.id, ignore_missing=True)  # ours; a user's own VIP port stays

    async def deallocate_vip(self, session: AsyncSession, vip: Vip) -> None:
        await self._call(self._deallocate, vip)

    # --- amphora ports -------------------------------------------------------------------------------

    def _security_group(self, lb_id: str) -> str:
        net = self._conn.network
        name = security_group_name(lb_id)
        found = list(net.security_groups(name=name))
        if found:
            return str(found[0].id)
        group = net.create_security_group(name=name, description=f"Octavia Mesh load balancer {lb_id}")
        return str(group.id)

    def _attach(self, compute_id: str, port: Any) -> None:
        """Attach the port to the server unless it already is (idempotent)."""
        if port.device_id == compute_id:
            return
        try:
            self._conn.compute.create_server_interface(compute_id, port_id=port.id)
        except os_exc.NotFoundException:
            raise NetworkError(f"server {compute_id} not found") from None

    def _detach_and_delete(self, compute_id: str, port: Any) -> None:
        if port.device_id == compute_id:
            try:
                self._conn.compute.delete_server_interface(port.id, server=compute_id, ignore_missing=True)
            except os_exc.NotFoundException:
                pass  # the server is gone
        self._conn.network.delete_port(port.id, ignore_missing=True)

    def _plug_vip(self, vip: Vip, compute_id: str) -> AmphoraVipPort:
        net = self._conn.network
        group_id = self._security_group(vip.load_balancer_id)
        name = vrrp_port_name(compute_id)
        ports = list(net.ports(name=name))
        if ports:
            port = ports[0]
        else:
            attrs: dict[str, Any] = {
                "name": name,
                "network_id": vip.network_id,
                "fixed_ips": [{"subnet_id": vip.subnet_id}] if vip.subnet_id else [],
                "security_groups": [group_id],
                "allowed_address_pairs": [{"ip_address": vip.address}],
                "device_owner": OCTAVIA_OWNER,
            }
            if vip.qos_policy_id:
                attrs["qos_policy_id"] = vip.qos_policy_id
            port = net.create_port(**attrs)
        try:
            self._attach(compute_id, port)
        except Exception:
            net.delete_port(port.id, ignore_missing=True)  # no port outlives a failed plug
            raise
        address = port.fixed_ips[0]["ip_address"] if port.fixed_ips else None
        return AmphoraVipPort(compute_id, port.id, address)

    async def plug_vip(self, vip: Vip, compute_id: str) -> AmphoraVipPort:
        return await self._call(self._plug_vip, vip, compute_id)

    def _vip_plugged(self, vip: Vip, compute_id: str) -> bool:
        ports = self._conn.network.ports(name=vrrp_port_name(compute_id))
        return any(p.device_id == compute_id and {"ip_address": vip.address} in p.allowed_address_pairs for p in ports)

    async def vip_plugged(self, vip: Vip, compute_id: str) -> bool:
        """Whether the amphora's VIP port is attached and carries the VIP (a resumed flow asks before re-plugging)."""
        return await self._call(self._vip_plugged, vip, compute_id)

    def _unplug_vip(self, vip: Vip, compute_id: str) -> None:
        for port in list(self._conn.network.ports(name=vrrp_port_name(compute_id))):
            self._detach_and_delete(compute_id, port)

    async def unplug_vip(self, vip: Vip, compute_id: str) -> None:
        await self._call(self._unplug_vip, vip, compute_id)

    def _plug_members(self, compute_id: str, subnet_ids: Collection[str]) -> None:
        net = self._conn.network
        prefix = member_port_prefix(compute_id)
        # Nova rewrites device_owner when it binds a port: ours are known by name (Neutron filters names exactly).
        have = {p.name[len(prefix) :]: p for p in net.ports(device_id=compute_id) if p.name.startswith(prefix)}
        for subnet_id, port in have.items():
            if subnet_id not in subnet_ids:
                self._detach_and_delete(compute_id, port)
        for subnet_id in subnet_ids:
            port = have.get(subnet_id) or next(iter(net.ports(name=prefix + subnet_id)), None)  # a plug cut short
            if port is None:
                subnet = net.get_subnet(subnet_id)
                port = net.create_port(
                    name=prefix + subnet_id,
                    network_id=subnet.network_id,
                    fixed_ips=[{"subnet_id": subnet_id}],
                    device_owner=OCTAVIA_OWNER,
                )
            try:
                self._attach(compute_id, port)
            except Exception:
                net.delete_port(port.id, ignore_missing=True)
                raise

    async def plug_member_subnets(self, compute_id: str, subnet_ids: Collection[str]) -> None:
        await self._call(self._plug_members, compute_id, set(subnet_ids))

    # --- security group ------------------------------------------------------------------------------

    def _update(self, vip: Vip, listeners: Sequence[ListenerAccess], topology: str) -> None:
        net = self._conn.network
        group_id = self._security_group(vip.load_balancer_id)
        wanted: set[tuple[str, int | None, str | None, bool]] = set()  # (protocol, port, cidr, from own group)
        for listener in listeners:
            for cidr in listener.allowed_cidrs or ("0.0.0.0/0",):
                wanted.add((_ip_protocol(listener.protocol), listener.port, cidr, False))
        if topology == "ACTIVE_STANDBY":
            wanted.add((str(VRRP_PROTOCOL), None, None, True))
        have = {}
        for rule in net.security_group_rules(security_group_id=group_id):
            if rule.direction != "ingress":
                continue  # Neutron's default egress rules stay
            key = (str(rule.protocol), rule.port_range_min, rule.remote_ip_prefix, bool(rule.remote_group_id))
            have[key] = rule.id
        for key, rule_id in have.items():
            if key not in wanted:
                net.delete_security_group_rule(rule_id, ignore_missing=True)
        for protocol, port, cidr, own in sorted(wanted - set(have), key=str):
            attrs: dict[str, Any] = {"security_group_id": group_id, "direction": "ingress", "protocol": protocol}
            if port is not None:
                attrs.update(port_range_min=port, port_range_max=port)
            if own:
                attrs["remote_group_id"] = group_id
            else:
                attrs["remote_ip_prefix"] = cidr
            attrs["ethertype"] = "IPv6" if cidr and ":" in cidr else "IPv4"
            net.create_security_group_rule(**attrs)

    async def update_vip(self, vip: Vip, listeners: Sequence[ListenerAccess], topology: str = "SINGLE") -> None:
        await self._call(self._update, vip, listeners, topology)
