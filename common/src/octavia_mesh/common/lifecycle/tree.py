"""The objects under one load balancer: loading them at once, and removing some with everything under them.

The one tree loader: the worker's settle and configure steps, the driver agent's reports and reads,
housekeeping's recovery and the API's ``/status`` tree and single-call create body all load a load balancer's
tree through :meth:`Tree.load`. (The health service reads only a few columns of many load balancers at once,
for every heartbeat batch: its projection in ``health/store.py`` is a different query, not a second loader.)

Removing an object removes what a cascade would: a listener takes its L7
policies and their rules, a pool its members and health monitor, a load
balancer everything. References that would dangle are cleared (a listener
keeps living without its removed default pool, an L7 policy without its
redirect pool), tags and listener statistics go with their objects, and the
quota the removed objects used is counted so that the caller can give it back
in the same transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

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
)
from octavia_mesh.common.lifecycle.status import Provisioning, is_pending


@dataclass(slots=True)
class Tree:
    """A load balancer and every object under it, as rows of the caller's session."""

    lb: LoadBalancer
    listeners: list[Listener]
    pools: list[Pool]
    members: list[Member]
    monitors: list[HealthMonitor]
    policies: list[L7Policy]
    rules: list[L7Rule]

    @classmethod
    async def load(cls, session: AsyncSession, lb_id: str, *, lock: bool = True) -> Tree | None:
        """Load the tree of ``lb_id`` (its row locked ``FOR UPDATE`` unless ``lock`` is false).

        Every list is in creation order, ties broken by id, so that documents built from a tree (the API's
        status tree) are the same on every read; :meth:`policies_by_position` gives the L7 policies in
        evaluation order.
        """
        lb = await session.get(LoadBalancer, lb_id, with_for_update=lock)
        if lb is None:
            return None

        async def rows(model: Any, *where: Any) -> list[Any]:
            query = select(model).where(*where).order_by(model.created_at, model.id)
            return list((await session.execute(query)).scalars())

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

    def policies_by_position(self) -> list[L7Policy]:
        """The L7 policies in the order each listener evaluates them."""
        return sorted(self.policies, key=lambda p: p.position)

    def children(self) -> list[Any]:
        """Every object under the load balancer."""
        return [*self.listeners, *self.pools, *self.policies, *self.rules, *self.monitors, *self.members]

    def with_descendants(self, ids: Collection[str]) -> set[str]:
        """``ids`` (of objects in this tree) and the ids of everything under them."""
        if self.lb.id in ids:
            return {self.lb.id, *(o.id for o in self.children())}
        gone = set(ids)
        for objs, parent in (
            (self.policies, "listener_id"),
            (self.rules, "l7policy_id"),
            (self.members, "pool_id"),
            (self.monitors, "pool_id"),
        ):
            gone.update(o.id for o in objs if getattr(o, parent) in gone)
        return gone

    def pending(self) -> bool:
        """Whether the load balancer or anything under it is still ``PENDING_*``."""
        return any(is_pending(o.provisioning_status) for o in (self.lb, *self.children()))

    def doomed(self) -> set[str]:
        """Ids of the objects the pending change removes: PENDING_DELETE ones and everything under them
        (every child, when the load balancer itself is being deleted)."""
        if self.lb.provisioning_status == Provisioning.PENDING_DELETE:
            return {o.id for o in self.children()}
        marked = [o.id for o in self.children() if o.provisioning_status == Provisioning.PENDING_DELETE]
        return self.with_descendants(marked)


async def remove(session: AsyncSession, tree: Tree, gone: Collection[str]) -> Counter[str]:
    """Delete the children of ``tree`` named in ``gone`` (which must hold their descendants too).

    The load balancer's own row is left to the caller. Returns how many objects of each quota resource
    (``listener``, ``pool``, ``member``, ...) were removed.
    """
    freed: Counter[str] = Counter()
    for listener in tree.listeners:
        if listener.default_pool_id in gone and listener.id not in gone:
            listener.default_pool_id = None
    for policy in tree.policies:
        if policy.redirect_pool_id in gone and policy.id not in gone:
            policy.redirect_pool_id = None
    await session.flush()
    # Children first: the foreign keys point upwards.
    for model, objs, name in (
        (L7Rule, tree.rules, "l7rule"),
        (L7Policy, tree.policies, "l7policy"),
        (Member, tree.members, "member"),
        (HealthMonitor, tree.monitors, "health_monitor"),
        (Listener, tree.listeners, "listener"),
        (Pool, tree.pools, "pool"),
    ):
        ids = [o.id for o in objs if o.id in gone]
        if not ids:
            continue
        await session.execute(delete(model).where(model.id.in_(ids)))
        if model is Listener:
            await session.execute(delete(ListenerStatistics).where(ListenerStatistics.listener_id.in_(ids)))
        freed[name] += len(ids)
    doomed_children = [o.id for o in tree.children() if o.id in gone]
    if doomed_children:
        await session.execute(delete(Tag).where(Tag.resource_id.in_(doomed_children)))
    # (The ORM bulk deletes synchronize the session: the removed rows leave its identity map.)
    tree.listeners = [o for o in tree.listeners if o.id not in gone]
    tree.pools = [o for o in tree.pools if o.id not in gone]
    tree.members = [o for o in tree.members if o.id not in gone]
    tree.monitors = [o for o in tree.monitors if o.id not in gone]
    tree.policies = [o for o in tree.policies if o.id not in gone]
    tree.rules = [o for o in tree.rules if o.id not in gone]
    return freed
