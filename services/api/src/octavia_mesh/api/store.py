"""Database steps the resource handlers share: lookups, the load-balancer lock, tags, quotas, commands."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api.app import App
from octavia_mesh.api.errors import Immutable, NotFound, PendingState, QuotaExceeded
from octavia_mesh.common import commands
from octavia_mesh.common.db import quota
from octavia_mesh.common.db.models import LoadBalancer, Tag, utcnow

T = TypeVar("T")

ACTIVE = "ACTIVE"
ERROR = "ERROR"
DELETED = "DELETED"
PENDING_CREATE = "PENDING_CREATE"
PENDING_UPDATE = "PENDING_UPDATE"
PENDING_DELETE = "PENDING_DELETE"
OFFLINE = "OFFLINE"

#: Quota names in the 403 message, as Octavia spells them.
QUOTA_LABELS = {
    "load_balancer": "Load Balancer",
    "listener": "Listener",
    "pool": "Pool",
    "health_monitor": "Health Monitor",
    "member": "Member",
    "l7policy": "L7 Policy",
    "l7rule": "L7 Rule",
}


def timestamp(value: dt.datetime | None) -> str | None:
    """Octavia's timestamp format (naive UTC, ISO 8601)."""
    return value.isoformat() if value is not None else None


async def get_or_404(
    session: AsyncSession, model: type[T], ident: str, label: str, *, hide_deleted: bool = False, lock: bool = False
) -> T:
    """Load ``model`` by primary key, or answer Octavia's 404 for ``label``."""
    row = await session.get(model, ident, with_for_update=lock) if ident else None
    if row is None or (hide_deleted and getattr(row, "provisioning_status", None) == DELETED):
        raise NotFound(label, ident)
    return row


async def lock_load_balancer(session: AsyncSession, lb_id: str, *, own_change: bool = False) -> None:
    """Move an ACTIVE load balancer to PENDING_UPDATE, or answer 409.

    This is Octavia's load-balancer-wide lock: one conditional UPDATE, so two
    concurrent changes cannot both pass. ``own_change`` selects the message
    Octavia gives when the load balancer itself is the object being changed.
    """
    result = await session.execute(
        update(LoadBalancer)
        .where(LoadBalancer.id == lb_id, LoadBalancer.provisioning_status == ACTIVE)
        .values(provisioning_status=PENDING_UPDATE, updated_at=utcnow())
    )
    if result.rowcount == 1:
        return
    status = (
        await session.execute(select(LoadBalancer.provisioning_status).where(LoadBalancer.id == lb_id))
    ).scalar_one_or_none()
    if status is None or status == DELETED:
        raise NotFound("Load Balancer", lb_id)
    if own_change:
        raise PendingState(status, "loadbalancer", lb_id)
    raise Immutable("Load Balancer", lb_id)


async def tags_of(session: AsyncSession, ids: Iterable[str]) -> dict[str, list[str]]:
    """Tags of many resources in one query."""
    ids = list(ids)
    out: dict[str, list[str]] = defaultdict(list)
    if not ids:
        return out
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        rows = await session.execute(select(Tag.resource_id, Tag.tag).where(Tag.resource_id.in_(chunk)))
        for resource_id, tag in rows:
            out[resource_id].append(tag)
    return out


async def set_tags(session: AsyncSession, resource_id: str, tags: Iterable[str] | None) -> None:
    """Replace a resource's tags (duplicates collapse, as in Octavia)."""
    await session.execute(delete(Tag).where(Tag.resource_id == resource_id))
    for tag in dict.fromkeys(tags or ()):
        session.add(Tag(resource_id=resource_id, tag=tag))


def quota_defaults(app: App) -> dict[str, int]:
    s = app.settings
    return {
        "load_balancer": s.quota_load_balancer,
        "listener": s.quota_listener,
        "pool": s.quota_pool,
        "health_monitor": s.quota_health_monitor,
        "member": s.quota_member,
        "l7policy": s.quota_l7policy,
        "l7rule": s.quota_l7rule,
    }


async def reserve_quota(app: App, session: AsyncSession, project_id: str | None, amounts: Mapping[str, int]) -> None:
    """Count new objects against the project's quota, or answer 403."""
    if project_id is None:
        return
    try:
        await quota.reserve(session, project_id, {k: v for k, v in amounts.items() if v}, quota_defaults(app))
    except quota.QuotaMet as exc:
        raise QuotaExceeded(QUOTA_LABELS[exc.resource]) from None


def command(
    session: AsyncSession,
    provider: str,
    kind: int,
    operation: int,
    resource_id: str,
    load_balancer_id: str,
    cascade: bool = False,
) -> None:
    """Queue the provider command that resolves this transaction's PENDING_* state."""
    commands.new_command(session, provider, kind, operation, resource_id, load_balancer_id, cascade)


def view_base(row: Any, tags: list[str] | None = None) -> dict[str, Any]:
    """Fields every provisioned object prints, in Octavia's order."""
    return {
        "id": row.id,
        "name": row.name or "",
        "provisioning_status": row.provisioning_status,
        "operating_status": row.operating_status,
        "admin_state_up": row.admin_state_up,
        "project_id": row.project_id,
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
        "tags": tags if tags is not None else [],
    }


def fresh(model: type[T], **values: Any) -> T:
    """A new row in PENDING_CREATE / OFFLINE with its timestamps set."""
    return model(
        provisioning_status=PENDING_CREATE, operating_status=OFFLINE, created_at=utcnow(), updated_at=None, **values
    )
