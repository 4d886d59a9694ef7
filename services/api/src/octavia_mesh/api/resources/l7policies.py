"""L7 policies: ``/v2/lbaas/l7policies``.

Positions follow Octavia's ordering list: every write leaves the surviving
policies of a listener numbered 1..n. A policy being deleted keeps its old
number until the provider removes it, and views rank policies with it still
in place, so responses show what Octavia shows before and after the removal.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict, InvalidField, InvalidInput, NotFound, NotImplementedByProvider
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import Filter, as_text, lenient_time, list_spec, strict_bool, strict_int, words
from octavia_mesh.api.resources import l7rules
from octavia_mesh.api.resources.protocols import check_protocols
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import L7Policy, L7Rule, Listener, LoadBalancer, Pool, utcnow

LABEL = "L7 Policy"
REJECT, TO_URL, TO_POOL, PREFIX = "REJECT", "REDIRECT_TO_URL", "REDIRECT_TO_POOL", "REDIRECT_PREFIX"
ACTIONS = (PREFIX, TO_URL, REJECT, TO_POOL)  # the order real Octavia prints them in
REDIRECT_CODES = (301, 302, 303, 307, 308)
MAX_POSITION = 2147483647
URL_MAX_LENGTH = 2048  # the column's size
#: Listeners whose data plane evaluates L7 policies (Octavia's amphora driver refuses the others with a 501).
L7_LISTENER_PROTOCOLS = ("HTTP", "TERMINATED_HTTPS")

# An http(s) URL whose every character is safe on an unquoted HAProxy line. Octavia (rfc3986) also admits
# quotes, backslashes, '{', '<', non-ASCII and '#'; '#' would start a comment and drop the `if <acl>` that
# follows the redirect, so none of them is accepted here.
_CHARS = r"A-Za-z0-9\-._~!$&()*+,;=%"
_URL = re.compile(rf"https?://(?:[{_CHARS}:]*@)?(?:[{_CHARS}]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?(?:[/?][{_CHARS}:@/?]*)?")


def url(name: str, value: Any) -> str:
    """Octavia's ``URLType`` (http/https with a host), stricter where HAProxy would misread the value."""
    if not isinstance(value, str):
        raise InvalidField(name, value, f"expected string or bytes-like object, got '{type(value).__name__}'")
    if len(value) > URL_MAX_LENGTH:
        raise InvalidField(name, value, f"Value should have a maximum character requirement of {URL_MAX_LENGTH}")
    if not _URL.fullmatch(value):
        raise InvalidField(name, value, "Value must be a valid URL string")
    return value


def _attrs(*, single: bool = False) -> dict[str, s.Attr]:
    """L7PolicyPOST / L7PolicySingleCreate (``single``) in their declaration order.

    L7PolicyPUT is L7PolicyPOST without the create-only attributes.
    """
    out = {
        "name": s.Attr(s.text(255)),
        "description": s.Attr(s.text(255)),
        "admin_state_up": s.Attr(s.boolean, default=True),
    }
    if not single:
        out["project_id"] = s.Attr(s.text(36), create_only=True)
    out["action"] = s.Attr(s.enum(*ACTIONS), required=True)
    if single:  # a pool of the same tree, by name; the single-call create resolves it into redirect_pool_id
        out["redirect_pool"] = s.Attr(s.anything)
    else:
        out["redirect_pool_id"] = s.Attr(s.uuid_value)
    out["redirect_url"] = s.Attr(url)
    out["redirect_prefix"] = s.Attr(url)
    out["position"] = s.Attr(s.integer(1, MAX_POSITION))
    if not single:
        out["listener_id"] = s.Attr(s.uuid_value, required=True, create_only=True)
    out["rules"] = s.Attr(l7rules.parse_rules, create_only=True)
    out["tags"] = s.Attr(s.tag_list)
    out["redirect_http_code"] = s.Attr(s.int_choice(*REDIRECT_CODES))
    return out


BODY = s.Schema("l7policy", "l7policy_", _attrs())
#: A policy inside a listener of the single-call load balancer create (use ``parse_embedded``).
SINGLE_CREATE = s.Schema("l7policies", "load_balancer", _attrs(single=True))


def _args(message: str) -> InvalidInput:
    return InvalidInput(f"Invalid L7 Policy arguments: {message}")


