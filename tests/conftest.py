"""Shared fixtures: the whole mesh as real processes (NATS, Envoy, API, worker, ...), one per auth mode; and the
fast tier's light meshes (NATS, API, worker, and the edge's rules run in-process: ``fastedge.py``), one per
auth mode and xdist worker, which ``tests/api`` uses wherever it tests API behaviour (``tests/api/conftest.py``).

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

from grouping import Controller, mark_and_order, release_finished_group  # noqa: E402
from lightmesh import LightMesh, start_light_mesh  # noqa: E402
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    result = yield
    release_finished_group(item, nextitem)  # see grouping.py
    return result


@pytest.fixture(scope="session")
def envoy_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The whole mesh in ``noauth`` mode (every caller is admin), behind the real Envoy edge."""
    yield from start_mesh(tmp_path_factory, "noauth")


@pytest.fixture(scope="session")
def mesh(envoy_mesh: Mesh) -> Mesh:
    """:func:`envoy_mesh` (``tests/api`` has this name stand for the fast tier's :func:`fast_mesh`)."""
    return envoy_mesh


@pytest.fixture(scope="session")
def envoy_secure_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The whole mesh in ``trusted_headers`` mode: X-Project-Id and X-Roles decide, sent with the proxy's secret."""
    yield from start_mesh(
        tmp_path_factory, "trusted_headers", service_env={"OCTAVIA_MESH_API_TRUSTED_PROXY_SECRET": PROXY_SECRET}
    )


@pytest.fixture(scope="session")
def secure_mesh(envoy_secure_mesh: Mesh) -> Mesh:
    """:func:`envoy_secure_mesh` (``tests/api``: :func:`fast_secure_mesh`)."""
    return envoy_secure_mesh


@pytest.fixture(scope="session")
def fast_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LightMesh]:
    """The fast tier in ``noauth`` mode: the API and the worker (noop provider) on their own NATS, behind the
    edge's rules run in-process. Cheap enough to start once per xdist worker (see grouping.py)."""
    yield from start_light_mesh(tmp_path_factory, "noauth")


@pytest.fixture(scope="session")
def fast_secure_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LightMesh]:
    """The fast tier in ``trusted_headers`` mode."""
    yield from start_light_mesh(
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


@pytest.fixture(scope="session")
def envoy_rest(envoy_mesh: Mesh) -> Rest:
    """REST through the real Envoy edge, wherever the test is."""
    return Rest(envoy_mesh.endpoint)


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
