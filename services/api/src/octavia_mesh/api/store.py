"""Database steps the resource handlers share: lookups, visibility, locks and states, tags, quotas, commands."""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import Select, bindparam, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict, Immutable, NotFound, PendingState, QuotaExceeded
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import Documents, ListSpec, Views, list_query, page_reply, select_fields, show_fields
from octavia_mesh.api.reads import ReadConnection, records
from octavia_mesh.common import commands
from octavia_mesh.common.db import quota
from octavia_mesh.common.db.models import L7Policy, L7Rule, Listener, Pool, Tag, utcnow
from octavia_mesh.common.lifecycle import Operating, Provisioning
from octavia_mesh.common.lifecycle import transitions as lifecycle

#: A show's row and its view, read together (:attr:`ProjectCollection.show_one`); None when no row has the id.
ShowOne = Callable[[ReadConnection, str], Awaitable[tuple[Any, dict[str, Any]] | None]]

T = TypeVar("T")

# The status words the handlers use, by their short names (the words themselves live in the lifecycle).
ACTIVE = Provisioning.ACTIVE
ERROR = Provisioning.ERROR
DELETED = Provisioning.DELETED
PENDING_CREATE = Provisioning.PENDING_CREATE
PENDING_UPDATE = Provisioning.PENDING_UPDATE
PENDING_DELETE = Provisioning.PENDING_DELETE
OFFLINE = Operating.OFFLINE

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


async def load_visible(
    session: AsyncSession,
    call: Call,
    model: type[T],
    ident: str | None,
    label: str,
    rule: Rule = Rule.READ,
    *,
    hide_deleted: bool = False,
) -> T:
    """``model`` ``ident`` if the caller passes ``rule`` on it.

    Octavia's order: a missing object is a 404 (``label``); one the caller may not read or change under ``rule``
    (another project's, or a role that does not allow it) is its 403.
    """
    row: Any = await session.get(model, ident) if ident else None
    if row is None or (hide_deleted and row.provisioning_status == DELETED):
        raise NotFound(label, ident)
    call.caller.check(rule, row.project_id)
    return row


async def get_known(session: AsyncSession, model: type[T], ident: Any, *, with_for_update: bool = False) -> T:
    """``model`` ``ident`` where the schema guarantees the row (a child's parent, a row just ensured): its
    absence would be a broken database, never a client's mistake."""
    row = await session.get(model, ident, with_for_update=with_for_update)
    assert row is not None, f"{model.__name__} {ident} is missing"
    return row


@dataclass(frozen=True, slots=True)
class ProjectCollection:
    """A top-level collection of project-owned objects: its list and show handlers."""

    model: Any
    label: str  # the 404's: "Pool"
    key: str  # the key of one shown object: "pool"
    spec: ListSpec
    views: Views
    hide_deleted: bool = False  # load balancers keep their DELETED rows a while; nobody sees them
    #: Read through ``app.reader`` (:mod:`octavia_mesh.api.reads`): ``views`` then gets Core rows and a
    #: :class:`ReadConnection`, so it must run Core statements only and read rows by attribute.
    core_rows: bool = False
    #: With ``core_rows``: the listed objects' documents already encoded, for lists that ask for no ``fields``.
    documents: Documents | None = None
    #: With ``core_rows``: a show's row and view from one statement (``views`` takes a second).
    show_one: ShowOne | None = None

    async def list_(self, app: App, call: Call) -> Reply:
        """Callers see their own project's objects; admins and global observers see every project's."""
        listing = list_query(app, call, self.spec)
        project = call.caller.list_project(listing.last("project_id"))
        reader = app.reader if self.core_rows else None
        statement: Select[Any] = _columns(self.model) if reader is not None else select(self.model)
        if self.hide_deleted:
            statement = statement.where(self.model.provisioning_status != DELETED)
        if project is not None:
            statement = statement.where(self.model.project_id == project)
        if reader is not None:
            return await reader.run(
                lambda conn: page_reply(conn, call, listing, statement, self.views, rows=True, documents=self.documents)
            )
        async with app.read() as session:
            return await page_reply(session, call, listing, statement, self.views)

    async def get(self, app: App, call: Call) -> Reply:
        fields = show_fields(call.query, comma_separated=self.spec.comma_separated_fields)
        if self.core_rows and app.reader is not None:
            return await app.reader.run(lambda conn: self._show(conn, call, fields))
        async with app.read() as session:
            row = await load_visible(session, call, self.model, call.id, self.label, hide_deleted=self.hide_deleted)
            (item,) = await self.views(session, [row])
        return Reply(200, {self.key: select_fields(item, fields)})

    async def _show(self, conn: ReadConnection, call: Call, fields: list[str] | None) -> Reply:
        """``get`` on Core rows: the same 404/403 order as :func:`load_visible`."""
        item: dict[str, Any] | None = None
        if not call.id:
            row = None
        elif self.show_one is not None:
            row, item = await self.show_one(conn, call.id) or (None, None)
        else:
            found = records(await conn.execute(_by_id(self.model), {"id": call.id}))
            row = found[0] if found else None
        if row is None or (self.hide_deleted and row.provisioning_status == DELETED):
            raise NotFound(self.label, call.id)
        call.caller.check(Rule.READ, row.project_id)
        if item is None:
            (item,) = await self.views(conn, [row])
        return Reply(200, {self.key: select_fields(item, fields)})


