"""The amphora provider's tasks: each one step of a flow, idempotent, with a revert.

Layers of the worker (each imports only those before it, and only their public names):
``deps`` (what tasks use, injected once) <- ``tasks`` (this module, and the network tasks in
``flows/network.py``) <- ``flows`` (``flows/vrrp.py``, ``flows/maintenance.py``, ... which assemble tasks)
<- ``providers`` (``providers/amphora.py`` picks the flow for a command and runs it).

Every task is idempotent and has a revert; the engine persists progress, so a worker killed at any step
resumes or reverts the flow when JetStream redelivers the command, and nothing stays PENDING_*.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import uuid
from typing import Any

from sqlalchemy import select, update

from octavia_mesh.common.db.models import Amphora, AmphoraHealth, LoadBalancer, utcnow
from octavia_mesh.common.lifecycle import AmphoraStatus
from octavia_mesh.common.lifecycle.transitions import settle
from octavia_mesh.common.lifecycle.tree import Tree
from octavia_mesh.worker import tls
from octavia_mesh.worker.deps import AmphoraDeps
from octavia_mesh.worker.drivers.amphora import AgentEndpoint
from octavia_mesh.worker.drivers.certificates import CertBundle
from octavia_mesh.worker.drivers.compute import InstanceSpec
from octavia_mesh.worker.flows.engine import FlowContext
from octavia_mesh.worker.flows.network import vip_of
from octavia_mesh.worker.haproxy.view import build

logger = logging.getLogger(__name__)

#: Namespace of the amphora IDs a command's flow derives (uuid5 of command ID and store key).
AMPHORA_IDS = uuid.UUID("0b6f3c52-6d0e-4f5e-9a57-2f1d8c7e4a10")


async def agent_endpoints(deps: AmphoraDeps, lb_id: str, only: str | None = None) -> list[AgentEndpoint]:
    """The agents of ``lb_id``'s allocated amphorae that have a running instance (only ``only``, if given)."""
    async with deps.sessions() as session:
        rows = (
            await session.execute(
                select(Amphora.id, Amphora.compute_id).where(
                    Amphora.load_balancer_id == lb_id, Amphora.status == AmphoraStatus.ALLOCATED
                )
            )
        ).all()
    out = []
    for amphora_id, compute_id in rows:
        if only is not None and amphora_id != only:
            continue
        instance = await deps.compute.get_instance(compute_id or amphora_id)
        if instance is not None:
            out.append(AgentEndpoint(instance.management_address, amphora_id))
    return out


class CreateAmphora:
    """Adds the amphora row (PENDING_CREATE) that the next tasks boot and allocate."""

    name = "create-amphora"

    def __init__(self, deps: AmphoraDeps, key: str = "amphora_id") -> None:
        self.deps, self.key = deps, key

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        # Derived from the command, not random: a worker that dies after adding the row but before the engine
        # saved this task's result runs the task again, and must find that row instead of adding a second one
        # (which would stay PENDING_CREATE for ever).
        amphora_id = ctx.store.get(self.key) or str(uuid.uuid5(AMPHORA_IDS, f"{ctx.command_id}/{self.key}"))
        async with self.deps.sessions() as session, session.begin():
            if await session.get(Amphora, amphora_id) is None:
                session.add(
                    Amphora(
                        id=amphora_id,
                        load_balancer_id=ctx.load_balancer_id,
                        status=AmphoraStatus.PENDING_CREATE,
                        role="STANDALONE",
                        vrrp_id=1,
                        created_at=utcnow(),
                    )
                )
        return {self.key: amphora_id}

    async def revert(self, ctx: FlowContext) -> None:
        if self.key in ctx.store:
            await set_amphora(self.deps, ctx.store[self.key], status=AmphoraStatus.DELETED)


class BootAmphora:
    """Issues the amphora's identity and starts its instance."""

    name = "boot-amphora"

    def __init__(self, deps: AmphoraDeps, key: str = "amphora_id") -> None:
        self.deps, self.key = deps, key

    async def instance_spec(self, ctx: FlowContext, amphora_id: str, identity: CertBundle) -> InstanceSpec:
        """What to boot (an ACTIVE_STANDBY amphora boots into a network namespace: flows/vrrp.py)."""
        return InstanceSpec(amphora_id, identity)

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        amphora_id = ctx.store[self.key]
        if ctx.store.get(f"{self.key}_spare"):  # taken from the pool (flows/spares.py): it runs already
            return {}
        identity = self.deps.certificates.issue_amphora_certificate(amphora_id, self.deps.cert_validity)
        if await self.deps.compute.get_instance(amphora_id) is not None:
            # A run of this task that died after booting: that instance holds a certificate whose serial was
            # never recorded (or is about to be replaced), so the health service would refuse it. Boot afresh.
            await self.deps.compute.delete_instance(amphora_id)
        instance = await self.deps.compute.create_instance(await self.instance_spec(ctx, amphora_id, identity))
        await set_amphora(
            self.deps,
            amphora_id,
            status=AmphoraStatus.BOOTING,
            compute_id=instance.compute_id,
            lb_network_ip=instance.management_address.rsplit(":", 1)[0],
            cert_expiration=identity.expires_at,
            cert_serial=identity.serial or None,  # the health service accepts heartbeats from this certificate only
        )
        return {}

    async def holds(self, ctx: FlowContext) -> bool:
        """Resumed after a crash: the instance may have stopped meanwhile (the machine, or ``octavia-mesh up``,
        was restarted); then it is booted again rather than waited for in vain."""
        return await self.deps.compute.get_instance(ctx.store[self.key]) is not None

    async def revert(self, ctx: FlowContext) -> None:
        if self.key in ctx.store:
            await self.deps.compute.delete_instance(ctx.store[self.key])


