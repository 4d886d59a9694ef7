"""Load balancers: ``/v2/lbaas/loadbalancers``."""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from typing import Any, cast

from cachetools import LRUCache
from sqlalchemy import CompoundSelect, Select, Table, bindparam, func, literal, select, true, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import store, topology, vip
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import InvalidInput, ValidationFailure
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import Filter, as_text, list_spec, parse_query, strict_bool, strict_time, words
from octavia_mesh.api.reads import ReadConnection, record_type
from octavia_mesh.api.resources import graph, listeners
from octavia_mesh.api.resources.providers import facts_of, resolve_provider
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.engine import rowcount
from octavia_mesh.common.db.models import (
    AvailabilityZone,
    Flavor,
    FlavorProfile,
    Listener,
    ListenerStatistics,
    LoadBalancer,
    Pool,
    Tag,
    utcnow,
)
from octavia_mesh.common.lifecycle import transitions as lifecycle

LABEL = "Load Balancer"

#: LoadBalancerPOST (in our attribute order); LoadBalancerPUT is the same without the create-only attributes.
BODY = s.Schema(
    "loadbalancer",
    "load_balancer",
    {
        "name": s.Attr(s.text(255), default=""),
        "description": s.Attr(s.text(255), default=""),
        "admin_state_up": s.Attr(s.boolean, default=True),
        "vip_qos_policy_id": s.Attr(s.uuid_value),
        "vip_sg_ids": s.Attr(s.listof(s.uuid_value)),
        "tags": s.Attr(s.tag_list),
        "project_id": s.Attr(s.text(36), create_only=True),
        "tenant_id": s.Attr(s.text(36), create_only=True),
        "vip_address": s.Attr(s.ip_address, create_only=True),
        "vip_port_id": s.Attr(s.uuid_value, create_only=True),
        "vip_subnet_id": s.Attr(s.uuid_value, create_only=True),
        "vip_network_id": s.Attr(s.uuid_value, create_only=True),
        "additional_vips": s.Attr(s.anything, create_only=True),
        "provider": s.Attr(s.text(64), create_only=True),
        "flavor_id": s.Attr(s.uuid_value, create_only=True),
        "availability_zone": s.Attr(s.text(255), create_only=True),
        # The single-call create's tree, read by graph.create_tree.
        "listeners": s.Attr(s.anything, create_only=True),
        "pools": s.Attr(s.anything, create_only=True),
    },
)

_TEXT_COLUMNS = words(
    "id name description project_id provisioning_status operating_status vip_address vip_port_id vip_subnet_id "
    "vip_network_id provider flavor_id availability_zone"
)
SPEC = list_spec(
    "loadbalancers",
    LoadBalancer,
    {
        as_text: (*_TEXT_COLUMNS, "vip_qos_policy_id"),
        strict_time: ("created_at", "updated_at"),
        strict_bool: ("admin_state_up",),
    },
    aliases={"tenant_id": Filter(LoadBalancer.project_id)},
    unsortable=("tenant_id", "vip_qos_policy_id"),
)


def view(lb: Any, tags: list[str], listener_ids: list[str], pool_ids: list[str]) -> dict[str, Any]:
    """Octavia's document of ``lb``: a :class:`LoadBalancer` or a Core row of its table (``reads``)."""
    out: dict[str, Any] = {
        **store.status_view(lb),
        "project_id": lb.project_id,
        "created_at": store.timestamp(lb.created_at),
        "updated_at": store.timestamp(lb.updated_at),
        "vip_address": lb.vip_address,
        "vip_port_id": lb.vip_port_id,
        "vip_subnet_id": lb.vip_subnet_id,
        "vip_network_id": lb.vip_network_id,
        "vip_sg_ids": list(lb.vip_sg_ids or []),
        "additional_vips": list(lb.additional_vips or []),
        "listeners": [{"id": i} for i in listener_ids],
        "pools": [{"id": i} for i in pool_ids],
        "provider": lb.provider,
        "flavor_id": lb.flavor_id,
        "vip_qos_policy_id": lb.vip_qos_policy_id,
        "tags": tags,
        "availability_zone": lb.availability_zone,
        "vip_vnic_type": lb.vip_vnic_type,
        "tenant_id": lb.project_id,
    }
    return out


