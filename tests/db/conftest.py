"""A migrated, empty database per test module, on the backend named by OCTAVIA_MESH_TEST_DATABASE_URL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support import fresh_database

from octavia_mesh.common.db.engine import make_engine
from octavia_mesh.common.db.migrate import upgrade


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("OCTAVIA_MESH_TEST_DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db')}/t.db"
    url, drop = fresh_database(url)
    upgrade(url)
    try:
        yield url
    finally:
        drop()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()
