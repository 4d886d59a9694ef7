"""Quotas: ``/v2/lbaas/quotas``.

A project's row in ``quota`` keeps its limits (``None`` = the deployment
default, ``-1`` = unlimited) next to the ``in_use_*`` counters that
``store.reserve_quota`` bumps and the providers release. Rows that quota
accounting creates on its own are not "set" quotas: only rows an operator
touched (``explicit``) are listed, as Octavia lists the rows of its table.
Unlike Octavia, quotas are enforced in ``noauth`` mode too, so a quota an
operator sets always holds.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import InvalidField, NotFound
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import Filter, ListQuery, ListSpec, int_filter, parse_query
from octavia_mesh.common.db import quota as quota_db
from octavia_mesh.common.db.models import Quota

MIN_QUOTA, MAX_QUOTA = -1, 2_000_000_000

#: Body attributes in Octavia's declaration order, with the column each one sets.
_ATTRS = (
    ("loadbalancer", "load_balancer"),
    ("load_balancer", "load_balancer"),
    ("listener", "listener"),
    ("member", "member"),
    ("pool", "pool"),
    ("healthmonitor", "health_monitor"),
    ("health_monitor", "health_monitor"),
    ("l7policy", "l7policy"),
    ("l7rule", "l7rule"),
)
_COLUMN = dict(_ATTRS)
#: The order changes are applied in: when both spellings are given, the current one wins, as in Octavia.
_APPLY_ORDER = (
    "load_balancer",
    "loadbalancer",
    "listener",
    "member",
    "pool",
    "health_monitor",
    "healthmonitor",
    "l7policy",
    "l7rule",
)

PUT = s.Schema("quota", "quotas", {name: s.Attr(s.integer(MIN_QUOTA, MAX_QUOTA)) for name, _ in _ATTRS})

SPEC = ListSpec(
    collection="quotas",
    id_column=Quota.project_id,
    created_column=None,
    filters={
        "project_id": Filter(Quota.project_id),
        "tenant_id": Filter(Quota.project_id),
        **{name: int_filter(getattr(Quota, column)) for name, column in _ATTRS},
    },
    sort_keys={
        "project_id": Quota.project_id,
        **{name: getattr(Quota, column) for name, column in _ATTRS},
    },
    taggable=False,
)


def view(project_id: str, limits: dict[str, int]) -> dict[str, Any]:
    """Octavia's quota document: both spellings of the renamed quotas, in its order."""
    return {
        "project_id": project_id,
        "loadbalancer": limits["load_balancer"],
        "load_balancer": limits["load_balancer"],
        "listener": limits["listener"],
        "member": limits["member"],
        "pool": limits["pool"],
        "healthmonitor": limits["health_monitor"],
        "health_monitor": limits["health_monitor"],
        "l7policy": limits["l7policy"],
        "l7rule": limits["l7rule"],
        "tenant_id": project_id,
    }


def effective(app: App, row: Quota | None) -> dict[str, int]:
    """A project's limits, with the deployment defaults where none is set."""
    defaults = store.quota_defaults(app)
    if row is None:
        return defaults
    limits = {}
    for name, default in defaults.items():
        value = getattr(row, name)
        limits[name] = default if value is None else value
    return limits


def _project(call: Call) -> str:
    project_id = call.id
    if len(project_id) > 36:  # the column's width; Octavia's project ids are 32 hex digits
        raise InvalidField("project_id", project_id, "Value should have a maximum character requirement of 36")
    return project_id


async def list_(app: App, call: Call) -> Reply:
    params = parse_query(call.query)
    listing = ListQuery(SPEC, params, app.settings.pagination_max_limit)
    statement = select(Quota).where(Quota.explicit.is_(True))
    wanted = (params.get("project_id") or params.get("tenant_id") or [None])[-1]
    project = call.caller.list_project(wanted, global_rule=Rule.READ_QUOTA_GLOBAL, rule=Rule.READ_QUOTA)
    if project is not None:
        statement = statement.where(Quota.project_id == project)
    async with app.read() as session:
        page = await listing.page(session, statement, call.base_url)
        items = [view(row.project_id, effective(app, row)) for row in page.rows]
    # Octavia ignores ``fields`` on this collection.
    return Reply(200, {"quotas": items, "quotas_links": page.links})


async def get(app: App, call: Call) -> Reply:
    project_id = _project(call)
    call.caller.check(Rule.READ_QUOTA, project_id)
    async with app.read() as session:
        row = await session.get(Quota, project_id)
        limits = effective(app, row)
    return Reply(200, {"quota": view(project_id, limits)})


async def project_defaults(app: App, call: Call) -> Reply:
    project_id = _project(call)
    call.caller.check(Rule.READ_QUOTA, project_id)
    return Reply(200, {"quota": view(project_id, store.quota_defaults(app))})


async def defaults(app: App, call: Call) -> Reply:
    # Octavia routes ``/quotas/defaults`` to the quota of a project named "defaults", which is
    # the deployment defaults in practice; we answer the defaults with the same document.
    call.caller.check(Rule.READ_QUOTA)
    return Reply(200, {"quota": view("defaults", store.quota_defaults(app))})


async def _locked_row(session: AsyncSession, project_id: str) -> Quota:
    await quota_db.ensure_row(session, project_id)
    return (await session.execute(select(Quota).where(Quota.project_id == project_id).with_for_update())).scalar_one()


async def update_(app: App, call: Call) -> Reply:
    project_id = _project(call)
    call.caller.check(Rule.WRITE_QUOTA, project_id)
    values = PUT.parse_update(call.body)
    changes = {_COLUMN[name]: values[name] for name in _APPLY_ORDER if name in values}
    async with app.write() as session, session.begin():
        row = await _locked_row(session, project_id)
        for column, value in changes.items():
            setattr(row, column, value)
        row.explicit = True
        await session.flush()
        limits = effective(app, row)
    return Reply(202, {"quota": view(project_id, limits)})


async def delete_(app: App, call: Call) -> Reply:
    project_id = _project(call)
    call.caller.check(Rule.WRITE_QUOTA, project_id)
    async with app.write() as session, session.begin():
        row = await session.get(Quota, project_id, with_for_update=True)
        if row is None:
            raise NotFound("Quotas", project_id)
        for name in quota_db.RESOURCES:
            setattr(row, name, None)
        # Octavia keeps the reset row, so the project stays in the list (with the defaults).
        row.explicit = True
    return Reply(202)


HANDLERS = {
    "ListQuotas": list_,
    "GetDefaultQuotas": defaults,
    "GetQuota": get,
    "GetProjectDefaultQuota": project_defaults,
    "UpdateQuota": update_,
    "DeleteQuota": delete_,
}
