"""Shared fixtures: the whole mesh as real processes (NATS, Envoy, API, worker), one per auth mode.

``OCTAVIA_MESH_TEST_DATABASE_URL`` picks the database server the mesh runs on
(default: SQLite in the mesh's state directory); on PostgreSQL or MariaDB each
test session gets a fresh database that is dropped afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import Rest, start_mesh  # noqa: E402

from octavia_mesh.cli.mesh import Mesh  # noqa: E402


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh in ``noauth`` mode: every caller is admin."""
    yield from start_mesh(tmp_path_factory, "noauth")


@pytest.fixture(scope="session")
def secure_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh in ``trusted_headers`` mode: X-Project-Id and X-Roles decide."""
    yield from start_mesh(tmp_path_factory, "trusted_headers")


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