class WaitForAgent:
    """Waits until the new amphora's agent answers over mutual TLS, then marks the amphora ALLOCATED."""

    name = "wait-for-agent"

    #: How long a just-booted instance may stay invisible to ``get_instance`` before it counts as gone.
    #: (The local driver finds its process by /proc/<pid>/cmdline, which reads empty for a moment while the
    #: new process execs: failing at once turned about one create in five into ERROR.)
    appear_timeout_s = 5.0

    def __init__(self, deps: AmphoraDeps, key: str = "amphora_id") -> None:
        self.deps, self.key = deps, key

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        amphora_id = ctx.store[self.key]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(self.appear_timeout_s, self.deps.agent_timeout_s)
        while (instance := await self.deps.compute.get_instance(amphora_id)) is None:
            if loop.time() >= deadline:
                raise RuntimeError(f"amphora {amphora_id} has no running instance")
            await asyncio.sleep(0.05)
        await self.deps.amphora.wait_until_reachable(
            AgentEndpoint(instance.management_address, amphora_id), self.deps.agent_timeout_s
        )
        await set_amphora(self.deps, amphora_id, status=AmphoraStatus.ALLOCATED)
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None


class Configure:
    """Renders the load balancer's whole configuration and activates it on its amphorae (hitless reload).

    Objects the pending change deletes are left out; with no listener left, HAProxy is stopped instead.
    """

    name = "configure"

    def __init__(self, deps: AmphoraDeps, only_key: str | None = None) -> None:
        self.deps, self.only_key = deps, only_key

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        only = ctx.store.get(self.only_key) if self.only_key else None
        endpoints = await agent_endpoints(self.deps, ctx.load_balancer_id, only)
        async with self.deps.sessions() as session:
            tree = await Tree.load(session, ctx.load_balancer_id, lock=False)
        if tree is None:
            return {}
        doomed = tree.doomed()

        def keep(objs: list[Any]) -> list[Any]:
            return [o for o in objs if o.id not in doomed]

        listeners = keep(tree.listeners)
        if not listeners:
            for endpoint in endpoints:
                await self.deps.amphora.delete_load_balancer(endpoint, ctx.load_balancer_id)
            return {}
        objects = [*listeners, *keep(tree.pools)]
        material: dict[str, tuple[str, bytes]] = {}
        if any(tls.refs_of(objects)):
            if self.deps.barbican is not None:
                material = await tls.barbican_materials(self.deps.barbican, objects)
            elif self.deps.keyring is None:
                raise RuntimeError("TLS material is referenced but the worker has no secret key")
            else:
                async with self.deps.sessions() as session:
                    material = await tls.materials(session, self.deps.keyring, objects)
        for endpoint in endpoints:
            # Certificate paths are the amphora's own, so each amphora gets its own rendering.
            paths = await tls.push(self.deps.amphora, endpoint, ctx.load_balancer_id, material)
            runtime_dir = posixpath.dirname(next(iter(paths.values()))) if paths else "/nonexistent"
            view = build(
                tree.lb,
                listeners,
                keep(tree.pools),
                keep(tree.members),
                keep(tree.monitors),
                keep(tree.policies),
                keep(tree.rules),
                vip_address=tree.lb.vip_address or "127.0.0.1",
                tls_files=paths,
                runtime_dir=runtime_dir,
                max_connections=self.deps.max_connections,
                hard_stop_after_s=None,
                own_stats_socket=False,
            )
            rendered = self.deps.renderer.render(view)
            for path, content in rendered.files.items():  # crt-lists, beside the certificates they name
                await self.deps.amphora.put_certificate(
                    endpoint, ctx.load_balancer_id, posixpath.basename(path), content.encode()
                )
            await self.deps.amphora.put_config(endpoint, ctx.load_balancer_id, rendered.config)
            await self.deps.amphora.activate(endpoint, ctx.load_balancer_id)
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None  # the previous configuration keeps running: the agent refuses a bad one before swapping