@functools.cache
def _children(one: bool = False) -> CompoundSelect:
    """Listener and pool ids and tags of the load balancers ``:ids``: one statement, built once (a list of 100
    spent more on building it, 300 IN values coerced one by one, than the database spent running it). ``one``:
    of the load balancer ``:id`` (a show), without the expanding ``IN`` that is rendered anew each time."""

    def of(column: Any) -> Any:
        return column == bindparam("id") if one else column.in_(bindparam("ids", expanding=True))

    return union_all(
        select(
            literal("l").label("child_kind"),
            Listener.load_balancer_id.label("child_of"),
            Listener.id.label("child"),
            Listener.created_at.label("child_created_at"),
        ).where(of(Listener.load_balancer_id)),
        select(literal("p"), Pool.load_balancer_id, Pool.id, Pool.created_at).where(of(Pool.load_balancer_id)),
        select(literal("t"), Tag.resource_id, Tag.tag, literal(None)).where(of(Tag.resource_id)),
    )


Children = tuple[dict[str, list[str]], dict[str, list[str]], dict[str, list[str]]]


def _sort_children(found: list[Any], into: Children) -> None:
    """Rows of :func:`_children` into ``(listeners, pools, tags)`` by load balancer, in creation order."""
    listeners, pools, tags = into
    by_kind = {"l": listeners, "p": pools, "t": tags}
    for kind, lb_id, value, _ in sorted(found, key=lambda r: (r[0], r[3] or dt.datetime.min, r[2])):
        by_kind[kind][lb_id].append(value)


@functools.cache
def _show_statement() -> Select[Any]:
    """A load balancer's row (``:id``) with its listener ids, pool ids and tags, in one statement: a row per
    child, the load balancer's columns on each (one row with empty child columns when it has none). One round
    trip instead of two: on PostgreSQL a show's cost was mostly its statements'."""
    children = _children(one=True).subquery("children")
    table = cast("Table", LoadBalancer.__table__)
    return (
        select(*table.columns, *children.columns)
        .select_from(table.outerjoin(children, true()))
        .where(table.c.id == bindparam("id"))
    )


async def show_one(conn: ReadConnection, lb_id: str) -> tuple[Any, dict[str, Any]] | None:
    """The row of ``lb_id`` and its view, or None (:attr:`store.ProjectCollection.show_one`)."""
    result = await conn.execute(_show_statement(), {"id": lb_id})
    keys = tuple(result.keys())
    width = len(keys) - 4  # the load balancer's columns, then the child's four
    rows = result.all()
    if not rows:
        return None
    lb = record_type(keys[:width])(*rows[0][:width])
    into: Children = ({lb_id: []}, {lb_id: []}, {lb_id: []})
    _sort_children([row[width:] for row in rows if row[width] is not None], into)
    listeners, pools, tags = into
    return lb, view(lb, tags[lb_id], listeners[lb_id], pools[lb_id])


async def _children_of(session: AsyncSession | ReadConnection, ids: list[str]) -> Children:
    """The listener ids, pool ids and tags of the load balancers ``ids``, in one query (per 500)."""
    into: Children = ({i: [] for i in ids}, {i: [] for i in ids}, {i: [] for i in ids})
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        one = len(chunk) == 1
        statement, parameters = (_children(one=True), {"id": chunk[0]}) if one else (_children(), {"ids": chunk})
        _sort_children(list((await session.execute(statement, parameters)).all()), into)
    return into


async def views(session: AsyncSession | ReadConnection, lbs: list[Any]) -> list[dict[str, Any]]:
    """Views of many load balancers; their listeners, pools and tags come in one query."""
    listeners, pools, tags = await _children_of(session, [lb.id for lb in lbs])
    return [view(lb, tags[lb.id], listeners[lb.id], pools[lb.id]) for lb in lbs]


#: Encoded documents by everything :func:`view` reads (the row's values and its children): a list shows the
#: same unchanged load balancers again and again, and building and encoding their documents was most of its
#: cost. Any change to a row or its children is a new key; old keys age out.
_DOCUMENTS: LRUCache[tuple[Any, ...], bytes] = LRUCache(maxsize=4096)


async def documents(conn: ReadConnection, lbs: list[Any]) -> list[bytes]:
    """:func:`views` encoded (``json.dumps``), from :data:`_DOCUMENTS` where the same inputs were seen."""
    listeners, pools, tags = await _children_of(conn, [lb.id for lb in lbs])
    out = []
    for lb in lbs:
        lb_tags, lb_listeners, lb_pools = tags[lb.id], listeners[lb.id], pools[lb.id]
        # JSON columns come as lists: as tuples they hash; one holding dicts does not, and is not cached.
        key = (tuple(tuple(v) if type(v) is list else v for v in lb), *map(tuple, (lb_tags, lb_listeners, lb_pools)))
        try:
            document = _DOCUMENTS.get(key)
        except TypeError:
            key, document = None, None
        if document is None:
            document = json.dumps(view(lb, lb_tags, lb_listeners, lb_pools)).encode()
            if key is not None:
                _DOCUMENTS[key] = document
        out.append(document)
    return out


