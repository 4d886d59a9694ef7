"""Shared fixtures: the whole mesh as real processes (NATS, Envoy, API, worker), one per auth mode.

``OCTAVIA_MESH_TEST_DATABASE_URL`` picks the database server the mesh runs on
(default: SQLite in the mesh's state directory); on PostgreSQL or MariaDB each
test session gets a fresh database that is dropped afterwards.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grouping import Controller, mark_and_order  # noqa: E402
from support import PROXY_SECRET, Rest, fresh_database, start_mesh  # noqa: E402

from octavia_mesh.cli.mesh import Mesh  # noqa: E402
from octavia_mesh.common.db.engine import make_engine  # noqa: E402
from octavia_mesh.common.db.migrate import upgrade  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    if (
        config.pluginmanager.hasplugin("xdist")
        and config.getoption("numprocesses", None)
        and not hasattr(config, "workerinput")
    ):  # the xdist controller: see grouping.py
        config.pluginmanager.register(Controller(config), "octavia-mesh-groups")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook appends the groups to the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: see grouping.py
        mark_and_order(config, items)


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh in ``noauth`` mode: every caller is admin."""
    yield from start_mesh(tmp_path_factory, "noauth")


@pytest.fixture(scope="session")
def secure_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh in ``trusted_headers`` mode: X-Project-Id and X-Roles decide, sent with the proxy's secret."""
    yield from start_mesh(
        tmp_path_factory, "trusted_headers", service_env={"OCTAVIA_MESH_API_TRUSTED_PROXY_SECRET": PROXY_SECRET}
    )


@pytest.fixture(scope="module")
def own_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """A mesh for one test module alone, for tests that kill and restart its processes."""
    yield from start_mesh(tmp_path_factory, "noauth")


@pytest.fixture(scope="session")
def rest(mesh: Mesh) -> Rest:
    return Rest(mesh.endpoint)


@pytest.fixture(scope="session")
def secure_rest(secure_mesh: Mesh) -> Rest:
    return Rest(secure_mesh.endpoint)


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty database per test module, on the server OCTAVIA_MESH_TEST_DATABASE_URL names (else SQLite)."""
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
