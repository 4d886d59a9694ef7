"""Flavors: ``/v2/lbaas/flavors`` (everyone reads, admins write).

A flavor names a flavor profile that users pick when they create a load
balancer. Availability zones are the same kind of object keyed by name, so
:class:`Catalog` serves both (availabilityzones.py instantiates it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict, InvalidField, InvalidInput, NotFound
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import Filter, ListSpec, bool_filter
from octavia_mesh.api.resources.admin import AdminResource, ObjectInUse
from octavia_mesh.common.db.models import Flavor, FlavorProfile, LoadBalancer


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalog(AdminResource):
    """Flavors or availability zones: a named, switchable reference to a provider profile."""

    keyed_by_name: bool  # availability zones have no id: their name is the key
    profile_model: Any
    profile_field: str  # "flavor_profile_id"
    profile_label: str  # "Flavor Profile": the 404 of a missing profile
    duplicate_label: str  # "flavor": "A flavor of small already exists."
    lb_column: Any  # LoadBalancer.flavor_id / LoadBalancer.availability_zone
    updatable: tuple[str, ...]

    @property
    def key_column(self) -> Any:
        return self.model.name if self.keyed_by_name else self.model.id

    @property
    def body(self) -> s.Schema:
        """The POST type; the PUT type keeps only the ``updatable`` attributes."""
        attrs = {
            "name": s.Attr(s.text(255), required=True),
            "description": s.Attr(s.text(255)),
            "enabled": s.Attr(s.boolean, default=True),
            self.profile_field: s.Attr(s.uuid_value, required=True),
        }
        return s.Schema(
            self.wrapper,
            self.argument,
            {n: s.Attr(a.check, a.default, a.required, n not in self.updatable) for n, a in attrs.items()},
        )

    @property
    def spec(self) -> ListSpec:
        columns = ("name", "description", self.profile_field) + (() if self.keyed_by_name else ("id",))
        return ListSpec(
            collection=self.collection,
            id_column=self.key_column,
            created_column=None,
            filters={
                **{c: Filter(getattr(self.model, c)) for c in columns},
                "enabled": bool_filter(self.model.enabled),
            },
            sort_keys={c: getattr(self.model, c) for c in (*columns, "enabled")},
            taggable=False,
        )

    def view(self, row: Any) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.keyed_by_name else {"id": row.id}
        out.update(
            {
                "name": row.name or "",
                "description": row.description or "",
                "enabled": row.enabled,
                self.profile_field: getattr(row, self.profile_field),
            }
        )
        return out

    async def _name_taken(self, session: AsyncSession, name: str, other_than: str | None = None) -> bool:
        statement = select(func.count()).select_from(self.model).where(self.model.name == name)
        if other_than is not None:
            statement = statement.where(self.key_column != other_than)
        return (await session.execute(statement)).scalar_one() > 0

    # --- handlers ---------------------------------------------------------------------

    async def create(self, app: App, call: Call) -> Reply:
        call.caller.check(Rule.ADMIN)
        values = self.body.parse_create(call.body)
        profile_id = values[self.profile_field]
        if profile_id is None:
            raise InvalidField(self.profile_field, None, "Mandatory field missing.")
        if values["enabled"] is None:
            raise InvalidInput("None is not a valid option for enabled")
        name = values["name"]
        if name is None:
            if self.keyed_by_name:  # the key of a zone cannot be null
                raise InvalidField("name", None, "Mandatory field missing.")
            name = ""
        row = self.model(name=name, description=values.get("description"), enabled=values["enabled"])
        setattr(row, self.profile_field, profile_id)
        if not self.keyed_by_name:
            row.id = str(uuid.uuid4())
        try:
            async with app.write() as session, session.begin():
                if await session.get(self.profile_model, profile_id) is None:
                    raise NotFound(self.profile_label, profile_id)
                if await self._name_taken(session, name):
                    raise Conflict(f"A {self.duplicate_label} of {name} already exists.")
                session.add(row)
                await session.flush()
        except IntegrityError:
            # A concurrent call took the name or removed the profile: answer as if we had come second.
            async with app.read() as session:
                if await self._name_taken(session, name):
                    raise Conflict(f"A {self.duplicate_label} of {name} already exists.") from None
            raise NotFound(self.profile_label, profile_id) from None
        return Reply(201, {self.wrapper: self.view(row)})

    async def update_(self, app: App, call: Call) -> Reply:
        call.caller.check(Rule.ADMIN)
        values = self.body.parse_update(call.body)
        if "enabled" in values and values["enabled"] is None:
            raise InvalidInput("None is not a valid option for enabled")
        if "name" in values and values["name"] is None:
            values["name"] = ""
        try:
            async with app.write() as session, session.begin():
                row = await session.get(self.model, call.id, with_for_update=True)
                if row is None:
                    raise NotFound(self.label, call.id)
                name = values.get("name")
                if name is not None and name != row.name and await self._name_taken(session, name, call.id):
                    raise Conflict(f"A {self.duplicate_label} of {name} already exists.")
                item = await self.applied(session, row, values)
        except IntegrityError:
            raise Conflict(f"A {self.duplicate_label} of {values.get('name')} already exists.") from None
        return Reply(200, {self.wrapper: item})

    async def delete_(self, app: App, call: Call) -> Reply:
        call.caller.check(Rule.ADMIN)
        try:
            async with app.write() as session, session.begin():
                # Locked first: a load balancer created meanwhile waits for us (its foreign key), or we see it.
                row = await session.get(self.model, call.id, with_for_update=True)
                if row is None:
                    raise NotFound(self.label, call.id)
                users = select(func.count()).select_from(LoadBalancer)
                users = users.where(self.lb_column == call.id, LoadBalancer.provisioning_status != store.DELETED)
                if (await session.execute(users)).scalar_one():
                    raise ObjectInUse(self.label, call.id)
                # Deleted load balancers keep their row for a while; they let go of it, as in Octavia.
                await session.execute(
                    update(LoadBalancer)
                    .where(self.lb_column == call.id, LoadBalancer.provisioning_status == store.DELETED)
                    .values({self.lb_column.key: None})
                )
                await session.delete(row)
                await session.flush()
        except IntegrityError:
            raise ObjectInUse(self.label, call.id) from None
        return Reply(204)


CATALOG = Catalog(
    model=Flavor,
    keyed_by_name=False,
    profile_model=FlavorProfile,
    profile_field="flavor_profile_id",
    profile_label="Flavor Profile",
    wrapper="flavor",
    argument="flavor_",
    collection="flavors",
    list_key="flavors",
    label="Flavor",
    duplicate_label="flavor",
    lb_column=LoadBalancer.flavor_id,
    updatable=("name", "description", "enabled"),
)

HANDLERS = CATALOG.handlers("Flavor")
