"""Single-call create of a whole load-balancer tree, and the ``/status`` tree."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import NotFound, NotImplementedByProvider
from octavia_mesh.api.policy import Rule
from octavia_mesh.common.db.models import HealthMonitor, L7Policy, Listener, LoadBalancer, Member, Pool


async def create_tree(
    app: App, call: Call, session: AsyncSession, lb: LoadBalancer, listeners: list[Any], pools: list[Any]
) -> dict[str, int]:
    raise NotImplementedByProvider("single-call create is not implemented yet")


async def full_view(session: AsyncSession, lb: LoadBalancer, item: dict[str, Any]) -> dict[str, Any]:
    return item


async def status_tree(app: App, call: Call) -> Reply:
    """``/status``: the load balancer, its listeners, each listener's pools (default and L7-redirect targets),
    their health monitor and members, with both statuses at every node, as Octavia prints them."""
    async with app.read() as session:
        lb = await store.get_or_404(session, LoadBalancer, call.id, "Load Balancer", hide_deleted=True)
        if not call.caller.allowed(Rule.READ, lb.project_id):
            raise NotFound("Load Balancer", call.id)
        listeners = (
            (
                await session.execute(
                    select(Listener)
                    .where(Listener.load_balancer_id == lb.id)
                    .order_by(Listener.created_at, Listener.id)
                )
            )
            .scalars()
            .all()
        )
        pools = {p.id: p for p in (await session.execute(select(Pool).where(Pool.load_balancer_id == lb.id))).scalars()}
        members: dict[str, list[Member]] = defaultdict(list)
        monitors: dict[str, HealthMonitor] = {}
        redirects: dict[str, list[str]] = defaultdict(list)
        if pools:
            for member in (
                await session.execute(
                    select(Member).where(Member.pool_id.in_(list(pools))).order_by(Member.created_at, Member.id)
                )
            ).scalars():
                members[member.pool_id].append(member)
            for monitor in (
                await session.execute(select(HealthMonitor).where(HealthMonitor.pool_id.in_(list(pools))))
            ).scalars():
                monitors[monitor.pool_id] = monitor
        if listeners:
            for listener_id, pool_id in await session.execute(
                select(L7Policy.listener_id, L7Policy.redirect_pool_id)
                .where(L7Policy.listener_id.in_([x.id for x in listeners]), L7Policy.redirect_pool_id.is_not(None))
                .order_by(L7Policy.position)
            ):
                redirects[listener_id].append(pool_id)

    def pool_status(pool: Pool) -> dict[str, Any]:
        monitor = monitors.get(pool.id)
        return {
            "id": pool.id,
            "name": pool.name or "",
            "provisioning_status": pool.provisioning_status,
            "operating_status": pool.operating_status,
            "health_monitor": None
            if monitor is None
            else {
                "id": monitor.id,
                "name": monitor.name or "",
                "type": monitor.type,
                "provisioning_status": monitor.provisioning_status,
                "operating_status": monitor.operating_status,
            },
            "members": [
                {
                    "id": m.id,
                    "name": m.name or "",
                    "operating_status": m.operating_status,
                    "provisioning_status": m.provisioning_status,
                    "address": m.address,
                    "protocol_port": m.protocol_port,
                }
                for m in members[pool.id]
            ],
        }

    def listener_status(listener: Listener) -> dict[str, Any]:
        pool_ids = [i for i in dict.fromkeys([listener.default_pool_id, *redirects[listener.id]]) if i in pools]
        return {
            "id": listener.id,
            "name": listener.name or "",
            "operating_status": listener.operating_status,
            "provisioning_status": listener.provisioning_status,
            "pools": [pool_status(pools[i]) for i in pool_ids],
        }

    return Reply(
        200,
        {
            "statuses": {
                "loadbalancer": {
                    "id": lb.id,
                    "name": lb.name or "",
                    "operating_status": lb.operating_status,
                    "provisioning_status": lb.provisioning_status,
                    "listeners": [listener_status(x) for x in listeners],
                }
            }
        },
    )
