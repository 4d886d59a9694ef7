"""Members: ``/v2/lbaas/pools/{pool_id}/members``, including the batch update (``PUT`` on the collection).

Behaviour checked against Octavia 19.0.0:

* every call first looks the pool up; a missing (or hidden) pool answers
  Octavia's 404 fault (Octavia 19 itself leaks pecan's odd body
  ``{"code": 404, "title": "Bad Request", ...}``; we do not);
* a change needs the pool ACTIVE ("Pool <id> is immutable ...") and then the
  load-balancer lock; the pool and the listeners using it go PENDING_UPDATE
  with the member, as Octavia's ``test_and_set_lb_and_listeners_prov_status``
  does;
* addresses are kept exactly as written (``2001:db8::0001`` and
  ``2001:db8::1`` are different members, as in Octavia);
* the batch update treats the body as the desired state: matched members
  (address, port) are updated even when unchanged, attributes with a default
  (weight, backup, admin_state_up, monitor_*) fall back to it when left out,
  the others (name, tags, subnet_id) are kept.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict, InvalidField, InvalidInput, NotFound, ValidationFailure
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import (
    Filter,
    as_text,
    lenient_bool,
    lenient_int,
    lenient_time,
    list_query,
    list_spec,
    page_reply,
    refuse_query_args,
    select_fields,
    show_fields,
    words,
)
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db import quota
from octavia_mesh.common.db.models import (
    Flavor,
    FlavorProfile,
    HealthMonitor,
    LoadBalancer,
    Member,
    Pool,
    Quota,
    utcnow,
)
from octavia_mesh.common.lifecycle import Operating

LABEL = "Member"
#: Octavia's ``[networking] reserved_ips`` default: members may not point at the metadata service.
RESERVED_IPS = ("169.254.169.254",)
NO_MONITOR = Operating.NO_MONITOR

# --- pools reached through the member URL -------------------------------------


class PoolMissing(NotFound):
    """The pool of a member URL does not exist (or is hidden)."""

    def __init__(self, pool_id: str) -> None:
        super().__init__("Pool", pool_id)
        self.pool_id = pool_id


async def _pool(call: Call, session: AsyncSession) -> Pool:
    """The pool of the URL (pecan's own 404 body when it is missing); each handler checks the caller on it in
    Octavia's order, so another project's pool is Octavia's 403 fault."""
    pool = await session.get(Pool, call.parent_id) if call.parent_id else None
    if pool is None:
        raise PoolMissing(call.parent_id)
    return pool


async def _member(session: AsyncSession, member_id: str, pool_id: str) -> Member:
    member = await session.get(Member, member_id) if member_id else None
    if member is None or member.pool_id != pool_id:
        raise NotFound(LABEL, member_id)
    return member


async def has_monitor(session: AsyncSession, pool_id: str) -> bool:
    found = await session.execute(select(HealthMonitor.id).where(HealthMonitor.pool_id == pool_id).limit(1))
    return found.first() is not None


# --- request bodies --------------------------------------------------------------

_PORT = s.integer(1, 65535)
#: MemberPOST in its declaration order (WSME reports the first bad attribute in it); MemberPUT is the same
#: without the create-only attributes.
BODY = s.Schema(
    "member",
    "member_",
    {
        "name": s.Attr(s.text(255)),
        "admin_state_up": s.Attr(s.boolean, default=True),
        "address": s.Attr(s.ip_address, required=True, create_only=True),
        "protocol_port": s.Attr(_PORT, required=True, create_only=True),
        "weight": s.Attr(s.integer(0, 256), default=1),
        "backup": s.Attr(s.boolean, default=False),
        "subnet_id": s.Attr(s.uuid_value, create_only=True),
        "project_id": s.Attr(s.text(36), create_only=True),
        "tenant_id": s.Attr(s.text(36), create_only=True),
        "monitor_port": s.Attr(_PORT, default=None),
        "monitor_address": s.Attr(s.ip_address, default=None),
        "tags": s.Attr(s.tag_list),
        "request_sriov": s.Attr(s.boolean, default=False, create_only=True),
    },
)
#: The batch update: ``{"members": [MemberPOST, ...]}``.
BATCH = BODY.derive(wrapper="members", argument="members_")
#: A member inside a single-call create (Octavia's MemberSingleCreate: no project ids).
EMBEDDED = BODY.derive(drop=("project_id", "tenant_id"))


def parse_batch(raw: bytes) -> list[dict[str, Any]]:
    """Every item is a full MemberPOST (mandatory address and port)."""
    items = BATCH.parse_list(raw)
    for values in items:
        _mandatory(values)
    return items


def _mandatory(values: dict[str, Any]) -> None:
    # Octavia fails with a 500 on an explicit null here; we answer WSME's 400.
    for name in ("address", "protocol_port"):
        if values.get(name) is None:
            raise InvalidField(name, None, "Mandatory field missing.")


# --- validation and rows ------------------------------------------------------------


def check_reserved(address: str) -> None:
    exploded = ipaddress.ip_address(address).exploded.upper()
    if exploded in {ipaddress.ip_address(r).exploded.upper() for r in RESERVED_IPS}:
        raise InvalidInput(f"{address} is not a valid option for member address")


async def check_sriov(session: AsyncSession, lb: LoadBalancer) -> None:
    """SR-IOV member ports need a flavor with ``allow_member_sriov``."""
    allowed = False
    if lb.flavor_id:
        flavor = await session.get(Flavor, lb.flavor_id)
        profile = await session.get(FlavorProfile, flavor.flavor_profile_id) if flavor else None
        try:
            allowed = bool(json.loads(profile.flavor_data).get("allow_member_sriov")) if profile else False
        except (ValueError, AttributeError):
            allowed = False
    if not allowed:
        raise InvalidInput("The load balancer flavor does not allow SR-IOV member ports.")


async def check(session: AsyncSession, lb: LoadBalancer, values: dict[str, Any]) -> None:
    """What Octavia checks before it takes the lock."""
    _mandatory(values)
    check_reserved(values["address"])
    if values.get("request_sriov"):
        await check_sriov(session, lb)


async def insert(
    app: App,
    call: Call,
    session: AsyncSession,
    lb: LoadBalancer,
    pool: Pool,
    values: dict[str, Any],
    *,
    monitored: bool | None = None,
) -> Member:
    """Validate a parsed member body and add its row (PENDING_CREATE) to ``pool``.

    The caller holds the load-balancer lock, reserves quota and queues the command.
    ``monitored`` (does the pool have a health monitor?) sets the first operating status.
    """
    await check(session, lb, values)
    address, port = values["address"], values["protocol_port"]
    taken = await session.execute(
        select(Member.id).where(Member.pool_id == pool.id, Member.address == address, Member.protocol_port == port)
    )
    if taken.first() is not None:
        raise Conflict(f"Another member on this pool is already using ip {address} on protocol_port {port}")
    if monitored is None:
        monitored = await has_monitor(session, pool.id)
    sriov = bool(values.get("request_sriov"))
    member = store.fresh(
        Member,
        id=str(uuid.uuid4()),
        project_id=lb.project_id,
        pool_id=pool.id,
        name=values.get("name"),  # Octavia stores no name as null: ``?name=`` does not list it
        admin_state_up=True if values.get("admin_state_up") is None else values["admin_state_up"],
        address=address,
        protocol_port=port,
        weight=1 if values.get("weight") is None else values["weight"],
        backup=bool(values.get("backup")),
        subnet_id=values.get("subnet_id"),
        monitor_address=values.get("monitor_address"),
        monitor_port=values.get("monitor_port"),
        request_sriov=sriov,
        vnic_type="direct" if sriov else "normal",
    )
    member.operating_status = store.OFFLINE if monitored else NO_MONITOR
    session.add(member)
    await session.flush()
    await store.set_tags(session, member.id, values.get("tags") or [])
    return member


def _apply(member: Member, values: dict[str, Any]) -> None:
    """Update a member's row with parsed values; nulls reset to what Octavia stores for them."""
    for key, value in values.items():
        if key == "tags":
            continue  # a null tag list leaves the tags alone; the caller sets them
        if key == "weight" and value is None:
            value = 1  # Octavia: DEFAULT_WEIGHT (the batch update would store null; we keep a number)
        elif key in ("backup", "admin_state_up") and value is None:
            value = False  # Octavia stores a null admin_state_up and shows it as false
        setattr(member, key, value)
    member.provisioning_status = store.PENDING_UPDATE
    member.updated_at = utcnow()


# --- views ----------------------------------------------------------------------------


def view(member: Member, tags: list[str]) -> dict[str, Any]:
    return {
        "id": member.id,
        "name": member.name or "",
        "operating_status": member.operating_status,
        "provisioning_status": member.provisioning_status,
        "admin_state_up": member.admin_state_up,
        "address": member.address,
        "protocol_port": member.protocol_port,
        "weight": member.weight,
        "backup": member.backup,
        "subnet_id": member.subnet_id,
        "project_id": member.project_id,
        "created_at": store.timestamp(member.created_at),
        "updated_at": store.timestamp(member.updated_at),
        "monitor_address": member.monitor_address,
        "monitor_port": member.monitor_port,
        "tags": tags,
        "vnic_type": member.vnic_type,
        "tenant_id": member.project_id,
    }


views = store.tagged_views(view)


_TEXT_COLUMNS = words(
    "id name project_id pool_id subnet_id operating_status provisioning_status monitor_address vnic_type address"
)
_INT_COLUMNS = ("protocol_port", "weight", "monitor_port")
_BOOL_COLUMNS = ("backup", "admin_state_up")
_TIME_COLUMNS = ("created_at", "updated_at")
SPEC = list_spec(
    "members",
    Member,
    # Lenient, as Octavia's: a value that cannot match matches nothing.
    {as_text: _TEXT_COLUMNS, lenient_int: _INT_COLUMNS, lenient_bool: _BOOL_COLUMNS, lenient_time: _TIME_COLUMNS},
    aliases={"ip_address": Filter(Member.address), "enabled": Filter(Member.admin_state_up, lenient_bool)},
    comma_separated_fields=False,  # as Octavia: ``fields=a,b`` names one field "a,b"
)


# --- handlers -----------------------------------------------------------------------------


async def list_(app: App, call: Call) -> Reply:
    async with app.read() as session:
        pool = await _pool(call, session)
        call.caller.check(Rule.READ, pool.project_id)
        statement = select(Member).where(Member.pool_id == pool.id)
        return await page_reply(session, call, list_query(app, call, SPEC), statement, views)


async def get(app: App, call: Call) -> Reply:
    async with app.read() as session:
        pool = await _pool(call, session)
        fields = show_fields(call.query, comma_separated=SPEC.comma_separated_fields)
        member = await _member(session, call.id, pool.id)
        call.caller.check(Rule.READ, member.project_id)
        (item,) = await views(session, [member])
    return Reply(200, {"member": select_fields(item, fields)})


async def create(app: App, call: Call) -> Reply:
    async with app.change() as session:
        pool = await _pool(call, session)
        refuse_query_args(call.query)
        values = BODY.parse_create(call.body)
        call.caller.check(Rule.WRITE, pool.project_id)
        lb = await store.get_known(session, LoadBalancer, pool.load_balancer_id)
        await check(session, lb, values)
        await store.reserve_quota(app, session, lb.project_id, {"member": 1})
        await store.lock_pool(session, pool)
        member = await insert(app, call, session, lb, pool, values)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_MEMBER, Op.OPERATION_CREATE, member.id, lb.id)
        return await store.view_reply(session, 201, "member", member, views)


