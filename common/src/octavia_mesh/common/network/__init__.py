"""The network driver: where a load balancer's VIP comes from and how amphorae are plugged into networks.

Octavia splits this the same way: the API allocates the VIP (its port) in the create call, so that the
address is known at once and a failed allocation is the caller's 400/409; the worker plugs the VIP into each
amphora it boots, plugs amphorae into their members' subnets, and unplugs and deallocates on delete.

Implementations:

* :class:`~.local.LocalNetworkDriver` (``local``): the local VIP subnet, a range of 127.0.0.0/8 that HAProxy
  binds without root; allocations are rows of ``vip_allocation``; nothing needs plugging.
* :class:`~.noop.NoopNetworkDriver` (``noop``): Octavia's no-op driver: keeps the address asked for (or a
  TEST-NET-2 one) and stable derived ids; plugs nothing.

* :class:`~.neutron.NeutronNetworkDriver` (``neutron``): Neutron through openstacksdk: ``allocate_vip``
  creates the VIP port, ``plug_vip`` an amphora port with the VIP as an allowed address pair,
  ``plug_member_subnets`` ports on the members' subnets, ``update_vip`` the load balancer's security group.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "DRIVERS",
    "AmphoraInterface",
    "AmphoraVipPort",
    "InvalidVip",
    "ListenerAccess",
    "NetworkDriver",
    "NetworkError",
    "Vip",
    "VipRequest",
    "VipUnavailable",
    "create_driver",
]


class NetworkError(Exception):
    """The network refused a request; the message is fit for the API's fault string."""


class InvalidVip(NetworkError):
    """The VIP asked for names a subnet, network or port that does not exist, or asks for what cannot be had (400)."""


class VipUnavailable(NetworkError):
    """The address asked for is taken, or the subnet has none left (409)."""


@dataclass(frozen=True, slots=True)
class VipRequest:
    """What a load-balancer create asks of the VIP (Octavia's ``vip_*`` fields, as given)."""

    load_balancer_id: str
    project_id: str
    subnet_id: str | None = None
    network_id: str | None = None
    port_id: str | None = None
    address: str | None = None
    additional_vips: tuple[Mapping[str, Any], ...] = ()
    qos_policy_id: str | None = None
    sg_ids: tuple[str, ...] = ()  # vip_sg_ids: the user's security groups on the VIP (Octavia 2023.2)

    @classmethod
    def from_values(cls, load_balancer_id: str, project_id: str, values: Mapping[str, Any]) -> VipRequest:
        """From a create call's validated body (``vip_subnet_id``, ``vip_network_id``, ...)."""
        extra = tuple(v for v in values.get("additional_vips") or () if isinstance(v, Mapping))
        return cls(
            load_balancer_id=load_balancer_id,
            project_id=project_id,
            subnet_id=values.get("vip_subnet_id"),
            network_id=values.get("vip_network_id"),
            port_id=values.get("vip_port_id"),
            address=values.get("vip_address"),
            additional_vips=extra,
            qos_policy_id=values.get("vip_qos_policy_id"),
            sg_ids=tuple(values.get("vip_sg_ids") or ()),
        )


@dataclass(frozen=True, slots=True)
class Vip:
    """An allocated VIP: what the load balancer row records."""

    load_balancer_id: str
    address: str
    port_id: str
    subnet_id: str | None
    network_id: str
    additional_vips: tuple[dict[str, Any], ...] = field(default=())
    qos_policy_id: str | None = None
    sg_ids: tuple[str, ...] = ()  # the user's security groups: then the driver opens no listener port itself


@dataclass(frozen=True, slots=True)
class ListenerAccess:
    """Who may reach a listener: what the VIP's security group opens (Octavia's ``update_vip``)."""

    protocol: str  # the listener's protocol (HTTP, TCP, UDP, ...)
    port: int
    allowed_cidrs: tuple[str, ...] = ()  # none: everyone