def sanitize(values: dict[str, Any], create: bool = False) -> dict[str, Any]:
    """Octavia's ``sanitize_l7policy_api_args``: make action and redirect fields agree (in place)."""
    if "action" in values:
        action = values["action"]
        if action == REJECT:
            values.update(redirect_url=None, redirect_pool_id=None)
        elif action == TO_URL:
            if not values.get("redirect_url"):
                raise _args("redirect_url must not be None")
            values["redirect_pool_id"] = None
        elif action == TO_POOL:
            if not values.get("redirect_pool_id"):
                raise _args("redirect_pool_id or redirect_pool must not be None")
            values["redirect_url"] = None
        elif action == PREFIX:
            if not values.get("redirect_prefix"):
                raise _args("redirect_prefix must not be None")
        else:
            raise InvalidInput(f"Invalid L7 Policy action specified: {action}")
    if values.get("redirect_pool_id") and (values.get("redirect_url") or values.get("redirect_prefix")):
        raise _args("Cannot specify redirect_pool_id and redirect_url or redirect_prefix at the same time")
    if values.get("redirect_pool_id"):
        values.update(action=TO_POOL, redirect_url=None, redirect_prefix=None, redirect_http_code=None)
    if values.get("redirect_url"):
        values.update(action=TO_URL, redirect_pool_id=None, redirect_prefix=None)
        values["redirect_http_code"] = values.get("redirect_http_code") or 302
    if values.get("redirect_prefix"):
        values.update(action=PREFIX, redirect_pool_id=None, redirect_url=None)
        values["redirect_http_code"] = values.get("redirect_http_code") or 302
    if create and "action" not in values:
        raise InvalidInput("Invalid L7 Policy action specified: None")
    if not values:
        raise _args("Invalid update options")
    return values


#: What each action clears when an update sets it (Octavia's L7PolicyRepository.update).
# Keyed by an optional action: an update without one clears nothing.
_CLEARED: dict[str | None, tuple[str, ...]] = {
    REJECT: ("redirect_url", "redirect_pool_id", "redirect_prefix", "redirect_http_code"),
    TO_URL: ("redirect_pool_id", "redirect_prefix"),
    TO_POOL: ("redirect_url", "redirect_prefix", "redirect_http_code"),
    PREFIX: ("redirect_url", "redirect_pool_id"),
}
#: The field each action cannot do without.
_NEEDS = {
    TO_URL: ("redirect_url", "redirect_url must not be None"),
    TO_POOL: ("redirect_pool_id", "redirect_pool_id or redirect_pool must not be None"),
    PREFIX: ("redirect_prefix", "redirect_prefix must not be None"),
}


def prepare(values: dict[str, Any]) -> dict[str, Any]:
    """Validate a parsed create body (sanitized, embedded rules checked); gives the policy its id."""
    out = dict(values)
    out.setdefault("id", str(uuid.uuid4()))
    rules = out.pop("rules", None) or []
    sanitize(out, create=True)
    if len(rules) > l7rules.MAX_RULES_PER_POLICY:
        raise Conflict(f"Too many rules on L7 policy {out['id']}")
    for rule in rules:
        l7rules.check_rule(rule, embedded=True)
    out["rules"] = rules
    return out


# --- relations ----------------------------------------------------------------


async def check_target(session: AsyncSession, listener: Listener, values: dict[str, Any]) -> None:
    """Checks Octavia makes before the lock: the listener may have children, the redirect pool exists and fits."""
    if listener.protocol == "PROMETHEUS":
        raise InvalidInput("Protocol PROMETHEUS listeners cannot have child objects.")
    if values.get("redirect_pool_id"):
        pool = await store.get_or_404(session, Pool, values["redirect_pool_id"], "Pool")
        check_protocols(listener.protocol, pool.protocol)


async def _check_pool_owner(session: AsyncSession, lb: LoadBalancer, pool_id: str | None) -> None:
    """A redirect pool must belong to the listener's load balancer (and so its project), else Octavia's 404."""
    pool = await session.get(Pool, pool_id) if pool_id else None
    if pool is None or pool.load_balancer_id != lb.id:
        raise NotFound("Pool", str(pool_id))


def _check_listener_protocol(lb: LoadBalancer, listener: Listener) -> None:
    if listener.protocol not in L7_LISTENER_PROTOCOLS:
        raise NotImplementedByProvider(
            f"Provider '{lb.provider}' does not support a requested option: "
            f"{listener.protocol} protocol listeners do not support L7 policies"
        )


# --- positions ----------------------------------------------------------------


def _rank_key(policy: Any) -> tuple[Any, ...]:
    # A policy being deleted sorts before a survivor that took over its number: its old place.
    return (policy.position, policy.provisioning_status != store.PENDING_DELETE, policy.created_at, policy.id)


async def _survivors(session: AsyncSession, listener_id: str) -> list[L7Policy]:
    """The listener's policies not being deleted, in position order, freshly read."""
    rows = (await session.execute(select(L7Policy).where(L7Policy.listener_id == listener_id))).scalars().all()
    return sorted((p for p in rows if p.provisioning_status != store.PENDING_DELETE), key=_rank_key)


def _renumber(ordered: list[L7Policy]) -> None:
    for number, policy in enumerate(ordered, start=1):
        if policy.position != number:
            policy.position = number


