"""Quota accounting shared by the API (which reserves) and the providers (which release on delete).

A project's row in ``quota`` holds its limits and ``in_use_*`` counters. A
reservation locks that row (``SELECT … FOR UPDATE``; SQLite write
transactions are exclusive from their start, see ``engine.WRITE``), checks the
limit and bumps the counter in the caller's transaction, so concurrent creates
can never exceed a quota.

The usual reservation (the row exists, the quota is not met) is one conditional ``UPDATE`` that checks and
bumps at once: the row lock it takes is the same, and PostgreSQL and MariaDB re-check its condition on the
row as the transaction that held the lock left it, so it can no more exceed a quota than the read-then-write.
When it changes nothing (no row yet, or a quota met), the read-then-write runs and says which.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import cast

from sqlalchemy import Integer, Table, Update, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.common.db.engine import rowcount
from octavia_mesh.common.db.models import Quota

#: Quota resource names, as columns of ``quota`` (``in_use_<name>`` counts them).
RESOURCES = ("load_balancer", "listener", "pool", "health_monitor", "member", "l7policy", "l7rule")
UNLIMITED = -1


class QuotaMet(Exception):
    """The project already uses its quota of ``resource``."""

    def __init__(self, resource: str) -> None:
        super().__init__(resource)
        self.resource = resource


async def ensure_row(session: AsyncSession, project_id: str) -> None:
    """Create the project's quota row if it is missing (in its own savepoint: racing creators are fine)."""
    if await session.get(Quota, project_id) is not None:
        return
    try:
        async with session.begin_nested():
            session.add(Quota(project_id=project_id))
    except IntegrityError:
        pass


async def reserve(
    session: AsyncSession, project_id: str, amounts: Mapping[str, int], defaults: Mapping[str, int]
) -> None:
    """Count ``amounts`` against the project's quotas, or raise :class:`QuotaMet`."""
    if not amounts:
        return
    await session.flush()  # what is pending goes first, as before the read-then-write's lock (the ORM's autoflush)
    parameters: dict[str, object] = {"project": project_id}
    for resource, amount in amounts.items():
        parameters[f"amount_{resource}"] = amount
        parameters[f"default_{resource}"] = defaults.get(resource, UNLIMITED)
    if rowcount(await session.execute(_take(tuple(amounts)), parameters)) == 1:
        return
    # populate_existing: a row this session loaded before would keep the counters it had then, not what an
    # UPDATE above bumped since, and the check and the write below would go by those.
    locked = (
        select(Quota).where(Quota.project_id == project_id).with_for_update().execution_options(populate_existing=True)
    )
    row = (await session.execute(locked)).scalar_one_or_none()
    if row is None:  # the project's first object: its row, then the lock (one query less on every later create)
        await ensure_row(session, project_id)
        row = (await session.execute(locked)).scalar_one()
    for resource, amount in amounts.items():
        limit = getattr(row, resource)
        if limit is None:
            limit = defaults.get(resource, UNLIMITED)
        in_use = getattr(row, f"in_use_{resource}")
        if limit != UNLIMITED and in_use + amount > limit:
            raise QuotaMet(resource)
    for resource, amount in amounts.items():
        setattr(row, f"in_use_{resource}", getattr(row, f"in_use_{resource}") + amount)


@functools.cache
def _take(resources: tuple[str, ...]) -> Update:
    """``UPDATE quota SET in_use_<r> = in_use_<r> + :amount_<r>`` for the project ``:project``, where every
    resource's limit (its column, else ``:default_<r>``) is unlimited or not passed by it; built once."""
    table = cast(Table, Quota.__table__)
    checks, bumps = [], {}
    for resource in resources:
        limit = func.coalesce(table.c[resource], bindparam(f"default_{resource}", type_=Integer))
        grown = table.c[f"in_use_{resource}"] + bindparam(f"amount_{resource}")
        checks.append(or_(limit == UNLIMITED, grown <= limit))
        bumps[f"in_use_{resource}"] = grown
    return update(table).where(table.c.project_id == bindparam("project"), *checks).values(bumps)


async def release(session: AsyncSession, project_id: str | None, amounts: Mapping[str, int]) -> None:
    """Give back what deleted objects used (never below zero)."""
    if project_id is None or not any(amounts.values()):
        return
    row = await session.get(Quota, project_id, with_for_update=True)
    if row is None:
        return
    for resource, amount in amounts.items():
        setattr(row, f"in_use_{resource}", max(0, getattr(row, f"in_use_{resource}") - amount))
