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

from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict, InvalidField, InvalidInput, NotFound
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import Filter, ListQuery, ListSpec, bool_filter, parse_query, select_fields
from octavia_mesh.api.resources.flavorprofiles import ObjectInUse
from octavia_mesh.api.resources.providers import Body, Field, show_fields
from octavia_mesh.common.db.models import Flavor, FlavorProfile, LoadBalancer


@dataclass(frozen=True, slots=True)
class Catalog:
    """Flavors or availability zones: a named, switchable reference to a provider profile."""

    model: Any  # Flavor or AvailabilityZone
    keyed_by_name: bool  # availability zones have no id: their name is the key
    profile_model: Any
    profile_field: str  # "flavor_profile_id"
    profile_label: str  # "Flavor Profile": the 404 of a missing profile
    wrapper: str  # "flavor"
    argument: str  # the Octavia controller's argument name, as its messages print it
    collection: str  # the URL segment
    list_key: str
    links_key: str
    label: str  # "Flavor": 404 and in-use messages
    duplicate_label: str  # "flavor": "A flavor of small already exists."
    lb_column: Any  # LoadBalancer.flavor_id / LoadBalancer.availability_zone
    updatable: tuple[str, ...]

    @property
    def key_column(self) -> Any:
        return self.model.name if self.keyed_by_name else self.model.id

    @property
    def create_body(self) -> Body:
        return Body(
            self.argument,
            self.wrapper,
            (
                Field("name", "string", mandatory=True),
                Field("description", "string"),
                Field("enabled", "bool", default=True),
                Field(self.profile_field, "uuid", mandatory=True),
            ),
        )

    @property
    def update_body(self) -> Body:
        kinds = {"name": "string", "description": "string", "enabled": "bool"}
        return Body(self.argument, self.wrapper, tuple(Field(n, kinds[n]) for n in self.updatable))

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

    async def list_(self, app: App, call: Call) -> Reply:
        call.caller.check(Rule.READ)
        listing = ListQuery(self.spec, parse_query(call.query), app.settings.pagination_max_limit)
        async with app.read() as session:
            page = await listing.page(session, select(self.model), call.base_url)
        items = [select_fields(self.view(row), page.fields) for row in page.rows]
        return Reply(200, {self.list_key: items, self.links_key: page.links})

    async def get(self, app: App, call: Call) -> Reply:
        call.caller.check(Rule.READ)
        fields = show_fields(call.query)
        async with app.read() as session:
            row = await session.get(self.model, call.id)
        if row is None:
            raise NotFound(self.label, call.id)
        return Reply(200, {self.wrapper: select_fields(self.view(row), fields)})

    async def create(self, app: App, call: Call) -> Reply:
        call.caller.check(Rule.ADMIN)
        values = self.create_body.parse(call.body, create=True)
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
        values = self.update_body.parse(call.body, create=False)
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
                for key, value in values.items():
                    setattr(row, key, value)
                await session.flush()
                item = self.view(row)
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

    def handlers(self, prefix: str, plural: str | None = None) -> dict[str, Any]:
        return {
            f"List{plural or prefix + 's'}": self.list_,
            f"Create{prefix}": self.create,
            f"Get{prefix}": self.get,
            f"Update{prefix}": self.update_,
            f"Delete{prefix}": self.delete_,
        }


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
    links_key="flavors_links",
    label="Flavor",
    duplicate_label="flavor",
    lb_column=LoadBalancer.flavor_id,
    updatable=("name", "description", "enabled"),
)

HANDLERS = CATALOG.handlers("Flavor")