def _place(ordered: list[L7Policy], policy: L7Policy, position: int | None) -> None:
    """Put ``policy`` at ``position`` (1-based; past the end or None appends) and renumber all."""
    if policy in ordered:
        ordered.remove(policy)
    if position is None or position > len(ordered):
        ordered.append(policy)
    else:
        ordered.insert(position - 1, policy)
    _renumber(ordered)


# --- views --------------------------------------------------------------------


def view(policy: L7Policy, tags: list[str], rule_ids: list[str], position: int) -> dict[str, Any]:
    return {
        **store.status_view(policy),
        "project_id": policy.project_id,
        "action": policy.action,
        "listener_id": policy.listener_id,
        "redirect_pool_id": policy.redirect_pool_id,
        "redirect_url": policy.redirect_url,
        "redirect_prefix": policy.redirect_prefix,
        "position": position,
        "rules": [{"id": i} for i in rule_ids],
        "created_at": store.timestamp(policy.created_at),
        "updated_at": store.timestamp(policy.updated_at),
        "tags": tags,
        "redirect_http_code": policy.redirect_http_code,
        "tenant_id": policy.project_id,
    }


async def views(session: AsyncSession, policies: list[L7Policy]) -> list[dict[str, Any]]:
    """Views of many policies: their rules, tags and positions in three bulk queries per 500."""
    ids = [p.id for p in policies]
    listener_ids = sorted({p.listener_id for p in policies})
    rules: dict[str, list[str]] = defaultdict(list)
    ranks: dict[str, int] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for policy_id, rule_id in await session.execute(
            select(L7Rule.l7policy_id, L7Rule.id)
            .where(L7Rule.l7policy_id.in_(chunk))
            .order_by(L7Rule.created_at, L7Rule.id)
        ):
            rules[policy_id].append(rule_id)
    siblings: dict[str, list[Any]] = defaultdict(list)
    for start in range(0, len(listener_ids), 500):
        chunk = listener_ids[start : start + 500]
        for row in await session.execute(
            select(
                L7Policy.id,
                L7Policy.listener_id,
                L7Policy.position,
                L7Policy.provisioning_status,
                L7Policy.created_at,
            ).where(L7Policy.listener_id.in_(chunk))
        ):
            siblings[row.listener_id].append(row)
    for rows in siblings.values():
        for number, row in enumerate(sorted(rows, key=_rank_key), start=1):
            ranks[row.id] = number
    tags = await store.tags_of(session, ids)
    return [view(p, tags.get(p.id, []), rules[p.id], ranks.get(p.id, p.position)) for p in policies]


#: Compared as times (text would fail on PostgreSQL); a value that is no time matches nothing, as in Octavia.
_TIMES = ("created_at", "updated_at")
_COLUMNS = words(
    "id name description project_id provisioning_status operating_status action listener_id redirect_pool_id "
    "redirect_url redirect_prefix"
)
_INT_COLUMNS = ("position", "redirect_http_code")
SPEC = list_spec(
    "l7policies",
    L7Policy,
    {as_text: _COLUMNS, strict_int: _INT_COLUMNS, strict_bool: ("admin_state_up",), lenient_time: _TIMES},
    aliases={"tenant_id": Filter(L7Policy.project_id)},
    unsortable=("tenant_id",),
)


# --- the piece the single-call create composes --------------------------------


async def insert(
    app: App, call: Call, session: AsyncSession, lb: LoadBalancer, listener: Listener, values: dict[str, Any]
) -> L7Policy:
    """Validate and add a policy (with its embedded rules) under ``listener``; returns the row.

    ``values`` is a parsed :data:`BODY` create, or a :data:`SINGLE_CREATE` one whose ``redirect_pool`` the caller
    has replaced by the new pool's ``redirect_pool_id`` (``listener_id`` is not used). Relations are checked here;
    RBAC, quota (``l7policy`` 1 + ``l7rule`` per rule), the load-balancer lock and the provider command are the
    caller's. New rows must be flushed before (a redirect pool made in the same transaction is fine).
    """
    prepared = prepare(values)
    _check_listener_protocol(lb, listener)
    await check_target(session, listener, prepared)
    if prepared.get("action") == TO_POOL:
        await _check_pool_owner(session, lb, prepared.get("redirect_pool_id"))
    ordered = await _survivors(session, listener.id)
    policy = store.fresh(
        L7Policy,
        id=prepared["id"],
        project_id=lb.project_id,
        listener_id=listener.id,
        name=prepared.get("name"),
        description=prepared.get("description"),
        admin_state_up=bool(prepared.get("admin_state_up", True)),  # WSME turns null into False
        action=prepared["action"],
        position=MAX_POSITION,
        redirect_pool_id=prepared.get("redirect_pool_id"),
        redirect_url=prepared.get("redirect_url"),
        redirect_prefix=prepared.get("redirect_prefix"),
        redirect_http_code=prepared.get("redirect_http_code"),
    )
    session.add(policy)
    _place(ordered, policy, prepared.get("position"))
    await session.flush()
    await store.set_tags(session, policy.id, prepared.get("tags") or [])
    for rule, tags in l7rules.embedded_rows(policy, prepared["rules"]):
        session.add(rule)
        await session.flush()
        await store.set_tags(session, rule.id, tags)
    return policy


