"""Which load balancer an object belongs to, for every kind a provider reports on.

The kinds are named as the fields of ``UpdateStatusesRequest`` (octavia-lib's
status dictionary keys, in snake case), which is also what error details name.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import Select, literal_column, select

from octavia_mesh.common.db.models import HealthMonitor, L7Policy, L7Rule, Listener, LoadBalancer, Member, Pool
from octavia_mesh.driver_agent.errors import InvalidArgument

#: Request field to model, in the order octavia-lib's driver agent applies them (children first).
KINDS: dict[str, Any] = {
    "members": Member,
    "health_monitors": HealthMonitor,
    "pools": Pool,
    "l7_rules": L7Rule,
    "l7_policies": L7Policy,
    "listeners": Listener,
    "load_balancers": LoadBalancer,
}


def owner_query(kind: str, ids: Collection[str]) -> Select[Any, Any]:
    """Rows ``(id, lb_id)`` of the ``kind`` objects among ``ids`` that exist."""
    lb_id = literal_column("lb_id")
    if kind == "load_balancers":
        return select(LoadBalancer.id, LoadBalancer.id.label(lb_id.name)).where(LoadBalancer.id.in_(ids))
    if kind in ("listeners", "pools"):
        model = KINDS[kind]
        return select(model.id, model.load_balancer_id.label(lb_id.name)).where(model.id.in_(ids))
    if kind in ("members", "health_monitors"):
        model = KINDS[kind]
        return (
            select(model.id, Pool.load_balancer_id.label(lb_id.name))
            .join(Pool, model.pool_id == Pool.id)
            .where(model.id.in_(ids))
        )
    if kind == "l7_policies":
        return (
            select(L7Policy.id, Listener.load_balancer_id.label(lb_id.name))
            .join(Listener, L7Policy.listener_id == Listener.id)
            .where(L7Policy.id.in_(ids))
        )
    if kind == "l7_rules":
        return (
            select(L7Rule.id, Listener.load_balancer_id.label(lb_id.name))
            .join(L7Policy, L7Rule.l7policy_id == L7Policy.id)
            .join(Listener, L7Policy.listener_id == Listener.id)
            .where(L7Rule.id.in_(ids))
        )
    raise ValueError(f"unknown kind {kind!r}")


def check_id(value: str, kind: str, field: str) -> str:
    """``value`` as a canonical UUID string, or :class:`InvalidArgument`."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(f"{field}: {value!r} is not a valid id", kind, value, field) from None
    return str(parsed)