class Unconfigure:
    """Stops serving the load balancer on every amphora (unreachable ones are deleted next anyway)."""

    name = "unconfigure"

    def __init__(self, deps: AmphoraDeps) -> None:
        self.deps = deps

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        for endpoint in await agent_endpoints(self.deps, ctx.load_balancer_id):
            try:
                await self.deps.amphora.delete_load_balancer(endpoint, ctx.load_balancer_id)
            except Exception as exc:
                logger.warning("could not unconfigure amphora %s: %s", endpoint.amphora_id, exc)
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None


class RetireAmphorae:
    """Deletes the instances of the load balancer's amphorae (all, or all but the new one) and their rows."""

    name = "retire-amphorae"

    def __init__(self, deps: AmphoraDeps, keep_key: str | None = None, only_key: str | None = None) -> None:
        self.deps, self.keep_key, self.only_key = deps, keep_key, only_key

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        keep = ctx.store.get(self.keep_key) if self.keep_key else None
        only = ctx.store.get(self.only_key) if self.only_key else None
        async with self.deps.sessions() as session:
            rows = (
                await session.execute(
                    select(Amphora.id, Amphora.compute_id).where(
                        Amphora.load_balancer_id == ctx.load_balancer_id, Amphora.status != AmphoraStatus.DELETED
                    )
                )
            ).all()
            # Claimed by the health service's automatic failover: lost (dead, or hung), so fenced, not drained.
            lost = set(
                (
                    await session.execute(
                        select(AmphoraHealth.amphora_id).where(
                            AmphoraHealth.amphora_id.in_([r[0] for r in rows]), AmphoraHealth.busy.is_(True)
                        )
                    )
                ).scalars()
            )
            lb = await session.get(LoadBalancer, ctx.load_balancer_id)
        for amphora_id, compute_id in rows:
            if amphora_id == keep or (only is not None and amphora_id != only):
                continue
            await set_amphora(self.deps, amphora_id, status=AmphoraStatus.PENDING_DELETE)
            if amphora_id in lost and keep is not None:
                logger.info("fencing lost amphora %s of load balancer %s", amphora_id, ctx.load_balancer_id)
                await self.deps.compute.fence_instance(compute_id or amphora_id)
            # Its ports go with it (Octavia's failover deletes the old amphora's VRRP port): a real network
            # keeps ports a deleted server had attached.
            await self.deps.network.plug_member_subnets(compute_id or amphora_id, [])
            if lb is not None:
                await self.deps.network.unplug_vip(vip_of(lb), compute_id or amphora_id)
            await self.deps.compute.delete_instance(compute_id or amphora_id)
            await set_amphora(self.deps, amphora_id, status=AmphoraStatus.DELETED)
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None


class FenceStopped:
    """First step of an automatic failover: kill the lost amphora's stopped (SIGSTOPped) processes at once.

    They serve nothing, but a stopped HAProxy keeps its SO_REUSEPORT socket on the VIP, where the kernel queues
    a share of the new connections until it is killed: killed now, those are refused at once instead of hanging
    through the rebuild, and the replacement serves the VIP alone from its first moment. Processes that still
    run (an HAProxy whose agent died may serve on) are left to the fence after the replacement serves.
    """

    name = "fence-stopped"

    def __init__(self, deps: AmphoraDeps, key: str = "old_amphora_id") -> None:
        self.deps, self.key = deps, key

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        amphora_id = ctx.store.get(self.key)
        if amphora_id is None:
            return {}
        async with self.deps.sessions() as session:
            row = (
                await session.execute(
                    select(Amphora.compute_id, AmphoraHealth.busy)
                    .join(AmphoraHealth, AmphoraHealth.amphora_id == Amphora.id)
                    .where(Amphora.id == amphora_id, Amphora.load_balancer_id == ctx.load_balancer_id)
                )
            ).one_or_none()
        if row is None or not row.busy:  # an admin failover of a live amphora drains it, later
            return {}
        killed = await self.deps.compute.kill_stopped(row.compute_id or amphora_id)
        if killed:
            logger.info("killed %d stopped processes of lost amphora %s", killed, amphora_id)
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None


class Settle:
    """Marks the change done: objects ACTIVE (or removed), quotas and VIP given back."""

    name = "settle"

    def __init__(self, deps: AmphoraDeps) -> None:
        self.deps = deps

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        async with self.deps.sessions() as session, session.begin():
            await settle(session, ctx.load_balancer_id, reported=True)  # operating statuses: the health service's
        return {}

    async def revert(self, ctx: FlowContext) -> None:
        return None


async def set_amphora(deps: AmphoraDeps, amphora_id: str, **values: Any) -> None:
    async with deps.sessions() as session, session.begin():
        await session.execute(update(Amphora).where(Amphora.id == amphora_id).values(updated_at=utcnow(), **values))
