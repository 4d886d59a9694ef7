"""What the admin-managed resources share: flavors, availability zones and their profiles.

Each is one table whose rows belong to no project. :class:`AdminResource`
lists and shows them (``read_rule`` says who may) and names the five
handlers; the subclasses create, update and delete.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import ListSpec, list_query, page_reply, select_fields, show_fields, views_of

Handler = Callable[[App, Call], Awaitable[Reply]]


class ObjectInUse(Conflict):
    def __init__(self, label: str, ident: str) -> None:
        super().__init__(f"{label} {ident} is in use and cannot be modified.")


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminResource:
    model: Any
    wrapper: str  # the key of one object: "flavor"
    argument: str  # the Octavia controller's argument name, as its messages print it
    collection: str  # the URL segment: "flavors"
    list_key: str  # the key of the list: "flavors"
    links_key: str | None = None  # default "<list_key>_links" (the profiles spell it in the singular)
    label: str  # the 404's: "Flavor"

    #: Who may list and show: everyone reads flavors and zones, only admins read profiles.
    read_rule: ClassVar[Rule] = Rule.READ

    @property
    def spec(self) -> ListSpec:
        raise NotImplementedError

    def view(self, row: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def list_(self, app: App, call: Call) -> Reply:
        call.caller.check(self.read_rule)
        listing = list_query(app, call, self.spec)
        async with app.read() as session:
            statement = select(self.model)
            views = views_of(self.view)
            return await page_reply(
                session, call, listing, statement, views, key=self.list_key, links_key=self.links_key
            )

    async def get(self, app: App, call: Call) -> Reply:
        call.caller.check(self.read_rule)
        fields = show_fields(call.query)
        async with app.read() as session:
            row = await store.get_or_404(session, self.model, call.id, self.label)
        return Reply(200, {self.wrapper: select_fields(self.view(row), fields)})

    async def applied(self, session: AsyncSession, row: Any, values: dict[str, Any]) -> dict[str, Any]:
        """Set an update's ``values`` on ``row``; its view as the transaction leaves it."""
        for key, value in values.items():
            setattr(row, key, value)
        await session.flush()
        return self.view(row)

    async def create(self, app: App, call: Call) -> Reply:
        raise NotImplementedError

    async def update_(self, app: App, call: Call) -> Reply:
        raise NotImplementedError

    async def delete_(self, app: App, call: Call) -> Reply:
        raise NotImplementedError

    def handlers(self, prefix: str, plural: str | None = None) -> dict[str, Handler]:
        """The gRPC methods: ``List<plural>``, ``Create<prefix>``, ..."""
        return {
            f"List{plural or prefix + 's'}": self.list_,
            f"Create{prefix}": self.create,
            f"Get{prefix}": self.get,
            f"Update{prefix}": self.update_,
            f"Delete{prefix}": self.delete_,
        }