async def update_(app: App, call: Call) -> Reply:
    async with app.change() as session:
        pool = await _pool(call, session)
        refuse_query_args(call.query)
        values = BODY.parse_update(call.body)
        member = await _member(session, call.id, pool.id)
        call.caller.check(Rule.WRITE, pool.project_id)
        lb = await store.get_known(session, LoadBalancer, pool.load_balancer_id)
        await store.lock_pool(session, pool)
        _apply(member, values)
        if values.get("tags") is not None:
            await store.set_tags(session, member.id, values["tags"])
        store.command(session, lb.provider, Kind.RESOURCE_KIND_MEMBER, Op.OPERATION_UPDATE, member.id, lb.id)
        return await store.view_reply(session, 200, "member", member, views)


async def delete_(app: App, call: Call) -> Reply:
    async with app.change() as session:
        pool = await _pool(call, session)
        refuse_query_args(call.query)
        member = await _member(session, call.id, pool.id)
        call.caller.check(Rule.WRITE, pool.project_id)
        lb = await store.get_known(session, LoadBalancer, pool.load_balancer_id)
        await store.lock_pool(session, pool)
        member.provisioning_status = store.PENDING_DELETE
        member.updated_at = utcnow()
        store.command(session, lb.provider, Kind.RESOURCE_KIND_MEMBER, Op.OPERATION_DELETE, member.id, lb.id)
    return Reply(204)