async def load_visible(call: Call, session: AsyncSession, rule: Rule = Rule.READ) -> LoadBalancer:
    """The load balancer named by the call, if the caller passes ``rule`` on it (404 if missing, else 403)."""
    return await store.load_visible(session, call, LoadBalancer, call.id, LABEL, rule, hide_deleted=True)


COLLECTION = store.ProjectCollection(
    LoadBalancer,
    LABEL,
    "loadbalancer",
    SPEC,
    views,
    hide_deleted=True,
    core_rows=True,
    documents=documents,
    show_one=show_one,
)


async def create(app: App, call: Call) -> Reply:
    values = BODY.parse_create(call.body)
    project_id = values.pop("project_id", None) or values.pop("tenant_id", None) or call.caller.project_id
    values.pop("tenant_id", None)
    if not project_id:
        raise ValidationFailure(
            "Missing project ID in request where one is required. An administrator should "
            "check the keystone settings in the Octavia configuration."
        )
    call.caller.check(Rule.WRITE, project_id)
    if not any(values.get(k) for k in ("vip_port_id", "vip_network_id", "vip_subnet_id")):
        raise ValidationFailure("VIP must contain one of: vip_port_id, vip_network_id, vip_subnet_id.")
    if values.get("admin_state_up") is None:
        values["admin_state_up"] = "admin_state_up" not in values  # null means false, as WSME reads it
    values["name"] = values.get("name") or ""
    values["description"] = values.get("description") or ""
    listeners, pools = values.pop("listeners", None), values.pop("pools", None)
    tags = values.pop("tags", None) or []
    lb_id = str(uuid.uuid4())
    async with app.change() as session:
        provider = await _provider_for(app, session, values)
        lb_topology = await topology.topology_for(
            app.settings, session, provider, values.get("flavor_id"), app.provider_capabilities
        )
        if values.get("availability_zone"):
            await _check_zone(session, values["availability_zone"])
        facts = await facts_of(app, provider)
        address = await vip.allocate(app.settings, session, facts, values, lb_id, project_id)
        lb = store.fresh(
            LoadBalancer,
            id=lb_id,
            project_id=project_id,
            name=values["name"],
            description=values["description"],
            admin_state_up=values["admin_state_up"],
            provider=provider,
            flavor_id=values.get("flavor_id"),
            availability_zone=values.get("availability_zone"),
            topology=lb_topology,
            vip_qos_policy_id=values.get("vip_qos_policy_id"),
            vip_sg_ids=values.get("vip_sg_ids") or [],
            additional_vips=list(address.additional_vips),
            vip_address=address.address,
            vip_port_id=address.port_id,
            vip_subnet_id=address.subnet_id,
            vip_network_id=address.network_id,
        )
        session.add(lb)
        await session.flush()
        await store.set_tags(session, lb_id, tags, new=True)
        counts = {"load_balancer": 1}
        if listeners or pools:
            counts.update(await graph.create_tree(app, call, session, lb, listeners or [], pools or []))
        await store.reserve_quota(app, session, project_id, counts)
        store.command(session, provider, Kind.RESOURCE_KIND_LOAD_BALANCER, Op.OPERATION_CREATE, lb_id, lb_id)
        if listeners or pools:
            await session.flush()
            (item,) = await views(session, [lb])
            item = await graph.full_view(session, lb, item)
        else:  # nothing under it yet: no query for its children (the commit flushes the rest)
            item = view(lb, sorted(set(tags)), [], [])
    return Reply(201, {"loadbalancer": item})


async def _provider_for(app: App, session: AsyncSession, values: dict[str, Any]) -> str:
    """The provider of a new load balancer: asked for, or the flavor's, or the default."""
    provider = values.get("provider")
    flavor_id = values.get("flavor_id")
    if flavor_id:
        flavor = await session.get(Flavor, flavor_id)
        if flavor is None:
            raise store.NotFound("Flavor", flavor_id)
        if not flavor.enabled:
            raise InvalidInput("The selected flavor is not allowed in this deployment: " + flavor_id)
        profile = await session.get(FlavorProfile, flavor.flavor_profile_id)
        flavor_provider = profile.provider_name if profile else None
        if provider and flavor_provider and resolve_provider(app, provider) != resolve_provider(app, flavor_provider):
            raise InvalidInput(f"Flavor '{flavor_id}' is not compatible with provider '{provider}'")
        provider = provider or flavor_provider
    return resolve_provider(app, provider or app.settings.default_provider_driver)


