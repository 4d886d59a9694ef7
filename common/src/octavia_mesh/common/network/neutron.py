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
  listeners their own protocol) to its ``allowed_cidrs`` (everyone of each VIP's IP version when none), plus
  VRRP (IP protocol 112) between the group's own ports for ACTIVE_STANDBY; rules nobody wants any more are
  removed. With ``vip_sg_ids`` (Octavia 2023.2) the user's groups decide who reaches the listeners: they are
  set on the VIP port and every amphora's VIP port beside ``lb-<lb id>``, which then opens no listener port.
* **Additional VIPs** (``additional_vips``, Octavia 2023.1): one more fixed IP of the VIP port per subnet
  (every subnet on the primary VIP's network, each once), and one more allowed address pair on each
  amphora's port.
* **Inside the amphora** (``interfaces``): what its agent must configure for each port plugged into the
  server (found by MAC address: Octavia's ``plug_vip``/``plug_network`` amphora calls): addresses with their
  subnets' prefixes, gateway, host routes, MTU, and on the VIP's port the VIPs.
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
    AmphoraInterface,
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


VRRP_PREFIX = "octavia-lb-vrrp-"


def vrrp_port_name(compute_id: str) -> str:
    return f"{VRRP_PREFIX}{compute_id}"


def member_port_prefix(compute_id: str) -> str:
    return f"octavia-member-{compute_id}-"


def security_group_name(lb_id: str) -> str:
    return f"lb-{lb_id}"


def _vip_addresses(vip: Vip) -> list[str]:
    """The VIP and the additional VIPs: what either amphora of the load balancer may answer for."""
    return [vip.address, *(str(v["ip_address"]) for v in vip.additional_vips if v.get("ip_address"))]


def _everyone(address: str) -> str:
    return "::/0" if ":" in address else "0.0.0.0/0"


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
        for sg_id in request.sg_ids:  # Octavia's security_group_exists
            self._get(net.get_security_group, "Security Group", sg_id)
        if request.port_id:  # the user's port: Octavia takes its first address
            port = self._get(net.get_port, "Port", request.port_id)
            if not port.fixed_ips:
                raise InvalidVip(f"Port {request.port_id} has no IP address.")
            fixed = port.fixed_ips[0]
            extra = self._additional(request, fixed["subnet_id"], port.network_id)
            on_port = {ip["subnet_id"]: ip["ip_address"] for ip in port.fixed_ips[1:]}
            for wanted in extra:
                if wanted["subnet_id"] not in on_port:
                    raise InvalidVip(f"Port {port.id} has no IP address on subnet {wanted['subnet_id']}.")
            additional = tuple({"subnet_id": e["subnet_id"], "ip_address": on_port[e["subnet_id"]]} for e in extra)
            return Vip(
                request.load_balancer_id,
                fixed["ip_address"],
                port.id,
                fixed["subnet_id"],
                port.network_id,
                additional,
                sg_ids=request.sg_ids,
            )
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
        extra = self._additional(request, subnet.id, subnet.network_id)
        fixed_ip = {"subnet_id": subnet.id, **({"ip_address": request.address} if request.address else {})}
        attrs: dict[str, Any] = {
            "name": vip_port_name(request.load_balancer_id),
            "network_id": subnet.network_id,
            "fixed_ips": [fixed_ip, *extra],
            "admin_state_up": False,
            "device_id": f"lb-{request.load_balancer_id}",
            "device_owner": OCTAVIA_OWNER,
        }
        if request.project_id:
            attrs["project_id"] = request.project_id
        if request.qos_policy_id:
            attrs["qos_policy_id"] = request.qos_policy_id
        if request.sg_ids:
            attrs["security_groups"] = list(request.sg_ids)
        try:
            port = net.create_port(**attrs)
        except os_exc.ConflictException as exc:  # IpAddressAlreadyAllocated, IpAddressGenerationFailure
            raise VipUnavailable(f"IP address {request.address or ''} is not available: {exc.details or exc}") from None
        except os_exc.BadRequestException as exc:
            raise InvalidVip(f"Invalid VIP: {exc.details or exc}") from None
        address = port.fixed_ips[0]["ip_address"]
        additional = tuple({"subnet_id": ip["subnet_id"], "ip_address": ip["ip_address"]} for ip in port.fixed_ips[1:])
        return Vip(
            request.load_balancer_id,
            address,
            port.id,
            subnet.id,
            subnet.network_id,
            additional,
            request.qos_policy_id,
            request.sg_ids,
        )

    def _additional(self, request: VipRequest, primary_subnet: str, network_id: str) -> list[dict[str, str]]:
        """The additional VIPs' fixed IPs, checked as Octavia's API checks them (``_validate_subnets_share_
        network_but_no_duplicates``): each names a subnet of the primary VIP's network, no subnet twice."""
        seen, out = {primary_subnet}, []
        for wanted in request.additional_vips:
            subnet_id = wanted.get("subnet_id")
            if not subnet_id:
                raise InvalidVip("An additional VIP needs a subnet_id.")
            if subnet_id in seen:
                raise InvalidVip("Duplicate VIP subnet(s) specified. Only one IP can be bound per subnet.")
            seen.add(subnet_id)
            try:
                subnet = self._conn.network.get_subnet(subnet_id)
            except os_exc.NotFoundException:
                raise InvalidVip(f"Subnet {subnet_id} not found") from None
            if subnet.network_id != network_id:
                raise InvalidVip("All VIP subnets must belong to the same network.")
            address = wanted.get("ip_address")
            out.append({"subnet_id": subnet_id, **({"ip_address": str(address)} if address else {})})
        return out

    async def allocate_vip(self, session: AsyncSession, request: VipRequest) -> Vip:
        return await self._call(self._allocate, request)

    def _deallocate(self, vip: Vip) -> None:
        net = self._conn.network
        port = None
        if vip.port_id:
            try:
                port = net.get_port(vip.port_id)
            except os_exc.NotFoundException:
                port = None
        for group in list(net.security_groups(name=security_group_name(vip.load_balancer_id))):
            if port is not None and group.id in (port.security_group_ids or ()):
                # Octavia's _delete_security_group: off the VIP port first (a user's port outlives the group).
                groups = [g for g in port.security_group_ids if g != group.id]
                port = net.update_port(port.id, security_group_ids=groups)
            try:
                net.delete_security_group(group.id, ignore_missing=True)
            except os_exc.ConflictException:
                logger.warning("security group %s still in use; housekeeping retries", group.id)
                raise
        if port is not None and port.device_owner == OCTAVIA_OWNER and port.name == vip_port_name(vip.load_balancer_id):
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
        pairs = [{"ip_address": address} for address in _vip_addresses(vip)]
        groups = [group_id, *vip.sg_ids]
        ports = list(net.ports(name=name))
        if ports:
            port = ports[0]
            if port.allowed_address_pairs != pairs or list(port.security_group_ids or ()) != groups:
                port = net.update_port(port.id, allowed_address_pairs=pairs, security_group_ids=groups)
        else:
            attrs: dict[str, Any] = {
                "name": name,
                "network_id": vip.network_id,
                "fixed_ips": [{"subnet_id": vip.subnet_id}] if vip.subnet_id else [],
                "security_groups": groups,
                "allowed_address_pairs": pairs,
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
        wanted = [{"ip_address": address} for address in _vip_addresses(vip)]
        return any(p.device_id == compute_id and p.allowed_address_pairs == wanted for p in ports)

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

    # --- inside the amphora --------------------------------------------------------------------------

    def _interface(self, port: Any, vips: tuple[tuple[str, str], ...] = ()) -> AmphoraInterface:
        net = self._conn.network
        subnets = {ip["subnet_id"]: net.get_subnet(ip["subnet_id"]) for ip in port.fixed_ips or ()}
        first = subnets[port.fixed_ips[0]["subnet_id"]] if port.fixed_ips else None
        mtu = getattr(net.get_network(port.network_id), "mtu", None)
        return AmphoraInterface(
            mac_address=str(port.mac_address),
            network_id=str(port.network_id),
            fixed_ips=tuple((ip["ip_address"], str(subnets[ip["subnet_id"]].cidr)) for ip in port.fixed_ips or ()),
            gateway=str(first.gateway_ip) if first is not None and first.gateway_ip else None,
            host_routes=tuple(
                (str(r["destination"]), str(r["nexthop"])) for r in ((first.host_routes if first else None) or ())
            ),
            mtu=int(mtu) if mtu else None,
            vips=vips,
        )

    def _interfaces(self, vip: Vip, compute_id: str) -> list[AmphoraInterface]:
        net = self._conn.network
        out = []
        for port in net.ports(name=vrrp_port_name(compute_id)):
            if port.device_id != compute_id:
                continue
            vip_subnets = [vip.subnet_id, *(str(v["subnet_id"]) for v in vip.additional_vips if v.get("ip_address"))]
            cidrs = [str(net.get_subnet(s).cidr) if s else "" for s in vip_subnets]
            out.append(self._interface(port, tuple(zip(_vip_addresses(vip), cidrs, strict=True))))
        prefix = member_port_prefix(compute_id)
        out += [self._interface(p) for p in net.ports(device_id=compute_id) if p.name.startswith(prefix)]
        return out

    async def interfaces(self, vip: Vip, compute_id: str) -> Sequence[AmphoraInterface]:
        return await self._call(self._interfaces, vip, compute_id)

    # --- security group ------------------------------------------------------------------------------

    def _update(self, vip: Vip, listeners: Sequence[ListenerAccess], topology: str) -> None:
        net = self._conn.network
        group_id = self._security_group(vip.load_balancer_id)
        wanted: set[tuple[str, int | None, str | None, bool]] = set()  # (protocol, port, cidr, from own group)
        everyone = sorted({_everyone(address) for address in _vip_addresses(vip)})  # one rule per IP version
        for listener in () if vip.sg_ids else listeners:  # the user's groups decide who reaches the listeners
            for cidr in listener.allowed_cidrs or everyone:
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
        self._apply_groups(vip, group_id)

    def _apply_groups(self, vip: Vip, group_id: str) -> None:
        """Octavia's ``update_vip_sg`` and ``update_aap_port_sg``: the VIP port and each amphora's VIP port carry
        ``lb-<lb id>`` and the user's groups (a changed ``vip_sg_ids`` takes effect here)."""
        net = self._conn.network
        pairs = [{"ip_address": address} for address in _vip_addresses(vip)]
        for port in list(net.ports(network_id=vip.network_id)):
            is_vrrp = port.name.startswith(VRRP_PREFIX) and port.allowed_address_pairs == pairs
            if port.id != vip.port_id and not is_vrrp:
                continue  # another load balancer's
            groups = [group_id, *vip.sg_ids]
            if list(port.security_group_ids or ()) != groups:
                net.update_port(port.id, security_group_ids=groups)

    def _check_groups(self, sg_ids: Collection[str]) -> None:
        for sg_id in sg_ids:
            self._get(self._conn.network.get_security_group, "Security Group", sg_id)

    async def check_security_groups(self, sg_ids: Collection[str]) -> None:
        await self._call(self._check_groups, list(sg_ids))

    async def update_vip(self, vip: Vip, listeners: Sequence[ListenerAccess], topology: str = "SINGLE") -> None:
        await self._call(self._update, vip, listeners, topology)
