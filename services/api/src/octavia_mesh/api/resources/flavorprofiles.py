"""Flavor profiles: ``/v2/lbaas/flavorprofiles`` (admin only).

A profile is a provider name and a JSON string of provider options; the
options are checked against the provider's capabilities (providers.py)
before anything is written. Availability-zone profiles work the same way,
so :class:`Profiles` serves both (availabilityzoneprofiles.py instantiates it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import InvalidInput, NotFound
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import Filter, ListSpec
from octavia_mesh.api.resources.admin import AdminResource, ObjectInUse
from octavia_mesh.api.resources.providers import check_profile_data, load_profile_data
from octavia_mesh.common.db.models import Flavor, FlavorProfile


@dataclass(frozen=True, slots=True, kw_only=True)
class Profiles(AdminResource):
    """One kind of provider profile and its five calls."""

    read_rule: ClassVar[Rule] = Rule.ADMIN

    data: str  # the data attribute: "flavor_data" / "availability_zone_data"
    delete_label: str  # "Flavor profile": 404 of delete and the 409 when in use
    zone: bool
    user_column: Any  # the column of the objects that use a profile (Flavor.flavor_profile_id)
    put_data_option: str  # the option Octavia names when an update's data is not JSON

    @property
    def body(self) -> s.Schema:
        """The POST type (all mandatory); the PUT type has the same attributes."""
        return s.Schema(
            self.wrapper,
            self.argument,
            {
                "name": s.Attr(s.text(255), required=True),
                "provider_name": s.Attr(s.text(255), required=True),
                self.data: s.Attr(s.text(4096), required=True),
            },
        )

    @property
    def spec(self) -> ListSpec:
        columns = ("id", "name", "provider_name", self.data)
        return ListSpec(
            collection=self.collection,
            id_column=self.model.id,
            created_column=None,
            filters={c: Filter(getattr(self.model, c)) for c in columns},
            sort_keys={c: getattr(self.model, c) for c in columns},
            taggable=False,
        )

    def view(self, row: Any) -> dict[str, Any]:
        return {
            "id": row.id,
            "name": row.name or "",
            "provider_name": row.provider_name,
            self.data: getattr(row, self.data),
        }

    async def _in_use(self, session: AsyncSession, profile_id: str) -> bool:
        count = select(func.count()).select_from(self.user_column.class_).where(self.user_column == profile_id)
        return (await session.execute(count)).scalar_one() > 0

    # --- handlers ---------------------------------------------------------------------

    async def create(self, app: App, call: Call) -> Reply:
        call.caller.check(Rule.ADMIN)
        values = self.body.parse_create(call.body)
        data = load_profile_data(values[self.data], self.data)
        # A null provider is the default one, as Octavia's driver factory reads it.
        provider_name = values["provider_name"] or app.settings.default_provider_driver
        await check_profile_data(app, provider_name, data, zone=self.zone)
        row = self.model(id=str(uuid.uuid4()), name=values["name"] or "", provider_name=provider_name)
        setattr(row, self.data, values[self.data])
        async with app.write() as session, session.begin():
            session.add(row)
        return Reply(201, {self.wrapper: self.view(row)})

    async def update_(self, app: App, call: Call) -> Reply:
        call.caller.check(Rule.ADMIN)
        values = self.body.parse_update(call.body)
        for key in ("name", "provider_name", self.data):
            if key in values and values[key] is None:
                raise InvalidInput(f"None is not a valid option for {key}")
        data = load_profile_data(values[self.data], self.put_data_option) if self.data in values else None
        options_change = self.data in values or "provider_name" in values
        async with app.write() as session, session.begin():
            # Locked first, so that no flavor / zone can start using it while we decide.
            row = await session.get(self.model, call.id, with_for_update=True)
            if options_change and row is not None and await self._in_use(session, row.id):
                raise ObjectInUse(self.delete_label, call.id)
            if row is None:
                raise NotFound(self.label, call.id)
            if options_change:
                provider_name = values.get("provider_name", row.provider_name)
                if self.data not in values:
                    data = load_profile_data(getattr(row, self.data), self.put_data_option)
                await check_profile_data(app, provider_name, data, zone=self.zone)
            item = await self.applied(session, row, values)
        return Reply(200, {self.wrapper: item})

    async def delete_(self, app: App, call: Call) -> Reply:
        call.caller.check(Rule.ADMIN)
        try:
            async with app.write() as session, session.begin():
                row = await session.get(self.model, call.id, with_for_update=True)
                if row is not None and await self._in_use(session, row.id):
                    raise ObjectInUse(self.delete_label, call.id)
                if row is None:
                    raise NotFound(self.delete_label, call.id)
                await session.delete(row)
                await session.flush()
        except IntegrityError:  # a user appeared between the check and the delete
            raise ObjectInUse(self.delete_label, call.id) from None
        return Reply(204)


PROFILES = Profiles(
    model=FlavorProfile,
    data="flavor_data",
    wrapper="flavorprofile",
    argument="flavor_profile_",
    collection="flavorprofiles",
    list_key="flavorprofiles",
    links_key="flavorprofile_links",
    label="Flavor Profile",
    delete_label="Flavor profile",
    zone=False,
    user_column=Flavor.flavor_profile_id,
    put_data_option="flavor_data",
)

HANDLERS = PROFILES.handlers("FlavorProfile")