@dataclass(frozen=True, slots=True)
class AmphoraVipPort:
    """How an amphora reaches its VIP: the port that carries it (None where nothing was plugged)."""

    compute_id: str
    port_id: str | None = None
    address: str | None = None  # the amphora's own address on the VIP network, if it has one


@dataclass(frozen=True, slots=True)
class AmphoraInterface:
    """A port attached to an amphora's instance that its agent must configure (Octavia's ``plug_vip`` and
    ``plug_network`` calls to the amphora): found by its MAC address inside the amphora."""

    mac_address: str
    network_id: str
    fixed_ips: tuple[tuple[str, str], ...]  # (address, subnet CIDR) of the port itself
    gateway: str | None = None  # of the first fixed IP's subnet
    host_routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, next hop)
    mtu: int | None = None
    vips: tuple[tuple[str, str], ...] = ()  # (VIP address, subnet CIDR): the VIP port's, empty on a member port

    @property
    def is_vip(self) -> bool:
        return bool(self.vips)


@runtime_checkable
class NetworkDriver(Protocol):
    """Allocates VIPs (API) and plugs amphorae into networks (worker). Every call is idempotent."""

    name: str

    async def allocate_vip(self, session: AsyncSession, request: VipRequest) -> Vip:
        """The VIP of a new load balancer. ``session`` is the create's transaction: a driver that records
        allocations in the database does so there, so that they commit or roll back with the load balancer.
        Raises :class:`InvalidVip` or :class:`VipUnavailable`."""
        ...

    async def deallocate_vip(self, session: AsyncSession, vip: Vip) -> None:
        """Give back what :meth:`allocate_vip` took (nothing left to give back is no error)."""
        ...

    async def plug_vip(self, vip: Vip, compute_id: str) -> AmphoraVipPort:
        """Make the amphora instance ``compute_id`` able to serve ``vip``."""
        ...

    async def unplug_vip(self, vip: Vip, compute_id: str) -> None:
        """Undo :meth:`plug_vip` (an instance already gone is no error)."""
        ...

    async def plug_member_subnets(self, compute_id: str, subnet_ids: Collection[str]) -> None:
        """Leave the amphora plugged into exactly these member subnets (besides its VIP network)."""
        ...

    async def update_vip(self, vip: Vip, listeners: Sequence[ListenerAccess], topology: str = "SINGLE") -> None:
        """Let exactly these listeners be reached through the VIP (and VRRP flow within an ACTIVE_STANDBY pair);
        with ``vip.sg_ids`` the user's groups decide instead, and they are set on the VIP's ports."""
        ...

    async def interfaces(self, vip: Vip, compute_id: str) -> Sequence[AmphoraInterface]:
        """The ports plugged into the instance that its agent must configure (the VIP's first); none where
        nothing was plugged (loopback VIPs need no configuring)."""
        ...

    async def check_security_groups(self, sg_ids: Collection[str]) -> None:
        """Raise :class:`InvalidVip` naming the first of ``sg_ids`` that does not exist."""
        ...


def create_driver(name: str, **options: Any) -> NetworkDriver:
    """The network driver called ``name`` (``local``, ``noop`` or ``neutron``), built with ``options``."""
    try:
        factory = DRIVERS[name]
    except KeyError:
        raise ValueError(f"unknown network driver {name!r}; known: {', '.join(sorted(DRIVERS))}") from None
    return factory(**options)


def _local(**options: Any) -> NetworkDriver:
    from octavia_mesh.common.network.local import LocalNetworkDriver, LocalSubnet

    return LocalNetworkDriver(LocalSubnet(**options) if options else LocalSubnet())


def _noop(**options: Any) -> NetworkDriver:
    from octavia_mesh.common.network.noop import NoopNetworkDriver

    return NoopNetworkDriver()


def _neutron(**options: Any) -> NetworkDriver:
    from octavia_mesh.common.network.neutron import NeutronNetworkDriver
    from octavia_mesh.common.openstack import connect

    return NeutronNetworkDriver(connect(options.get("cloud", "")))


#: Network drivers by the name settings use.
DRIVERS = {"local": _local, "noop": _noop, "neutron": _neutron}