def _additive_only(query: str) -> bool:
    values = refuse_query_args(query, ("additive_only",)).get("additive_only")
    return lenient_bool("additive_only", values[-1]) if values else False


async def _reserve(app: App, session: AsyncSession, project_id: str | None, created: int, deleted: int) -> None:
    """Quota for a batch: Octavia checks the net growth; the counter still counts every new member.

    The worker gives one back per deleted member when it removes them, so the
    members about to go are counted in use until then.
    """
    net = created - deleted
    if net > 0:
        await store.reserve_quota(app, session, project_id, {"member": net})
    extra = created - max(net, 0)
    if extra and project_id is not None:
        await quota.ensure_row(session, project_id)
        row = await store.get_known(session, Quota, project_id, with_for_update=True)
        row.in_use_member += extra


async def batch_update(app: App, call: Call) -> Reply:
    """The desired member list of a pool, applied as one change (one command, one transaction)."""
    async with app.change() as session:
        pool = await _pool(call, session)
        additive = _additive_only(call.query)
        desired = parse_batch(call.body)
        call.caller.check(Rule.WRITE, pool.project_id)
        lb = await store.get_known(session, LoadBalancer, pool.load_balancer_id)
        if any(v.get("request_sriov") for v in desired):
            await check_sriov(session, lb)
        await store.lock_pool(session, pool)
        existing = {
            (m.address, m.protocol_port): m
            for m in (await session.execute(select(Member).where(Member.pool_id == pool.id))).scalars()
        }
        fresh: list[dict[str, Any]] = []
        matched: dict[tuple[str, int], dict[str, Any]] = {}
        for values in desired:
            key = (values["address"], values["protocol_port"])
            if key not in existing:
                check_reserved(values["address"])
                fresh.append(values)
            elif key in matched:
                raise ValidationFailure("Member must be updated only once in the same request.")
            else:
                matched[key] = values
        wanted = {(v["address"], v["protocol_port"]) for v in desired}
        doomed = [] if additive else [m for k, m in existing.items() if k not in wanted]
        await _reserve(app, session, lb.project_id, len(fresh), len(doomed))
        monitored = await has_monitor(session, pool.id)
        for values in fresh:  # a second new member with the same address and port is Octavia's 409
            await insert(app, call, session, lb, pool, values, monitored=monitored)
        for key, values in matched.items():
            member = existing[key]
            changes = {k: v for k, v in values.items() if k not in ("address", "protocol_port", "project_id")}
            changes.pop("tenant_id", None)
            if "request_sriov" in changes:
                changes["vnic_type"] = "direct" if changes["request_sriov"] else "normal"
            _apply(member, changes)
            if values.get("tags") is not None:
                await store.set_tags(session, member.id, values["tags"])
        now = utcnow()
        for member in doomed:
            member.provisioning_status = store.PENDING_DELETE
            member.updated_at = now
        store.command(session, lb.provider, Kind.RESOURCE_KIND_MEMBER, Op.OPERATION_BATCH_UPDATE, pool.id, lb.id)
    return Reply(202)


HANDLERS: dict[str, Callable[[App, Call], Awaitable[Reply]]] = {
    "ListMembers": list_,
    "CreateMember": create,
    "GetMember": get,
    "UpdateMember": update_,
    "DeleteMember": delete_,
    "BatchUpdateMembers": batch_update,
}
