"""ACTIVE_STANDBY load balancers: two amphorae, MASTER and BACKUP, the VIP held by keepalived (VRRP).

The amphora provider asks :func:`flow_for` first; for a load balancer whose ``topology`` is ACTIVE_STANDBY
it gets these flows, for the others ``None`` (and builds its SINGLE flows):

* **create**: two amphora rows (MASTER priority 100, BACKUP 90), both booted (locally into network
  namespaces on the load balancer's bridge, :mod:`..drivers.namespaces`; on Nova into the load balancer's
  anti-affinity server group), their agents awaited, the VIP plugged into both (on Neutron: a port each with
  the VIP as allowed address pair, configured by the agent, whose address and interface keepalived uses),
  the same HAProxy configuration on both, then keepalived on both (MASTER first), and ACTIVE once one of
  them holds the VIP;
* **amphora failover**: a replacement with the old amphora's role, configured, the old one retired, then
  keepalived reconfigured on the pair (the survivor's peer changes) and a master awaited: the survivor
  keeps serving throughout (``nopreempt``: the replacement joins as BACKUP);
* **load-balancer failover**: the same, one amphora at a time (as Octavia, so that the load balancer keeps
  serving), the one not holding the VIP first: the VIP then moves once, in a graceful handover.

Changes of listeners, pools and members, and deletes, need nothing of their own: the SINGLE flows push the
configuration to every allocated amphora, and deleting an instance removes its namespace (and the bridge
with the last one).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from sqlalchemy import select

from octavia_mesh.common.capabilities import ACTIVE_STANDBY
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import Amphora, LoadBalancer, utcnow
from octavia_mesh.common.lifecycle import AmphoraStatus
from octavia_mesh.protos.provider.v1 import commands_pb2
from octavia_mesh.worker.deps import AmphoraDeps
from octavia_mesh.worker.drivers.amphora import AgentEndpoint, AmphoraError
from octavia_mesh.worker.drivers.certificates import CertBundle
from octavia_mesh.worker.drivers.compute import InstanceSpec
from octavia_mesh.worker.drivers.namespaces import VRRP_INTERFACE, NamespacedInstanceSpec
from octavia_mesh.worker.flows.engine import Flow, FlowContext
from octavia_mesh.worker.flows.network import PlugInterfaces, PlugMemberSubnets, PlugVip, vip_of
from octavia_mesh.worker.tasks import AMPHORA_IDS, BootAmphora, Configure, Settle, WaitForAgent, set_amphora
from octavia_mesh.worker.vrrp.render import VrrpOptions, VrrpView

#: Octavia's priorities: the MASTER wins the first election, nopreempt keeps whoever serves afterwards.
PRIORITIES = {"MASTER": 100, "BACKUP": 90}
#: Octavia's DEFAULT_VRRP_ID; each load balancer has its own bridge and unicast peers, so one id suffices.
VRRP_ID = 1


async def topology_of(deps: AmphoraDeps, lb_id: str) -> str | None:
    async with deps.sessions() as session:
        return (await session.execute(select(LoadBalancer.topology).where(LoadBalancer.id == lb_id))).scalar()


async def flow_for(deps: AmphoraDeps, command: commands_pb2.ProviderCommand) -> Flow | None:
    """The ACTIVE_STANDBY flow of ``command``, or None when the SINGLE flow applies."""
    if not command.load_balancer_id or await topology_of(deps, command.load_balancer_id) != ACTIVE_STANDBY:
        return None
    kind, op = command.kind, command.operation
    if kind == Kind.RESOURCE_KIND_LOAD_BALANCER and op == Op.OPERATION_CREATE:
        return create_flow(deps)
    if op == Op.OPERATION_FAILOVER and kind == Kind.RESOURCE_KIND_AMPHORA:
        return Flow("failover-pair-amphora", [*replace(deps, "new_amphora_id", "old_amphora_id"), Settle(deps)])
    if op == Op.OPERATION_FAILOVER:
        return Flow(
            "failover-pair",
            [
                OrderPair(deps),
                *replace(deps, "new_first_id", "first_old_id", "first_role"),
                *replace(deps, "new_second_id", "second_old_id", "second_role"),
                Settle(deps),
            ],
        )
    return None


def create_flow(deps: AmphoraDeps) -> Flow:
    keys = {"MASTER": "amphora_id", "BACKUP": "backup_amphora_id"}
    return Flow(
        "create-pair",
        [
            *(CreatePairAmphora(deps, key, role=role) for role, key in keys.items()),
            *(BootPairAmphora(deps, key) for key in keys.values()),  # both boot, then both are awaited
            *(WaitForAgent(deps, key) for key in keys.values()),
            # On Neutron: each amphora's VIP port (the VIP as an allowed address pair), the VRRP rule, and the
            # ports configured in the VMs, which gives each its vrrp_ip and vrrp_interface. No-ops locally.
            *(PlugVip(deps, key) for key in keys.values()),
            PlugMemberSubnets(deps),
            PlugInterfaces(deps),
            Configure(deps),
            ConfigureVrrp(deps),
            WaitForMaster(deps),
            Settle(deps),
        ],
    )


def replace(deps: AmphoraDeps, key: str, old_key: str, role_key: str | None = None) -> list[Any]:
    """Replace the amphora named by ``old_key`` (if any) with a new one (``key``) of its role (or of the role
    ``role_key`` names): built and configured first, then the old one retired, then keepalived reconfigured."""
    return [
        CreatePairAmphora(deps, key, old_key=old_key, role_key=role_key),
        BootPairAmphora(deps, key),
        WaitForAgent(deps, key),
        PlugVip(deps, key),
        PlugMemberSubnets(deps),
        PlugInterfaces(deps, key),
        Configure(deps, key),
        RetireOld(deps, old_key, keep_key=key),
        ConfigureVrrp(deps),
        WaitForMaster(deps),
    ]


def _vrrp(deps: AmphoraDeps) -> VrrpOptions:
    options = deps.vrrp
    refusal = "the worker has no VRRP settings" if options is None else deps.compute.pairs_refusal()
    if options is None or refusal is not None:
        raise RuntimeError(f"cannot build ACTIVE_STANDBY amphorae: {refusal}")
    return options


class CreatePairAmphora:
    """Adds the row of one amphora of the pair: its role (given, or the old amphora's) and VRRP priority."""

    name = "create-pair-amphora"

    def __init__(
        self, deps: AmphoraDeps, key: str, role: str | None = None, old_key: str = "", role_key: str | None = None
    ) -> None:
        self.deps, self.key, self.role, self.old_key, self.role_key = deps, key, role, old_key, role_key

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        # Derived from the command (see CreateAmphora): a task run again after a crash finds its row.
        amphora_id = ctx.store.get(self.key) or str(uuid.uuid5(AMPHORA_IDS, f"{ctx.command_id}/{self.key}"))
        async with self.deps.sessions() as session, session.begin():
            role = self.role or (ctx.store.get(self.role_key) if self.role_key else None)
            if role not in PRIORITIES:
                old_id = ctx.store.get(self.old_key)
                old = await session.get(Amphora, old_id) if old_id else None
                role = old.role if old is not None and old.role in PRIORITIES else "BACKUP"
            if await session.get(Amphora, amphora_id) is None:
                session.add(
                    Amphora(
                        id=amphora_id,
                        load_balancer_id=ctx.load_balancer_id,
                        status=AmphoraStatus.PENDING_CREATE,
                        role=role,
                        vrrp_id=VRRP_ID,
                        vrrp_priority=PRIORITIES[role],
                        vrrp_interface=VRRP_INTERFACE,
                        created_at=utcnow(),
                    )
                )
        return {self.key: amphora_id}

    async def revert(self, ctx: FlowContext) -> None:
        if self.key in ctx.store:
            await set_amphora(self.deps, ctx.store[self.key], status=AmphoraStatus.DELETED)


class BootPairAmphora(BootAmphora):
    """Boots the amphora into a network namespace on its load balancer's bridge and records its VRRP port."""

    name = "boot-pair-amphora"

    async def instance_spec(self, ctx: FlowContext, amphora_id: str, identity: CertBundle) -> InstanceSpec:
        _vrrp(self.deps)
        async with self.deps.sessions() as session:
            lb = await session.get(LoadBalancer, ctx.load_balancer_id)
            others = (
                await session.execute(
                    select(Amphora.vrrp_ip).where(
                        Amphora.load_balancer_id == ctx.load_balancer_id,
                        Amphora.status != AmphoraStatus.DELETED,
                        Amphora.id != amphora_id,
                        Amphora.vrrp_ip.is_not(None),
                    )
                )
            ).scalars()
            reserved = tuple(sorted({ip for ip in others if ip is not None}))
        if lb is None or not lb.vip_address:
            raise RuntimeError(f"load balancer {ctx.load_balancer_id} has no VIP")
        return NamespacedInstanceSpec(
            amphora_id, identity, load_balancer_id=lb.id, vip_address=lb.vip_address, reserved=reserved
        )

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        await super().execute(ctx)
        amphora_id = ctx.store[self.key]
        instance = await self.deps.compute.get_instance(amphora_id)
        if instance is None:
            raise RuntimeError(f"amphora {amphora_id} has no running instance")
        async with self.deps.sessions() as session:
            lb = await session.get(LoadBalancer, ctx.load_balancer_id)
        # One link carries management and VRRP here; ha_ip is the VIP, as Octavia records it.
        await set_amphora(
            self.deps,
            amphora_id,
            vrrp_ip=instance.management_address.rsplit(":", 1)[0],
            ha_ip=lb.vip_address if lb else None,
        )
        return {}


class RetireOld:
    """Retires the amphora a replacement was built for (nothing when there was none)."""

    name = "retire-old-amphora"

    def __init__(self, deps: AmphoraDeps, old_key: str, keep_key: str) -> None:
        self.deps, self.old_key, self.keep_key = deps, old_key, keep_key

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        old_id = ctx.store.get(self.old_key)
        if not old_id or old_id == ctx.store.get(self.keep_key):
            return {}
        async with self.deps.sessions() as session:
            old = await session.get(Amphora, old_id)
        if old is None or old.load_balancer_id != ctx.load_balancer_id or old.status == AmphoraStatus.DELETED:
            return {}
        await set_amphora(self.deps, old_id, status=AmphoraStatus.PENDING_DELETE)
        compute_id = old.compute_id or old_id
        # The agent stops keepalived first: a master advertises priority 0 and its peer takes the VIP at once.
        await self.deps.compute.delete_instance(compute_id)
        # Then its ports: a real network keeps the ports of a deleted server (Octavia's failover deletes the old
        # amphora's VRRP port), and a leftover would keep the load balancer's security group in use.
        await self.deps.network.plug_member_subnets(compute_id, [])
        async with self.deps.sessions() as session:
            lb = await session.get(LoadBalancer, ctx.load_balancer_id)
        if lb is not None:
            await self.deps.network.unplug_vip(vip_of(lb), compute_id)
        await set_amphora(self.deps, old_id, status=AmphoraStatus.DELETED)
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None


class OrderPair:
    """Chooses the order of a load-balancer failover: first the amphora not holding the VIP (dead, or BACKUP),
    last the one serving, which then hands the VIP over once, gracefully, to the first one's replacement."""

    name = "order-pair"

    def __init__(self, deps: AmphoraDeps) -> None:
        self.deps = deps

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        pair = await _pair(self.deps, ctx.load_balancer_id)
        states = {}
        for amphora in pair:
            endpoint = await _endpoint(self.deps, amphora)
            try:
                states[amphora.id] = await self.deps.amphora.vrrp_state(endpoint) if endpoint else "GONE"
            except Exception:  # an agent that does not answer holds nothing worth keeping
                states[amphora.id] = "GONE"
        ordered = sorted(pair, key=lambda a: (states[a.id] == "MASTER", a.role == "MASTER"))[:2]
        roles = [a.role if a.role in PRIORITIES else None for a in ordered]
        while len(ordered) < 2:
            ordered.append(None)  # type: ignore[arg-type]
            roles.append(None)
        # Two distinct roles, whatever the rows said (a lost row, or a SINGLE-era STANDALONE one).
        if roles[1] is None or roles[1] == roles[0]:
            roles[1] = "MASTER" if roles[0] != "MASTER" else "BACKUP"
        if roles[0] is None:
            roles[0] = "MASTER" if roles[1] != "MASTER" else "BACKUP"
        first, second = ordered
        return {
            "first_old_id": first.id if first else None,
            "first_role": roles[0],
            "second_old_id": second.id if second else None,
            "second_role": roles[1],
        }

    async def revert(self, ctx: FlowContext) -> None:
        return None


async def _pair(deps: AmphoraDeps, lb_id: str) -> list[Amphora]:
    """The load balancer's allocated amphorae, MASTER role first."""
    async with deps.sessions() as session:
        rows = list(
            (
                await session.execute(
                    select(Amphora).where(Amphora.load_balancer_id == lb_id, Amphora.status == AmphoraStatus.ALLOCATED)
                )
            ).scalars()
        )
    return sorted(rows, key=lambda a: (-(a.vrrp_priority or 0), a.created_at, a.id))


async def _endpoint(deps: AmphoraDeps, amphora: Amphora) -> AgentEndpoint | None:
    instance = await deps.compute.get_instance(amphora.compute_id or amphora.id)
    return None if instance is None else AgentEndpoint(instance.management_address, amphora.id)


class ConfigureVrrp:
    """Renders each allocated amphora's VRRP instance (its peers: the others) and starts or reloads keepalived.

    An amphora whose instance is gone (the one a failover is about to replace) is skipped; its address stays
    a peer of the others until it is retired, which does no harm.

    The one holding the VIP is reconfigured first: advertisements go unicast to the peers its configuration
    lists, so a replacement started before the survivor lists it hears nothing, and past the master-down
    interval it elects itself and takes the VIP with its higher priority (``nopreempt`` only holds for an
    amphora that hears the master). A loaded test run saw exactly that, with the replacement started first.
    """

    name = "configure-vrrp"

    def __init__(self, deps: AmphoraDeps) -> None:
        self.deps = deps

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        options = _vrrp(self.deps)
        async with self.deps.sessions() as session:
            lb = await session.get(LoadBalancer, ctx.load_balancer_id)
        assert lb is not None and lb.vip_address
        pair = await _pair(self.deps, lb.id)
        endpoints = {amphora.id: await _endpoint(self.deps, amphora) for amphora in pair}
        serving = set()
        for amphora in pair:
            endpoint = endpoints[amphora.id]
            with contextlib.suppress(Exception):  # not answering, or no keepalived yet: not the one serving
                if endpoint is not None and await self.deps.amphora.vrrp_state(endpoint) == "MASTER":
                    serving.add(amphora.id)
        for amphora in sorted(pair, key=lambda a: a.id not in serving):  # stable: priority order otherwise
            endpoint = endpoints[amphora.id]
            if endpoint is None or not amphora.vrrp_ip:
                continue
            view = VrrpView(
                amphora_id=amphora.id,
                load_balancer_id=lb.id,
                name=f"lb_{lb.id.replace('-', '')}",
                interface=amphora.vrrp_interface or VRRP_INTERFACE,
                vrrp_id=amphora.vrrp_id or VRRP_ID,
                priority=amphora.vrrp_priority or PRIORITIES["BACKUP"],
                advert_int_s=options.advert_int_s,
                own_ip=amphora.vrrp_ip,
                # Dead peers stay listed until retired: adverts to them are lost on the link, harmlessly.
                peers=tuple(sorted({a.vrrp_ip for a in pair if a.vrrp_ip and a.vrrp_ip != amphora.vrrp_ip})),
                vip=lb.vip_address,
            )
            await self.deps.amphora.put_vrrp_config(endpoint, options.renderer.render(view))
            await self.deps.amphora.start_vrrp(endpoint)
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None


class WaitForMaster:
    """Waits until one amphora of the pair holds the VIP, so ACTIVE means the VIP answers."""

    name = "wait-for-vrrp-master"

    def __init__(self, deps: AmphoraDeps) -> None:
        self.deps = deps

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        options = _vrrp(self.deps)
        loop = asyncio.get_running_loop()
        # An election takes three advertisement intervals plus a skew when no peer advertises.
        deadline = loop.time() + 4 * options.advert_int_s + options.election_timeout_s
        states: list[str] = []
        while loop.time() < deadline:
            states = []
            for amphora in await _pair(self.deps, ctx.load_balancer_id):
                endpoint = await _endpoint(self.deps, amphora)
                if endpoint is not None:
                    try:
                        states.append(await self.deps.amphora.vrrp_state(endpoint))
                    except AmphoraError as exc:  # one that does not answer cannot be the master
                        states.append(f"unreachable ({exc})")
            if "MASTER" in states:
                return {}
            await asyncio.sleep(0.05)
        raise RuntimeError(f"no amphora of load balancer {ctx.load_balancer_id} became VRRP master: {states}")

    async def revert(self, ctx: FlowContext) -> None:
        return None
