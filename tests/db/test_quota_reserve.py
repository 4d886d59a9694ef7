"""Quota reservations on a real database (SQLite; PostgreSQL or MariaDB with ``OCTAVIA_MESH_TEST_DATABASE_URL``):
the one-statement reservation and the read-then-write it falls back to agree within one transaction."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.db import quota
from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import Quota

DEFAULTS = {"load_balancer": 3}


async def in_use(engine: AsyncEngine, project: str) -> int:
    read, _ = session_factories(engine)
    async with read() as session:
        return (
            await session.execute(select(Quota.in_use_load_balancer).where(Quota.project_id == project))
        ).scalar_one()


async def test_a_met_quota_is_seen_after_reservations_that_updated_the_row_behind_the_session(
    engine: AsyncEngine,
) -> None:
    """The project's first reservation loads its row into the session (read-then-write: there was no row); the
    next ones bump it with one UPDATE the session does not see; the one past the quota falls back to the
    read-then-write, which must count what the UPDATEs did, not what the session loaded."""
    project = uuid.uuid4().hex
    _, write = session_factories(engine)
    async with write() as session, session.begin():
        await quota.reserve(session, project, {"load_balancer": 1}, DEFAULTS)
        held = await session.get(Quota, project)  # the row as this session loaded it, kept (as a caller might)
        assert held is not None and held.in_use_load_balancer == 1
        for _ in range(2):
            await quota.reserve(session, project, {"load_balancer": 1}, DEFAULTS)
        with pytest.raises(quota.QuotaMet):
            await quota.reserve(session, project, {"load_balancer": 1}, DEFAULTS)
    assert await in_use(engine, project) == 3
