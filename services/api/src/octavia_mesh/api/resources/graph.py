"""Single-call create of a whole load-balancer tree, and the ``/status`` tree."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import InvalidField, ValidationFailure
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.resources import healthmonitors, l7policies, l7rules, listeners, members, pools
from octavia_mesh.common.db.models import Listener, LoadBalancer, Member, Pool
from octavia_mesh.common.lifecycle.tree import Tree

# Objects embedded in a load balancer take their load balancer and project from it (Octavia's *SingleCreate types).
_PARENT_KEYS = ("loadbalancer_id", "listener_id", "project_id", "tenant_id")
_LB_ARGUMENT = "load_balancer"
_LB_ARG = f"{_LB_ARGUMENT}.loadbalancer"


def _embedded(schema: s.Schema, wrapper: str, argument: str) -> s.Schema:
    return schema.derive(wrapper=wrapper, argument=argument, drop=_PARENT_KEYS)


_LISTENER = _embedded(listeners.BODY, "listeners", _LB_ARG)
_POOL = _embedded(pools.BODY, "pools", _LB_ARG)
_DEFAULT_POOL = _embedded(pools.BODY, "default_pool", f"{_LB_ARG}.listeners")
_MEMBER = _embedded(members.EMBEDDED, "members", f"{_LB_ARG}.pools")
_MONITOR = _embedded(healthmonitors.EMBEDDED, "healthmonitor", f"{_LB_ARG}.pools")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise s.BodyLevelError(f"Value not a valid list: {value}")
    return value


def _as_object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidField(name, value, "Value should be an object")
    return value


def _is_reference(pool: dict[str, Any]) -> bool:
    """``{"name": "web"}`` names a pool defined elsewhere in the same request."""
    return set(pool) == {"name"}


class _Pools:
    """The pools of one request: full definitions (created once) and references to them by name."""

    def __init__(self) -> None:
        self.by_name: dict[str, dict[str, Any]] = {}
        self.definitions: list[dict[str, Any]] = []
        self.rows: dict[int, Pool] = {}

    def define(self, raw: Any, name: str) -> dict[str, Any]:
        pool = _as_object(raw, name)
        if _is_reference(pool):
            return pool
        if pool.get("name"):
            if pool["name"] in self.by_name:
                raise ValidationFailure(f"Pool '{pool['name']}' was defined more than once.")
            self.by_name[pool["name"]] = pool
        self.definitions.append(pool)
        return pool

    def row_for(self, pool: dict[str, Any]) -> Pool:
        if _is_reference(pool):
            full = self.by_name.get(pool["name"])
            if full is None:
                raise ValidationFailure(f"Pool '{pool['name']}' was referenced but no full definition was found.")
            pool = full
        return self.rows[id(pool)]


async def create_tree(
    app: App, call: Call, session: AsyncSession, lb: LoadBalancer, listener_bodies: Any, pool_bodies: Any
) -> dict[str, int]:
    """Add a whole tree under a new ``lb`` in the caller's transaction; returns what it uses of the quotas.

    Every object is validated before the transaction commits (the caller's), so a bad object anywhere leaves
    nothing behind. A value WSME cannot convert is reported as Octavia does, on the whole load balancer body.
    """
    try:
        return await _create_tree(app, call, session, lb, listener_bodies, pool_bodies)
    except s.BodyLevelError as exc:
        raise exc.on(_LB_ARGUMENT, s.load_json(call.body)) from None


async def _create_tree(
    app: App, call: Call, session: AsyncSession, lb: LoadBalancer, listener_bodies: Any, pool_bodies: Any
) -> dict[str, int]:
    """Pools are created first: listeners and L7 policies refer to them by name."""
    counts: Counter[str] = Counter()
    known = _Pools()
    for raw in _as_list(pool_bodies):
        known.define(raw, "pools")
    plans = []
    for raw in _as_list(listener_bodies):
        body = dict(_as_object(raw, "listeners"))
        default = body.pop("default_pool", None)
        policies = _as_list(body.pop("l7policies", None))
        plans.append(
            (
                body,
                None if default is None else known.define(default, "default_pool"),
                [dict(_as_object(p, "l7policies")) for p in policies],
            )
        )
        for policy in plans[-1][2]:
            if policy.get("redirect_pool") is not None:
                policy["redirect_pool"] = known.define(policy["redirect_pool"], "redirect_pool")

    for definition in known.definitions:
        body = dict(definition)
        member_bodies = _as_list(body.pop("members", None))
        monitor_body = body.pop("healthmonitor", None)
        schema = _POOL if any(definition is d for d in _as_list(pool_bodies)) else _DEFAULT_POOL
        pool = await pools.insert(app, call, session, lb, schema.parse_object(body, create=True))
        known.rows[id(definition)] = pool
        counts["pool"] += 1
        if monitor_body is not None:
            values = _MONITOR.parse_embedded(monitor_body)
            await healthmonitors.insert(app, call, session, lb, pool, values)
            counts["health_monitor"] += 1
        for raw in member_bodies:
            values = _MEMBER.parse_embedded(raw)
            await members.insert(app, call, session, lb, pool, values, monitored=monitor_body is not None)
            counts["member"] += 1
    await session.flush()

    for body, default, policy_bodies in plans:
        values = _LISTENER.parse_object(body, create=True)
        if default is not None:
            values["default_pool_id"] = known.row_for(default).id
        listener = await listeners.insert(app, call, session, lb, values)
        counts["listener"] += 1
        await session.flush()
        for raw in policy_bodies:
            target = raw.pop("redirect_pool", None)
            values = l7policies.SINGLE_CREATE.parse_embedded(raw, f"{_LB_ARG}.listeners.l7policies")
            values.pop("redirect_pool", None)
            if target is not None:
                values["redirect_pool_id"] = known.row_for(target).id
            counts["l7rule"] += len(values.get("rules") or [])
            await l7policies.insert(app, call, session, lb, listener, values)
            counts["l7policy"] += 1
            await session.flush()
    return dict(counts)


async def full_view(session: AsyncSession, lb: LoadBalancer, item: dict[str, Any]) -> dict[str, Any]:
    """The 201 body of a single-call create: every object in full, nested as Octavia nests them."""
    tree = await _tree(session, lb.id)
    listener_rows, pool_rows, member_rows = tree.listeners, tree.pools, tree.members
    monitor_rows, policy_rows, rule_rows = tree.monitors, tree.policies_by_position(), tree.rules

    rules_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row, rule in zip(rule_rows, await l7rules.views(session, rule_rows), strict=True):
        rules_of[row.l7policy_id].append(rule)
    policies_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row, policy in zip(policy_rows, await l7policies.views(session, policy_rows), strict=True):
        policies_of[row.listener_id].append({"rules": rules_of[row.id], **_without(policy, "rules")})
    members_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row, member in zip(member_rows, await members.views(session, member_rows), strict=True):
        members_of[row.pool_id].append(member)
    monitor_of = {
        row.pool_id: _without(hm, "pools")
        for row, hm in zip(monitor_rows, await healthmonitors.views(session, monitor_rows), strict=True)
    }
    listener_views = [
        {"l7policies": policies_of[row.id], **_without(v, "l7policies", "loadbalancers")}
        for row, v in zip(listener_rows, await listeners.views(session, listener_rows), strict=True)
    ]
    pool_views = [
        {
            "members": members_of[row.id],
            "healthmonitor": monitor_of.get(row.id),
            **_without(v, "members", "loadbalancers", "healthmonitor_id"),
        }
        for row, v in zip(pool_rows, await pools.views(session, pool_rows), strict=True)
    ]
    return {"listeners": listener_views, "pools": pool_views, **_without(item, "listeners", "pools")}


async def _tree(session: AsyncSession, lb_id: str) -> Tree:
    """The load balancer's tree, read without a lock (the caller has just read or written its row)."""
    tree = await Tree.load(session, lb_id, lock=False)
    if tree is None:  # the caller found the row in this same session
        raise store.NotFound("Load Balancer", lb_id)
    return tree


def _without(view: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k not in keys}


async def status_tree(app: App, call: Call) -> Reply:
    """``/status``: the load balancer, its listeners, each listener's pools (default and L7-redirect targets),
    their health monitor and members, with both statuses at every node, as Octavia prints them."""
    async with app.read() as session:
        lb = await store.get_or_404(session, LoadBalancer, call.id, "Load Balancer", hide_deleted=True)
        call.caller.check(Rule.READ, lb.project_id)
        tree = await _tree(session, lb.id)
    listeners = tree.listeners
    pools = {p.id: p for p in tree.pools}
    members: dict[str, list[Member]] = defaultdict(list)
    for member in tree.members:
        members[member.pool_id].append(member)
    monitors = {m.pool_id: m for m in tree.monitors}
    redirects: dict[str, list[str]] = defaultdict(list)
    for policy in tree.policies_by_position():
        if policy.redirect_pool_id is not None:
            redirects[policy.listener_id].append(policy.redirect_pool_id)

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
