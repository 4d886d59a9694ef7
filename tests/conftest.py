"""Shared fixtures: the whole mesh as real processes (NATS, Envoy, API, worker), one per auth mode.

``OCTAVIA_MESH_TEST_DATABASE_URL`` picks the database server the mesh runs on
(default: SQLite in the mesh's state directory); on PostgreSQL or MariaDB each
test session gets a fresh database that is dropped afterwards.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import Rest, fresh_database  # noqa: E402

from octavia_mesh.cli.mesh import Mesh, MeshOptions  # noqa: E402
from octavia_mesh.cli.processes import free_port  # noqa: E402


def _start_mesh(tmp_path_factory: pytest.TempPathFactory, auth: str, default_project: str = "") -> Iterator[Mesh]:
    state = tmp_path_factory.mktemp(f"mesh-{auth}")
    url = os.environ.get("OCTAVIA_MESH_TEST_DATABASE_URL")
    drop = None
    if url:
        url, drop = fresh_database(url)
    mesh = Mesh(
        MeshOptions(
            host="127.0.0.1",
            port=free_port(),
            state_dir=state,
            database_url=url,
            nats_url=None,
            auth_strategy=auth,
            start_timeout=60.0,
            default_project=default_project,
        )
    )
    mesh.start()
    try:
        yield mesh
    finally:
        mesh.stop()
        if drop is not None:
            drop()


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh in ``noauth`` mode: every caller is admin."""
    yield from _start_mesh(tmp_path_factory, "noauth")


@pytest.fixture(scope="session")
def secure_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh in ``trusted_headers`` mode: X-Project-Id and X-Roles decide."""
    yield from _start_mesh(tmp_path_factory, "trusted_headers")


@pytest.fixture(scope="module")
def own_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """A mesh for one test module alone, for tests that kill and restart its processes."""
    yield from _start_mesh(tmp_path_factory, "noauth")


@pytest.fixture(scope="session")
def rest(mesh: Mesh) -> Rest:
    return Rest(mesh.endpoint)


@pytest.fixture(scope="session")
def secure_rest(secure_mesh: Mesh) -> Rest:
    return Rest(secure_mesh.endpoint)
