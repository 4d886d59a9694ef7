"""The load balancer's lifecycle transitions, each written once (see the package docstring for the rules).

Every function works in the caller's transaction and session: the caller decides when to commit, so a
transition and the outbox row or report that goes with it commit together.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.common.db import quota, vips
from octavia_mesh.common.db.engine import rowcount
from octavia_mesh.common.db.models import (
    HealthMonitor,
    L7Policy,
    L7Rule,
    Listener,
    LoadBalancer,
    Member,
    Pool,
    ProviderCommand,
    Tag,
    utcnow,
)
from octavia_mesh.common.lifecycle.status import (
    BECOMES_ACTIVE,
    FAILOVERABLE,
    MUTABLE,
    Operating,
    Provisioning,
    is_pending,
)
from octavia_mesh.common.lifecycle.tree import Tree, remove
from octavia_mesh.protos.provider.v1.commands_pb2 import ResourceKind as Kind


@dataclass(frozen=True, slots=True)
class Refused:
    """A load balancer could not be locked: its current provisioning status (None: there is no such row)."""

    status: str | None


async def lock(
    session: AsyncSession, lb_id: str, *, allowed: Iterable[str] = MUTABLE, now: dt.datetime | None = None
) -> Refused | None:
    """Begin a change: move the load balancer from one of ``allowed`` to PENDING_UPDATE; None when done.

    One conditional UPDATE, so two concurrent changes cannot both pass (Octavia's load-balancer-wide lock,
    ``test_and_set_provisioning_status``). Otherwise the reason, for the caller to answer in its own terms.
    """
    result = await session.execute(
        update(LoadBalancer)
        .where(LoadBalancer.id == lb_id, LoadBalancer.provisioning_status.in_(tuple(allowed)))
        .values(provisioning_status=Provisioning.PENDING_UPDATE, updated_at=now or utcnow())
    )
    if rowcount(result) == 1:
        return None
    status = (
        await session.execute(select(LoadBalancer.provisioning_status).where(LoadBalancer.id == lb_id))
    ).scalar_one_or_none()
    return Refused(status)


async def claim_for_failover(session: AsyncSession, lb_id: str, now: dt.datetime | None = None) -> bool:
    """Lock a load balancer for a failover: from ACTIVE or ERROR (Octavia's ``set_status_for_failover``).

    The one rule for the operator's load-balancer failover, the health service's automatic failover and the
    worker's rebuild after a restart; an amphora failover asked for through the API takes the ordinary
    :func:`lock` (ACTIVE only), as Octavia's amphora controller does.
    """
    return await lock(session, lb_id, allowed=FAILOVERABLE, now=now) is None


def mark_pending_update(now: dt.datetime, *rows: Any) -> None:
    """Parents of a changed object show PENDING_UPDATE until the provider is done, as in Octavia."""
    for row in rows:
        row.provisioning_status = Provisioning.PENDING_UPDATE
        row.updated_at = now


def _online(obj: Any, *, monitored: bool = True) -> Operating:
    if not obj.admin_state_up:
        return Operating.OFFLINE
    return Operating.ONLINE if monitored else Operating.NO_MONITOR


async def retire_load_balancer(
    session: AsyncSession, lb: LoadBalancer, freed: Counter[str], *, operating: str | None = Operating.OFFLINE
) -> None:
    """The load balancer's row stays, DELETED (purged later), without tags or VIP; its quota is counted."""
    lb.provisioning_status = Provisioning.DELETED
    if operating is not None:
        lb.operating_status = operating
    await session.execute(delete(Tag).where(Tag.resource_id == lb.id))
    await vips.release(session, lb.id)
    freed["load_balancer"] += 1


async def remove_subtree(session: AsyncSession, tree: Tree, gone: Collection[str]) -> Counter[str]:
    """Remove the objects ``gone`` names with everything under them (the load balancer itself: retire it)."""
    gone = tree.with_descendants(gone)
    freed = await remove(session, tree, gone - {tree.lb.id})
    if tree.lb.id in gone:
        await retire_load_balancer(session, tree.lb, freed, operating=None)
    return freed


async def settle(session: AsyncSession, lb_id: str, *, reported: bool = False, noop: bool = False) -> None:
    """Finish whatever change is pending under ``lb_id``: the provider has applied it.

    Objects in PENDING_CREATE or PENDING_UPDATE become ACTIVE, PENDING_DELETE ones are removed with their
    children, and the quota they used is given back. Settling twice is a no-op, which is what makes a
    redelivered command harmless.

    ``reported``: the health service keeps the operating statuses of the load balancer, its listeners, pools
    and members from heartbeats (amphora provider), so only objects this change touched get the optimistic
    status here; the others keep what their data plane last reported.

    ``noop``: Octavia's no-op drivers, which nothing reports on. Its flows set the operating status of health
    monitors, L7 policies and L7 rules they apply (ONLINE, OFFLINE when disabled) and leave every other one
    as the API wrote it: load balancers, listeners and pools stay OFFLINE, members NO_MONITOR (OFFLINE when
    created under a health monitor), whatever their ``admin_state_up``. octavia-tempest-plugin's noop jobs
    expect exactly that.
    """
    tree = await Tree.load(session, lb_id)
    if tree is None:
        return
    now = utcnow()
    lb = tree.lb
    lb_gone = lb.provisioning_status == Provisioning.PENDING_DELETE
    freed = await remove(session, tree, tree.doomed())
    # The survivors become ACTIVE. With no data plane to report health, every survivor shows what a healthy
    # one would: ONLINE when enabled (members: NO_MONITOR unless their pool has a health monitor).
    monitored_pools = {m.pool_id for m in tree.monitors}
    for obj in tree.children():
        touched = obj.provisioning_status in BECOMES_ACTIVE
        if touched:
            obj.provisioning_status = Provisioning.ACTIVE
            obj.updated_at = now
        if noop:
            if touched and not isinstance(obj, Listener | Pool | Member):  # health monitors, L7 policies, rules
                obj.operating_status = _online(obj)
            continue
        if not touched and reported and isinstance(obj, Listener | Pool | Member):
            continue
        monitored = not isinstance(obj, Member) or obj.pool_id in monitored_pools
        obj.operating_status = _online(obj, monitored=monitored)
    if lb_gone:
        await retire_load_balancer(session, lb, freed)
    elif lb.provisioning_status in BECOMES_ACTIVE:
        if not noop and (
            not reported or lb.provisioning_status == Provisioning.PENDING_CREATE or not lb.admin_state_up
        ):
            lb.operating_status = _online(lb)
        lb.provisioning_status = Provisioning.ACTIVE
    lb.updated_at = now
    await quota.release(session, lb.project_id, dict(freed))


#: The table of each command kind's objects (a kind not listed: every pending object is a subject).
SUBJECTS: dict[int, type] = {
    Kind.RESOURCE_KIND_LISTENER: Listener,
    Kind.RESOURCE_KIND_POOL: Pool,
    Kind.RESOURCE_KIND_MEMBER: Member,
    Kind.RESOURCE_KIND_HEALTH_MONITOR: HealthMonitor,
    Kind.RESOURCE_KIND_L7_POLICY: L7Policy,
    Kind.RESOURCE_KIND_L7_RULE: L7Rule,
}


async def fail(session: AsyncSession, lb_id: str, subject: type | None = None, now: dt.datetime | None = None) -> bool:
    """The pending change could not be applied; returns whether anything was pending.

    Octavia's revert tasks: the objects the change was about go to ERROR: those being created or deleted,
    and the updated objects of the command's kind (``subject``: ``Pool`` for a pool update, see
    :data:`SUBJECTS`; ``None``: every pending object). Children that only showed PENDING_UPDATE for a child's
    change return to ACTIVE (``HealthMonitorToErrorOnRevertTask`` and the like: a failed health monitor must
    not leave its pool in ERROR). A load balancer that was being created or deleted goes to ERROR, operating
    status too (it may only be deleted then). One in PENDING_UPDATE goes back to ACTIVE when the change was a
    child's (``*ToErrorOnRevert`` marks the load balancer active, so the child can be fixed or deleted), and to
    ERROR when the change was its own (an update or a failover: ``LoadBalancerToErrorOnRevertTask``; a
    failover re-applies its configuration).
    """
    tree = await Tree.load(session, lb_id)
    if tree is None:
        return False
    now = now or utcnow()
    child_failed = False
    for obj in tree.children():
        status = obj.provisioning_status
        if status in (Provisioning.PENDING_CREATE, Provisioning.PENDING_DELETE) or (
            status == Provisioning.PENDING_UPDATE and (subject is None or isinstance(obj, subject))
        ):
            obj.provisioning_status, obj.updated_at = Provisioning.ERROR, now
            child_failed = True
        elif status == Provisioning.PENDING_UPDATE:
            obj.provisioning_status, obj.updated_at = Provisioning.ACTIVE, now
    lb = tree.lb
    was = lb.provisioning_status
    if was == Provisioning.PENDING_UPDATE:
        lb.provisioning_status = Provisioning.ACTIVE if child_failed else Provisioning.ERROR
    elif is_pending(was):
        lb.provisioning_status, lb.operating_status = Provisioning.ERROR, Operating.ERROR
    elif not child_failed:
        return False
    lb.updated_at = now
    return True


async def complete_commands(
    session: AsyncSession, lb_id: str, ids: Collection[str] | None = None, now: dt.datetime | None = None
) -> int:
    """Stamp open provider commands of ``lb_id`` (only ``ids`` if given) completed; returns how many.

    A completed command is never applied again: the worker and provider agents skip it when it is redelivered,
    and the outbox relay stops re-publishing it.
    """
    where = [ProviderCommand.load_balancer_id == lb_id, ProviderCommand.completed_at.is_(None)]
    if ids is not None:
        where.append(ProviderCommand.id.in_(list(ids)))
    result = await session.execute(update(ProviderCommand).where(*where).values(completed_at=now or utcnow()))
    return rowcount(result)


async def give_up(session: AsyncSession, lb_id: str, command_ids: Collection[str], now: dt.datetime) -> None:
    """Nobody applied the change's commands in time: complete them (a worker that comes back skips them) and
    leave the objects as a failed flow would (:func:`fail`)."""
    await complete_commands(session, lb_id, command_ids, now)
    await fail(session, lb_id, now=now)


async def complete_if_settled(session: AsyncSession, tree: Tree) -> bool:
    """Once nothing under the load balancer is pending, stamp its open commands completed (a provider's
    report completes its change); returns whether any was."""
    if tree.lb.provisioning_status != Provisioning.DELETED and tree.pending():
        return False
    return bool(await complete_commands(session, tree.lb.id))