@functools.cache
def _by_id(model: Any) -> Select[Any]:
    """A table's row by ``:id`` as Core columns, built once (the statement cache then skips its compilation)."""
    return _columns(model).where(model.__table__.c.id == bindparam("id"))


def _columns(model: Any) -> Select[Any]:
    """``SELECT`` every column of ``model``'s table, as Core rows (not instances)."""
    return cast("Select[Any]", select(*model.__table__.columns))


async def view_reply(session: AsyncSession, status: int, key: str, row: Any, views: Views) -> Reply:
    """A write's answer: ``row`` as this transaction leaves it (Octavia shows the PENDING_* state)."""
    await session.flush()
    (item,) = await views(session, [row])
    return Reply(status, {key: item})


#: ERROR is never a dead end (issue 10): an object whose change failed may be changed again (to a good value)
#: or deleted, like an ACTIVE one. Octavia never leaves a parent in ERROR for a child's failure (its reverts
#: put the parents back to ACTIVE, as ``lifecycle.transitions.fail`` does), so it never needs this; we keep
#: objects that are already in ERROR (a failed update of their own) changeable too.
CHANGEABLE = (ACTIVE, ERROR)


def check_state(row: Any, kind: str, *, deleting: bool = False) -> None:
    """An object in PENDING_* is busy (409); ACTIVE and ERROR ones may be changed or deleted."""
    if row.provisioning_status not in CHANGEABLE:
        raise Conflict(f"Invalid state {row.provisioning_status} of {kind} resource {row.id}")


async def reload(session: AsyncSession, row: Any, label: str) -> None:
    """Re-read ``row`` after the load-balancer lock (a 404 if it went away in between, never a crash)."""
    if await session.get(type(row), row.id, populate_existing=True) is None:
        raise NotFound(label, row.id)


mark_pending_update = lifecycle.mark_pending_update


async def lock_load_balancer(session: AsyncSession, lb_id: str, *, own_change: bool = False) -> None:
    """Move an ACTIVE load balancer to PENDING_UPDATE, or answer 409.

    This is Octavia's load-balancer-wide lock: one conditional UPDATE, so two
    concurrent changes cannot both pass. ``own_change`` selects the message
    Octavia gives when the load balancer itself is the object being changed.
    """
    refused = await lifecycle.lock(session, lb_id)
    if refused is None:
        return
    status = refused.status
    if status is None or status == DELETED:
        raise NotFound("Load Balancer", lb_id)
    if own_change:
        raise PendingState(status, "loadbalancer", lb_id)
    raise Immutable("Load Balancer", lb_id)


async def listeners_using_pool(session: AsyncSession, pool_id: str) -> list[Listener]:
    """Listeners that use the pool: as default pool, or through a REDIRECT_TO_POOL policy with rules."""
    with_rules = select(L7Rule.id).where(L7Rule.l7policy_id == L7Policy.id).exists()
    via_policy = select(L7Policy.listener_id).where(L7Policy.redirect_pool_id == pool_id, with_rules)
    rows = await session.execute(
        select(Listener).where(or_(Listener.default_pool_id == pool_id, Listener.id.in_(via_policy)))
    )
    return list(rows.scalars())


async def lock_pool(session: AsyncSession, pool: Pool) -> None:
    """Octavia's lock for a change under a pool: pool ACTIVE, then the load balancer, then mark the parents."""
    if pool.provisioning_status not in CHANGEABLE:
        raise Immutable("Pool", pool.id)
    await lock_load_balancer(session, pool.load_balancer_id)
    mark_pending_update(utcnow(), pool, *await listeners_using_pool(session, pool.id))


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


def tagged_views(view: Callable[[Any, list[str]], dict[str, Any]]) -> Views:
    """:data:`Views` for a resource whose view needs its row and tags only (one query for all the tags)."""

    async def views(session: AsyncSession, rows: list[Any]) -> list[dict[str, Any]]:
        tags = await tags_of(session, [row.id for row in rows])
        return [view(row, tags.get(row.id, [])) for row in rows]

    return views


async def set_tags(session: AsyncSession, resource_id: str, tags: Iterable[str] | None, *, new: bool = False) -> None:
    """Replace a resource's tags (duplicates collapse, as in Octavia); a ``new`` resource has none to delete."""
    if not new:
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


#: Queue the provider command that resolves this transaction's PENDING_* state: its outbox row commits with the
#: change, so a change is never without its command nor a command without its change.
command = commands.new_command


def status_view(row: Any) -> dict[str, Any]:
    """How Octavia's documents of load balancers, listeners, pools and L7 policies begin, in its order."""
    return {
        "id": row.id,
        "name": row.name or "",
        "description": row.description or "",
        "provisioning_status": row.provisioning_status,
        "operating_status": row.operating_status,
        "admin_state_up": row.admin_state_up,
    }


def fresh(model: type[T], **values: Any) -> T:
    """A new row in PENDING_CREATE / OFFLINE with its timestamps set."""
    # Every model takes these columns as keywords; a bare TypeVar cannot say so.
    return cast("Callable[..., T]", model)(
        provisioning_status=PENDING_CREATE, operating_status=OFFLINE, created_at=utcnow(), updated_at=None, **values
    )
