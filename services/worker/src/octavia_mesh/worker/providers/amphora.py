"""The amphora provider: load balancers served by amphorae (an agent beside HAProxy), built by flows.

Flows by command (ACTIVE_STANDBY load balancers get theirs from :mod:`..flows.vrrp`):

* load balancer create: create the amphora row, boot an instance with a fresh identity, wait for its agent,
  push the configuration of any listeners the call created with it, settle;
* load balancer delete: remove the configuration, delete the instances, settle (which gives the VIP back);
* load balancer and amphora failover: boot a replacement, configure it, retire the old one, settle;
* every other change: render the load balancer's whole configuration again, push it to every amphora and
  activate it with a hitless reload, settle.

A flow that fails is reverted and its load balancer left as Octavia leaves a failed change
(``lifecycle.transitions.fail``).
"""

from __future__ import annotations

import logging

from octavia_mesh.common.capabilities import ACTIVE_STANDBY, SINGLE, Capabilities, Facts
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.lifecycle import AmphoraStatus
from octavia_mesh.common.lifecycle.transitions import SUBJECTS, fail
from octavia_mesh.protos.provider.v1 import commands_pb2
from octavia_mesh.worker import metrics
from octavia_mesh.worker.deps import AmphoraDeps
from octavia_mesh.worker.flows import maintenance, vrrp
from octavia_mesh.worker.flows.engine import Flow, FlowContext, FlowEngine, FlowFailed
from octavia_mesh.worker.flows.network import DeallocateVip, PlugInterfaces, PlugMemberSubnets, PlugVip, UnplugVip
from octavia_mesh.worker.flows.spares import TakeSpare
from octavia_mesh.worker.tasks import (
    BootAmphora,
    Configure,
    CreateAmphora,
    FenceStopped,
    RetireAmphorae,
    Settle,
    Unconfigure,
    WaitForAgent,
    set_amphora,
)

__all__ = ["AmphoraDeps", "AmphoraProvider"]

logger = logging.getLogger(__name__)


class AmphoraProvider:
    """Applies provider commands for ``amphora`` load balancers through durable flows."""

    name = "amphora"

    def __init__(self, deps: AmphoraDeps) -> None:
        self.deps = deps
        self.engine = FlowEngine(deps.sessions)

    #: What the API must know of this provider (published in :mod:`octavia_mesh.common.capabilities`): HAProxy
    #: balances TCP only, VIPs come from the deployment's network driver, TLS references must resolve, and
    #: flavors and zones take Octavia's amphora driver's keys (the defaults).
    FACTS = Facts(
        unsupported_protocols={
            "UDP": "UDP listeners need a UDP data plane (HAProxy balances TCP only)",
            "SCTP": "SCTP listeners need an SCTP data plane (HAProxy balances TCP only)",
        },
        vip_from_network=True,
        checks_certificates=True,
    )

    def facts(self) -> Facts:
        return self.FACTS

    def capabilities(self) -> Capabilities:
        """What this worker can build for the API's registry: SINGLE always, ACTIVE_STANDBY where pairs boot."""
        refusal = "the worker has no VRRP settings" if self.deps.vrrp is None else self.deps.compute.pairs_refusal()
        if refusal is None:
            return Capabilities(frozenset({SINGLE, ACTIVE_STANDBY}))
        return Capabilities(frozenset({SINGLE}), {ACTIVE_STANDBY: refusal})

    def flow_for(self, command: commands_pb2.ProviderCommand) -> Flow:
        d = self.deps
        kind, op = command.kind, command.operation
        if op in maintenance.OPERATIONS:  # certificate rotation, orphan reaping (from housekeeping)
            return maintenance.flow(d, op)
        if kind == Kind.RESOURCE_KIND_LOAD_BALANCER and op == Op.OPERATION_CREATE:
            return Flow(
                "create-load-balancer",
                [
                    TakeSpare(d),
                    CreateAmphora(d),
                    BootAmphora(d),
                    WaitForAgent(d),
                    PlugVip(d),
                    PlugMemberSubnets(d),
                    PlugInterfaces(d),
                    Configure(d),
                    Settle(d),
                ],
            )
        if kind == Kind.RESOURCE_KIND_LOAD_BALANCER and op == Op.OPERATION_DELETE:
            return Flow(
                "delete-load-balancer", [Unconfigure(d), UnplugVip(d), RetireAmphorae(d), DeallocateVip(d), Settle(d)]
            )
        if op == Op.OPERATION_FAILOVER:
            only = "old_amphora_id" if kind == Kind.RESOURCE_KIND_AMPHORA else None
            return Flow(
                "failover",
                [
                    FenceStopped(d),
                    TakeSpare(d, "new_amphora_id"),
                    CreateAmphora(d, "new_amphora_id"),
                    BootAmphora(d, "new_amphora_id"),
                    WaitForAgent(d, "new_amphora_id"),
                    PlugVip(d, "new_amphora_id"),
                    PlugMemberSubnets(d),
                    PlugInterfaces(d, "new_amphora_id"),
                    Configure(d, "new_amphora_id"),
                    RetireAmphorae(d, keep_key="new_amphora_id", only_key=only),
                    Settle(d),
                ],
            )
        if kind == Kind.RESOURCE_KIND_AMPHORA and op == Op.OPERATION_DELETE:
            return Flow("delete-amphora", [RetireAmphorae(d, only_key="old_amphora_id"), Settle(d)])
        return Flow("configure", [PlugMemberSubnets(d), PlugInterfaces(d), Configure(d), Settle(d)])

    async def apply(self, command: commands_pb2.ProviderCommand) -> bool:
        """Run the command's flow; the consumer stamps it completed afterwards (the flow commits step by step)."""
        await self._apply(command)
        return False

    async def _apply(self, command: commands_pb2.ProviderCommand) -> None:
        if command.operation in maintenance.OPERATIONS:  # no PENDING_* state to settle or fail
            await maintenance.run(self.engine, self.flow_for(command), command)
            return
        ctx = FlowContext(
            command_id=command.command_id, load_balancer_id=command.load_balancer_id, resource_id=command.resource_id
        )
        if command.kind == Kind.RESOURCE_KIND_AMPHORA:
            ctx.store["old_amphora_id"] = command.resource_id
        if not command.load_balancer_id:  # a spare amphora: nothing to settle
            await self.deps.compute.delete_instance(command.resource_id)
            await set_amphora(self.deps, command.resource_id, status=AmphoraStatus.DELETED)
            return
        failover = command.operation == Op.OPERATION_FAILOVER
        kind = "amphora" if command.kind == Kind.RESOURCE_KIND_AMPHORA else "load_balancer"
        try:
            await self.engine.run(await vrrp.flow_for(self.deps, command) or self.flow_for(command), ctx)
        except FlowFailed:
            logger.exception("%s of %s failed", commands_pb2.Operation.Name(command.operation), command.resource_id)
            if failover:
                metrics.FAILOVERS.labels(kind, "failure").inc()
            async with self.deps.sessions() as session, session.begin():
                await fail(session, command.load_balancer_id, SUBJECTS.get(command.kind))
            return
        if failover:
            metrics.FAILOVERS.labels(kind, "success").inc()
