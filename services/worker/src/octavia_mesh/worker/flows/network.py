"""Flow tasks that plug amphorae into networks through the network driver (:mod:`octavia_mesh.common.network`).

As Octavia's flows do: a new amphora gets the VIP plugged once its agent answers (``PlugVip``), every change
re-plugs the amphorae into their members' subnets before the configuration that uses them (``PlugMemberSubnets``),
and a deleted load balancer's amphorae are unplugged (``UnplugVip``) and its VIP given back (``DeallocateVip``).
With the local driver all of this is a no-op; the tasks keep the flows ready for one that is not.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from octavia_mesh.common.capabilities import ACTIVE_STANDBY
from octavia_mesh.common.db.models import Amphora, Listener, LoadBalancer, Member, Pool, utcnow
from octavia_mesh.common.lifecycle import AMPHORA_PLUGGED, AmphoraStatus, Provisioning
from octavia_mesh.common.network import ListenerAccess, Vip
from octavia_mesh.worker.deps import AmphoraDeps
from octavia_mesh.worker.drivers.amphora import AgentEndpoint
from octavia_mesh.worker.flows.engine import FlowContext

#: Amphorae whose instances may carry ports.
_PLUGGED = AMPHORA_PLUGGED


def vip_of(lb: LoadBalancer) -> Vip:
    """The VIP the API allocated, as recorded on the load balancer row."""
    return Vip(
        load_balancer_id=lb.id,
        address=lb.vip_address or "",
        port_id=lb.vip_port_id or "",
        subnet_id=lb.vip_subnet_id,
        network_id=lb.vip_network_id or "",
        additional_vips=tuple(lb.additional_vips or ()),
        qos_policy_id=lb.vip_qos_policy_id,
        sg_ids=tuple(lb.vip_sg_ids or ()),
    )


async def _load(deps: AmphoraDeps, lb_id: str) -> tuple[Vip | None, list[str], set[str]]:
    """The load balancer's VIP, its amphorae's compute ids, and its members' subnets (but the VIP's)."""
    async with deps.sessions() as session:
        lb = await session.get(LoadBalancer, lb_id)
        if lb is None:
            return None, [], set()
        amphorae = (
            await session.execute(
                select(Amphora.id, Amphora.compute_id).where(
                    Amphora.load_balancer_id == lb_id, Amphora.status.in_(_PLUGGED)
                )
            )
        ).all()
        subnets = {
            subnet
            for subnet in (
                await session.execute(
                    select(Member.subnet_id)
                    .join(Pool, Pool.id == Member.pool_id)
                    .where(Pool.load_balancer_id == lb_id, Member.subnet_id.is_not(None))
                )
            ).scalars()
            if subnet is not None
        }
        subnets.discard(lb.vip_subnet_id)
        return vip_of(lb), [compute_id or amphora_id for amphora_id, compute_id in amphorae], subnets


class PlugVip:
    """Plugs the VIP into the new amphora (``key`` in the flow's store)."""

    name = "plug-vip"

    def __init__(self, deps: AmphoraDeps, key: str = "amphora_id") -> None:
        self.deps, self.key = deps, key

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        vip, _, _ = await _load(self.deps, ctx.load_balancer_id)
        if vip is not None:
            await self.deps.network.plug_vip(vip, await self._compute_id(ctx))
        return {}

    async def holds(self, ctx: FlowContext) -> bool:
        """Resumed after a crash: is the VIP still plugged? Only a driver that can look says so
        (``vip_plugged``); otherwise it is plugged again, which every driver does idempotently."""
        check = getattr(self.deps.network, "vip_plugged", None)
        vip, _, _ = await _load(self.deps, ctx.load_balancer_id)
        if check is None or vip is None:
            return vip is None
        return bool(await check(vip, await self._compute_id(ctx)))

    async def revert(self, ctx: FlowContext) -> None:
        vip, _, _ = await _load(self.deps, ctx.load_balancer_id)
        if vip is not None and self.key in ctx.store:
            await self.deps.network.unplug_vip(vip, await self._compute_id(ctx))

    async def _compute_id(self, ctx: FlowContext) -> str:
        amphora_id = ctx.store[self.key]
        async with self.deps.sessions() as session:
            amphora = await session.get(Amphora, amphora_id)
        return (amphora.compute_id if amphora is not None else None) or amphora_id


class PlugMemberSubnets:
    """Leaves every amphora of the load balancer plugged into exactly its members' subnets, and the VIP open
    to exactly its listeners (Octavia's ``update_vip``: their ports, from their ``allowed_cidrs``)."""

    name = "plug-member-subnets"

    def __init__(self, deps: AmphoraDeps) -> None:
        self.deps = deps

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        vip, compute_ids, subnets = await _load(self.deps, ctx.load_balancer_id)
        for compute_id in compute_ids:
            await self.deps.network.plug_member_subnets(compute_id, sorted(subnets))
        if vip is not None:
            async with self.deps.sessions() as session:
                lb = await session.get(LoadBalancer, ctx.load_balancer_id)
                rows = (
                    await session.execute(
                        select(Listener.protocol, Listener.protocol_port, Listener.allowed_cidrs).where(
                            Listener.load_balancer_id == ctx.load_balancer_id,
                            Listener.provisioning_status != Provisioning.PENDING_DELETE,
                        )
                    )
                ).all()
            listeners = [ListenerAccess(p, port, tuple(cidrs or ())) for p, port, cidrs in rows]
            await self.deps.network.update_vip(vip, listeners, (lb.topology if lb else None) or "SINGLE")
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None  # the next change plugs what its members need


class PlugInterfaces:
    """Has each amphora's agent configure the ports plugged into its VM (Octavia's ``plug_vip`` and
    ``plug_network`` amphora calls): the VIP's port (its VIPs too, unless keepalived holds them: ACTIVE_STANDBY)
    and the member subnets' ports. For ACTIVE_STANDBY the VIP port's address and interface become the amphora's
    ``vrrp_ip`` and ``vrrp_interface``: keepalived advertises there. Nothing to do where nothing was plugged
    (the local driver's loopback VIPs), so the local path makes no call."""

    name = "plug-interfaces"

    def __init__(self, deps: AmphoraDeps, only_key: str | None = None) -> None:
        self.deps, self.only_key = deps, only_key

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        if not self.deps.plug_interfaces:
            return {}
        only = ctx.store.get(self.only_key) if self.only_key else None
        async with self.deps.sessions() as session:
            lb = await session.get(LoadBalancer, ctx.load_balancer_id)
            rows = (
                await session.execute(
                    select(Amphora.id, Amphora.compute_id).where(
                        Amphora.load_balancer_id == ctx.load_balancer_id, Amphora.status == AmphoraStatus.ALLOCATED
                    )
                )
            ).all()
        if lb is None:
            return {}
        vip, pair = vip_of(lb), lb.topology == ACTIVE_STANDBY
        for amphora_id, compute_id in rows:
            if only is not None and amphora_id != only:
                continue
            ports = await self.deps.network.interfaces(vip, compute_id or amphora_id)
            if not ports:
                continue
            instance = await self.deps.compute.get_instance(compute_id or amphora_id)
            if instance is None:
                raise RuntimeError(f"amphora {amphora_id} has no running instance to configure")
            endpoint = AgentEndpoint(instance.management_address, amphora_id)
            for port in ports:
                if not port.is_vip:
                    await self.deps.amphora.plug_network(endpoint, port)
                    continue
                interface = await self.deps.amphora.plug_vip(endpoint, port, vrrp_managed=pair)
                if pair and port.fixed_ips:
                    async with self.deps.sessions() as session, session.begin():
                        await session.execute(
                            update(Amphora)
                            .where(Amphora.id == amphora_id)
                            .values(vrrp_ip=port.fixed_ips[0][0], vrrp_interface=interface, updated_at=utcnow())
                        )
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None  # the ports are unplugged (and deleted) by PlugVip's and the boot's reverts


class UnplugVip:
    """Unplugs the VIP from every amphora of the load balancer before their instances go."""

    name = "unplug-vip"

    def __init__(self, deps: AmphoraDeps) -> None:
        self.deps = deps

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        vip, compute_ids, _ = await _load(self.deps, ctx.load_balancer_id)
        if vip is not None:
            for compute_id in compute_ids:
                await self.deps.network.unplug_vip(vip, compute_id)
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None


class DeallocateVip:
    """Gives the deleted load balancer's VIP back to the network."""

    name = "deallocate-vip"

    def __init__(self, deps: AmphoraDeps) -> None:
        self.deps = deps

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        async with self.deps.sessions() as session, session.begin():
            lb = await session.get(LoadBalancer, ctx.load_balancer_id)
            if lb is not None:
                await self.deps.network.deallocate_vip(session, vip_of(lb))
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None
