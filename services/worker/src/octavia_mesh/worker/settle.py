"""Resolving a load balancer's PENDING_* states once its provider has applied them.

The API lets one change per load balancer be in flight (Octavia's
load-balancer-wide lock), so "settle everything pending under this load
balancer" is exactly "finish the change": objects in PENDING_CREATE or
PENDING_UPDATE become ACTIVE, objects in PENDING_DELETE are removed with
their children, and the quota they used is given back. Settling twice is a
no-op, which is what makes a redelivered command harmless.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.common.commands import Kind
from octavia_mesh.common.db import quota, vips
from octavia_mesh.common.db.models import (
    HealthMonitor,
    L7Policy,
    L7Rule,
    Listener,
    ListenerStatistics,
    LoadBalancer,
    Member,
    Pool,
    Tag,
    utcnow,
)

PENDING = ("PENDING_CREATE", "PENDING_UPDATE")


def doomed_ids(tree: Tree) -> set[str]:
    """Ids of the objects the pending change removes: PENDING_DELETE ones and everything under them."""
    lb_gone = tree.lb.provisioning_status == "PENDING_DELETE"
    doomed: set[str] = set()

    def mark(objs: list[Any], parent_attr: str | None = None) -> None:
        for obj in objs:
            if (
                lb_gone
                or obj.provisioning_status == "PENDING_DELETE"
                or (parent_attr is not None and getattr(obj, parent_attr) in doomed)
            ):
                doomed.add(obj.id)

    mark(tree.listeners)
    mark(tree.pools)
    mark(tree.policies, "listener_id")
    mark(tree.rules, "l7policy_id")
    mark(tree.members, "pool_id")
    mark(tree.monitors, "pool_id")
    return doomed


class Tree:
    """Every object under one load balancer, loaded at once."""

    def __init__(
        self,
        lb: LoadBalancer,
        listeners: list[Listener],
        pools: list[Pool],
        members: list[Member],
        monitors: list[HealthMonitor],
        policies: list[L7Policy],
        rules: list[L7Rule],
    ) -> None:
        self.lb, self.listeners, self.pools, self.members = lb, listeners, pools, members
        self.monitors, self.policies, self.rules = monitors, policies, rules

    @classmethod
    async def load(cls, session: AsyncSession, lb_id: str, *, lock: bool = True) -> Tree | None:
        lb = await session.get(LoadBalancer, lb_id, with_for_update=lock)
        if lb is None:
            return None

        async def rows(model: Any, *where: Any) -> list[Any]:
            return list((await session.execute(select(model).where(*where))).scalars())

        listeners = await rows(Listener, Listener.load_balancer_id == lb_id)
        pools = await rows(Pool, Pool.load_balancer_id == lb_id)
        pool_ids = [p.id for p in pools]
        listener_ids = [listener.id for listener in listeners]
        members = await rows(Member, Member.pool_id.in_(pool_ids)) if pool_ids else []
        monitors = await rows(HealthMonitor, HealthMonitor.pool_id.in_(pool_ids)) if pool_ids else []
        policies = await rows(L7Policy, L7Policy.listener_id.in_(listener_ids)) if listener_ids else []
        policy_ids = [p.id for p in policies]
        rules = await rows(L7Rule, L7Rule.l7policy_id.in_(policy_ids)) if policy_ids else []
        return cls(lb, listeners, pools, members, monitors, policies, rules)


def _online(obj: Any, *, monitored: bool = True) -> str:
    if not obj.admin_state_up:
        return "OFFLINE"
    return "ONLINE" if monitored else "NO_MONITOR"


async def settle(
    session: AsyncSession, lb_id: str, *, cascade: bool = False, reported: bool = False, noop: bool = False
) -> None:
    """Finish whatever change is pending under ``lb_id`` (see the module docstring).

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
    freed: Counter[str] = Counter()
    lb_gone = tree.lb.provisioning_status == "PENDING_DELETE"
    doomed = doomed_ids(tree)

    for listener in tree.listeners:  # a listener whose default pool goes away keeps living without it
        if listener.default_pool_id in doomed and listener.id not in doomed:
            listener.default_pool_id = None
    for policy in tree.policies:
        if policy.redirect_pool_id in doomed and policy.id not in doomed:
            policy.redirect_pool_id = None
    await session.flush()
    for model, objs, name in (
        (L7Rule, tree.rules, "l7rule"),
        (L7Policy, tree.policies, "l7policy"),
        (Member, tree.members, "member"),
        (HealthMonitor, tree.monitors, "health_monitor"),
    ):
        gone = [o.id for o in objs if o.id in doomed]
        if gone:
            await session.execute(delete(model).where(model.id.in_(gone)))
            freed[name] += len(gone)
    gone_listeners = [o.id for o in tree.listeners if o.id in doomed]
    gone_pools = [o.id for o in tree.pools if o.id in doomed]
    if gone_listeners:
        await session.execute(delete(Listener).where(Listener.id.in_(gone_listeners)))
        await session.execute(delete(ListenerStatistics).where(ListenerStatistics.listener_id.in_(gone_listeners)))
        freed["listener"] += len(gone_listeners)
    if gone_pools:
        await session.execute(delete(Pool).where(Pool.id.in_(gone_pools)))
        freed["pool"] += len(gone_pools)
    if doomed:
        await session.execute(delete(Tag).where(Tag.resource_id.in_(list(doomed))))

    # Then the survivors become ACTIVE. Unless ``noop``, with no report yet every survivor shows what a healthy
    # one would: ONLINE when enabled (members: NO_MONITOR unless their pool has a health monitor).
    monitored_pools = {m.pool_id for m in tree.monitors if m.id not in doomed}
    for objs in (tree.listeners, tree.pools, tree.policies, tree.rules, tree.monitors, tree.members):
        for obj in objs:
            if obj.id in doomed:
                continue
            touched = obj.provisioning_status in PENDING
            if touched:
                obj.provisioning_status = "ACTIVE"
                obj.updated_at = now
            if noop:
                if touched and isinstance(obj, HealthMonitor | L7Policy | L7Rule):
                    obj.operating_status = _online(obj)
                continue
            if not touched and reported and isinstance(obj, Listener | Pool | Member):
                continue
            monitored = not isinstance(obj, Member) or obj.pool_id in monitored_pools
            obj.operating_status = _online(obj, monitored=monitored)

    lb = tree.lb
    if lb_gone:
        lb.provisioning_status = "DELETED"
        lb.operating_status = "OFFLINE"
        await session.execute(delete(Tag).where(Tag.resource_id == lb.id))
        await vips.release(session, lb.id)
        freed["load_balancer"] += 1
    elif lb.provisioning_status in PENDING:
        if not noop and (not reported or lb.provisioning_status == "PENDING_CREATE" or not lb.admin_state_up):
            lb.operating_status = _online(lb)
        lb.provisioning_status = "ACTIVE"
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


