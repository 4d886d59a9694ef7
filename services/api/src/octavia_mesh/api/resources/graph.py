"""Single-call create of a whole load-balancer tree, and the ``/status`` tree."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import NotImplementedByProvider
from octavia_mesh.common.db.models import LoadBalancer


async def create_tree(
    app: App, call: Call, session: AsyncSession, lb: LoadBalancer, listeners: list[Any], pools: list[Any]
) -> dict[str, int]:
    raise NotImplementedByProvider("single-call create is not implemented yet")


async def full_view(session: AsyncSession, lb: LoadBalancer, item: dict[str, Any]) -> dict[str, Any]:
    return item


async def status_tree(app: App, call: Call) -> Reply:
    raise NotImplementedByProvider("status tree is not implemented yet")