# --- handlers -----------------------------------------------------------------


COLLECTION = store.ProjectCollection(L7Policy, LABEL, "l7policy", SPEC, views)


async def create(app: App, call: Call) -> Reply:
    values = BODY.parse_create(call.body)
    values.pop("project_id", None)  # deprecated; a policy takes its load balancer's project
    async with app.change() as session:
        listener = await store.load_visible(session, call, Listener, values.get("listener_id"), "Listener", Rule.WRITE)
        lb = await store.get_or_404(session, LoadBalancer, listener.load_balancer_id, "Load Balancer")
        await check_target(session, listener, values)
        rules = values.get("rules") or []
        await store.reserve_quota(app, session, lb.project_id, {"l7policy": 1, "l7rule": len(rules)})
        values = prepare(values)  # Octavia validates the arguments and rules before taking the lock
        await store.lock_load_balancer(session, lb.id)
        await store.reload(session, listener, "Listener")
        policy = await insert(app, call, session, lb, listener, values)
        store.mark_pending_update(utcnow(), listener)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_L7_POLICY, Op.OPERATION_CREATE, policy.id, lb.id)
        return await store.view_reply(session, 201, "l7policy", policy, views)


async def update_(app: App, call: Call) -> Reply:
    values = BODY.parse_update(call.body)
    async with app.change() as session:
        policy = await store.load_visible(session, call, L7Policy, call.id, LABEL, Rule.WRITE)
        listener, lb = await l7rules.parents(session, policy)
        changes = sanitize(dict(values))
        if changes.get("redirect_pool_id"):
            await check_target(session, listener, changes)
        await store.lock_load_balancer(session, lb.id)
        await store.reload(session, policy, LABEL)
        await store.reload(session, listener, "Listener")
        _apply(policy, changes)
        await session.flush()
        if policy.action == TO_POOL:
            await _check_pool_owner(session, lb, policy.redirect_pool_id)
        if changes.get("position") is not None:
            ordered = await _survivors(session, listener.id)
            current = ordered.index(policy) + 1 if policy in ordered else None
            if changes["position"] != current:
                _place(ordered, policy, changes["position"])
        if "tags" in changes:
            await store.set_tags(session, policy.id, changes["tags"] or [])
        store.mark_pending_update(utcnow(), listener, policy)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_L7_POLICY, Op.OPERATION_UPDATE, policy.id, lb.id)
        return await store.view_reply(session, 200, "l7policy", policy, views)


def _apply(policy: L7Policy, changes: dict[str, Any]) -> None:
    """Write a sanitized update onto the row, with Octavia's clearing and null handling."""
    updates = {k: v for k, v in changes.items() if k not in ("position", "tags")}
    for key in _CLEARED.get(updates.get("action"), ()):
        updates[key] = None
    if "admin_state_up" in updates:
        updates["admin_state_up"] = bool(updates["admin_state_up"])  # WSME turns null into False
    for key, value in updates.items():
        setattr(policy, key, value)
    # Octavia would keep e.g. a REDIRECT_TO_URL policy whose URL was set to null; that cannot be rendered.
    needed = _NEEDS.get(policy.action)
    if needed and not getattr(policy, needed[0]):
        raise _args(needed[1])


async def delete_(app: App, call: Call) -> Reply:
    async with app.change() as session:
        policy = await store.load_visible(session, call, L7Policy, call.id, LABEL, Rule.WRITE)
        listener, lb = await l7rules.parents(session, policy)
        await store.lock_load_balancer(session, lb.id)
        await store.reload(session, policy, LABEL)
        await store.reload(session, listener, "Listener")
        ordered = await _survivors(session, listener.id)
        if policy in ordered:
            ordered.remove(policy)
        _renumber(ordered)  # the numbers Octavia shows once the policy is gone
        now = utcnow()
        policy.provisioning_status = store.PENDING_DELETE
        policy.updated_at = now
        store.mark_pending_update(now, listener)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_L7_POLICY, Op.OPERATION_DELETE, policy.id, lb.id)
    return Reply(204)


HANDLERS = {
    "ListL7Policies": COLLECTION.list_,
    "CreateL7Policy": create,
    "GetL7Policy": COLLECTION.get,
    "UpdateL7Policy": update_,
    "DeleteL7Policy": delete_,
}