async def _check_zone(session: AsyncSession, name: str) -> None:
    zone = await session.get(AvailabilityZone, name)
    if zone is None:
        raise store.NotFound("Availability Zone", name)
    if not zone.enabled:
        raise InvalidInput(f"The selected availability_zone is not allowed in this deployment: {name}")


async def update_(app: App, call: Call) -> Reply:
    values = BODY.parse_update(call.body)
    async with app.change() as session:
        lb = await load_visible(call, session, Rule.WRITE)
        await store.lock_load_balancer(session, lb.id, own_change=True)
        await session.refresh(lb)
        tags = values.pop("tags", None)
        if values.get("vip_sg_ids"):
            await vip.check_security_groups(app.settings, await facts_of(app, lb.provider), values["vip_sg_ids"])
        for key, value in values.items():
            if key in ("name", "description") and value is None:
                value = ""
            if key == "vip_sg_ids" and value is None:
                value = []  # null removes them, as Octavia's
            if key == "admin_state_up" and value is None:
                value = False  # WSME turns a null boolean into false
            setattr(lb, key, value)
        if tags is not None or "tags" in values:
            await store.set_tags(session, lb.id, tags)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_LOAD_BALANCER, Op.OPERATION_UPDATE, lb.id, lb.id)
        return await store.view_reply(session, 200, "loadbalancer", lb, views)


async def delete_(app: App, call: Call) -> Reply:
    params = parse_query(call.query)
    cascade = params.get("cascade", ["false"])[-1].lower() in ("true", "1", "yes")
    async with app.change() as session:
        lb = await load_visible(call, session, Rule.WRITE)
        if lb.provisioning_status not in (store.ACTIVE, store.ERROR):
            raise store.PendingState(lb.provisioning_status, "loadbalancer", lb.id)
        if not cascade:
            children = (
                await session.execute(
                    select(func.count()).select_from(Listener).where(Listener.load_balancer_id == lb.id)
                )
            ).scalar_one()
            children += (
                await session.execute(select(func.count()).select_from(Pool).where(Pool.load_balancer_id == lb.id))
            ).scalar_one()
            if children:
                raise ValidationFailure(f"Cannot delete Load Balancer {lb.id} - it has children")
        result = await session.execute(
            cast(Table, LoadBalancer.__table__)
            .update()  # a Core UPDATE: the ORM's row is left as it is
            .where(LoadBalancer.id == lb.id, LoadBalancer.provisioning_status.in_((store.ACTIVE, store.ERROR)))
            .values(provisioning_status=store.PENDING_DELETE, updated_at=utcnow())
        )
        if rowcount(result) != 1:
            raise store.PendingState(store.PENDING_UPDATE, "loadbalancer", lb.id)
        store.command(
            session, lb.provider, Kind.RESOURCE_KIND_LOAD_BALANCER, Op.OPERATION_DELETE, lb.id, lb.id, cascade=cascade
        )
    return Reply(204)


async def stats(app: App, call: Call) -> Reply:
    async with app.read() as session:
        lb = await load_visible(call, session)
        listener_ids = select(Listener.id).where(Listener.load_balancer_id == lb.id).scalar_subquery()
        return Reply(200, {"stats": await listeners.traffic(session, ListenerStatistics.listener_id.in_(listener_ids))})


async def failover(app: App, call: Call) -> Reply:
    async with app.change() as session:
        lb = await load_visible(call, session, Rule.ADMIN)
        if not await lifecycle.claim_for_failover(session, lb.id):  # from ACTIVE or ERROR, as Octavia
            raise store.PendingState(lb.provisioning_status, "loadbalancer", lb.id)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_LOAD_BALANCER, Op.OPERATION_FAILOVER, lb.id, lb.id)
    return Reply(202)


HANDLERS = {
    "ListLoadBalancers": COLLECTION.list_,
    "CreateLoadBalancer": create,
    "GetLoadBalancer": COLLECTION.get,
    "UpdateLoadBalancer": update_,
    "DeleteLoadBalancer": delete_,
    "GetLoadBalancerStats": stats,
    "GetLoadBalancerStatus": graph.status_tree,
    "FailoverLoadBalancer": failover,
}