async def fail(session: AsyncSession, lb_id: str, subject: type | None = None) -> None:
    """The provider could not apply the pending change: the objects it was about go to ERROR.

    Those are the objects being created or deleted, and the updated objects of the command's kind
    (``subject``: ``Pool`` for a pool update; ``None``: every pending object). Parents that only showed
    PENDING_UPDATE for a child's change return to ACTIVE, as Octavia's reverts put them back
    (``HealthMonitorToErrorOnRevertTask`` and the like): a failed health monitor must not leave its pool in
    ERROR, where the pool's children could not even be deleted. A load balancer that was being created or
    deleted goes to ERROR too (it may only be deleted then, as in Octavia); one whose child change failed
    returns to ACTIVE, so the child can be fixed or deleted.
    """
    tree = await Tree.load(session, lb_id)
    if tree is None:
        return
    now = utcnow()
    for objs in (tree.listeners, tree.pools, tree.policies, tree.rules, tree.monitors, tree.members):
        for obj in objs:
            status = obj.provisioning_status
            if status in ("PENDING_CREATE", "PENDING_DELETE") or (
                status == "PENDING_UPDATE" and (subject is None or isinstance(obj, subject))
            ):
                obj.provisioning_status, obj.updated_at = "ERROR", now
            elif status == "PENDING_UPDATE":
                obj.provisioning_status, obj.updated_at = "ACTIVE", now
    lb = tree.lb
    if lb.provisioning_status in ("PENDING_CREATE", "PENDING_DELETE"):
        lb.provisioning_status, lb.operating_status = "ERROR", "ERROR"
    elif lb.provisioning_status == "PENDING_UPDATE":
        lb.provisioning_status = "ACTIVE"
    lb.updated_at = now
