"""Amphorae: ``/v2/octavia/amphorae`` (admin only).

Amphora rows belong to providers that run amphorae; these calls show them,
and hand failover, agent-configuration and delete requests to the provider of
the amphora's load balancer through the command outbox, in the transaction
that records the request.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Immutable, NotFound
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import (
    Filter,
    as_text,
    list_query,
    list_spec,
    page_reply,
    select_fields,
    show_fields,
    strict_bool,
    strict_int,
    strict_time,
    views_of,
    words,
)
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import Amphora, ListenerStatistics, LoadBalancer, utcnow
from octavia_mesh.common.lifecycle import AmphoraStatus

LABEL = "Amphora"
DELETED = AmphoraStatus.DELETED

_TEXT_COLUMNS = words(
    "id compute_id lb_network_ip vrrp_ip ha_ip vrrp_port_id ha_port_id role status vrrp_interface cached_zone "
    "image_id compute_flavor"
)
_TIME_COLUMNS = ("cert_expiration", "created_at", "updated_at")
_INT_COLUMNS = ("vrrp_id", "vrrp_priority")
SPEC = list_spec(
    "amphorae",
    Amphora,
    {as_text: _TEXT_COLUMNS, strict_time: _TIME_COLUMNS, strict_int: _INT_COLUMNS, strict_bool: ("cert_busy",)},
    aliases={
        "loadbalancer_id": Filter(Amphora.load_balancer_id),
        "load_balancer_id": Filter(Amphora.load_balancer_id),
        # Octavia filters amphorae by the project of their load balancer (joined in list_).
        "project_id": Filter(LoadBalancer.project_id),
    },
    unsortable=("project_id",),
    taggable=False,
)


def view(amp: Amphora) -> dict[str, Any]:
    """Octavia's amphora document, in its order."""
    return {
        "id": amp.id,
        "loadbalancer_id": amp.load_balancer_id,
        "compute_id": amp.compute_id,
        "lb_network_ip": amp.lb_network_ip,
        "vrrp_ip": amp.vrrp_ip,
        "ha_ip": amp.ha_ip,
        "vrrp_port_id": amp.vrrp_port_id,
        "ha_port_id": amp.ha_port_id,
        "cert_expiration": store.timestamp(amp.cert_expiration),
        "cert_busy": bool(amp.cert_busy),
        "role": amp.role,
        "status": amp.status,
        "vrrp_interface": amp.vrrp_interface,
        "vrrp_id": amp.vrrp_id,
        "vrrp_priority": amp.vrrp_priority,
        "cached_zone": amp.cached_zone,
        "created_at": store.timestamp(amp.created_at),
        "updated_at": store.timestamp(amp.updated_at),
        "image_id": amp.image_id,
        "compute_flavor": amp.compute_flavor,
    }


async def _load(session: AsyncSession, amp_id: str, *, lock: bool = False) -> Amphora:
    """The amphora, unless missing or deleted (404)."""
    amp = await session.get(Amphora, amp_id, with_for_update=lock) if amp_id else None
    if amp is None or amp.status == DELETED:
        raise NotFound(LABEL, amp_id)
    return amp


async def list_(app: App, call: Call) -> Reply:
    call.caller.check(Rule.ADMIN)
    listing = list_query(app, call, SPEC)
    statement = (
        select(Amphora)
        .outerjoin(LoadBalancer, Amphora.load_balancer_id == LoadBalancer.id)
        .where(Amphora.status != DELETED)
    )
    async with app.read() as session:
        return await page_reply(session, call, listing, statement, views_of(view))


async def get(app: App, call: Call) -> Reply:
    call.caller.check(Rule.ADMIN)
    fields = show_fields(call.query)
    async with app.read() as session:
        amp = await _load(session, call.id)
    return Reply(200, {"amphora": select_fields(view(amp), fields)})


async def stats(app: App, call: Call) -> Reply:
    """One entry per listener the amphora reports counters for."""
    call.caller.check(Rule.ADMIN)
    async with app.read() as session:
        rows = (
            await session.execute(
                select(ListenerStatistics, Amphora.load_balancer_id)
                .join(Amphora, ListenerStatistics.amphora_id == Amphora.id)
                .where(ListenerStatistics.amphora_id == call.id)
                .order_by(ListenerStatistics.listener_id)
            )
        ).all()
    if not rows:
        raise NotFound("Amphora stats for", call.id)
    items = [
        {
            "active_connections": stat.active_connections,
            "bytes_in": stat.bytes_in,
            "bytes_out": stat.bytes_out,
            "id": stat.amphora_id,
            "listener_id": stat.listener_id,
            "loadbalancer_id": lb_id,
            "request_errors": stat.request_errors,
            "total_connections": stat.total_connections,
        }
        for stat, lb_id in rows
    ]
    return Reply(200, {"amphora_stats": items})


async def configure(app: App, call: Call) -> Reply:
    """Ask the provider to push the amphora agent's configuration again."""
    call.caller.check(Rule.ADMIN)
    async with app.change() as session:
        amp = await _load(session, call.id)
        lb = await session.get(LoadBalancer, amp.load_balancer_id) if amp.load_balancer_id else None
        # An amphora without a load balancer has no provider to tell; there is nothing to configure.
        if lb is not None:
            store.command(session, lb.provider, Kind.RESOURCE_KIND_AMPHORA, Op.OPERATION_UPDATE, amp.id, lb.id)
    return Reply(202)


async def failover(app: App, call: Call) -> Reply:
    """Replace the amphora: its load balancer goes PENDING_UPDATE until the provider is done."""
    call.caller.check(Rule.ADMIN)
    async with app.change() as session:
        amp = await _load(session, call.id)
        if amp.load_balancer_id is None:  # a spare: no provider owns it here
            raise Immutable("amphora", amp.id)
        # Octavia 19.0.0 takes the load balancer lock here: ACTIVE only, else 409 "immutable".
        await store.lock_load_balancer(session, amp.load_balancer_id)
        lb = await store.get_known(session, LoadBalancer, amp.load_balancer_id)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_AMPHORA, Op.OPERATION_FAILOVER, amp.id, lb.id)
    return Reply(202)


async def delete_(app: App, call: Call) -> Reply:
    """Delete a failed amphora (Octavia accepts only amphorae in ERROR)."""
    call.caller.check(Rule.ADMIN)
    async with app.change() as session:
        amp = await _load(session, call.id, lock=True)
        if amp.status != store.ERROR:
            raise Immutable("amphora", amp.id)
        amp.status = store.PENDING_DELETE
        amp.updated_at = utcnow()
        lb = await session.get(LoadBalancer, amp.load_balancer_id) if amp.load_balancer_id else None
        provider = lb.provider if lb is not None else app.settings.default_provider_driver
        store.command(
            session, provider, Kind.RESOURCE_KIND_AMPHORA, Op.OPERATION_DELETE, amp.id, lb.id if lb is not None else ""
        )
    return Reply(204)


HANDLERS = {
    "ListAmphorae": list_,
    "GetAmphora": get,
    "GetAmphoraStats": stats,
    "ConfigureAmphora": configure,
    "FailoverAmphora": failover,
    "DeleteAmphora": delete_,
}
