"""Fixtures of the data-plane tests: one mesh (amphora provider) for the whole directory, backends per test.

One mesh serves every module (a mesh costs seconds to start and to stop); each module creates its own
load balancer(s) and cascade-deletes them when it is done. Modules that kill processes of the mesh
start their own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataplane_helpers import Backend, TcpBackend, run_mesh  # noqa: E402
from support import Rest  # noqa: E402

from octavia_mesh.cli.mesh import Mesh  # noqa: E402


@pytest.fixture(scope="package")
def dataplane_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from run_mesh(tmp_path_factory, "dataplane")


@pytest.fixture(scope="package")
def api(dataplane_mesh: Mesh) -> Rest:
    return Rest(dataplane_mesh.endpoint)


@pytest.fixture
def backends() -> Iterator[Callable[..., list[Backend]]]:
    """``backends(3)`` starts member0..member2 (``prefix`` renames them); all are closed after the test."""
    started: list[Backend | TcpBackend] = []

    def make(count: int, prefix: str = "member", **kwargs: object) -> list[Backend]:
        new = [Backend(f"{prefix}{i}", **kwargs) for i in range(len(started), len(started) + count)]
        started.extend(new)
        return new

    yield make
    for backend in started:
        backend.close()


@pytest.fixture
def tcp_backends() -> Iterator[Callable[..., list[TcpBackend]]]:
    started: list[TcpBackend] = []

    def make(count: int, mode: str = "banner", prefix: str = "tcp") -> list[TcpBackend]:
        new = [TcpBackend(f"{prefix}{i}", mode) for i in range(len(started), len(started) + count)]
        started.extend(new)
        return new

    yield make
    for backend in started:
        backend.close()
