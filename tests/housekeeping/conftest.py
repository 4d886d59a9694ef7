"""Fixtures of the housekeeping tests: meshes whose housekeeping (and worker) run on short intervals, each shared
by every module that uses it (a mesh costs seconds of CPU to start and to stop).

* ``noop_mesh``: the noop provider, housekeeping scanning every half second with a short PENDING_* timeout
  and a one-minute expiry of deleted load balancers (tests age rows by moving their timestamps back);
* ``amphora_mesh``: the amphora provider with 30-second amphora certificates that housekeeping rotates 20
  seconds before they expire, and an orphan sweep every second.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for path in (HERE.parent / "dataplane", HERE.parent, HERE):
    sys.path.insert(0, str(path))

from hk_timing import CERT_BUFFER_S, CERT_VALIDITY_S, PENDING_TIMEOUT_S  # noqa: E402
from support import Rest, start_mesh  # noqa: E402

from octavia_mesh.cli.mesh import Mesh  # noqa: E402

NOOP_ENV = {
    "OCTAVIA_MESH_HOUSEKEEPING_CLEANUP_INTERVAL_S": "0.5",
    "OCTAVIA_MESH_HOUSEKEEPING_PENDING_INTERVAL_S": "0.5",
    "OCTAVIA_MESH_HOUSEKEEPING_PENDING_TIMEOUT_S": str(PENDING_TIMEOUT_S),
    "OCTAVIA_MESH_HOUSEKEEPING_LOAD_BALANCER_EXPIRY_AGE_S": "60",
    "OCTAVIA_MESH_HOUSEKEEPING_AMPHORA_EXPIRY_AGE_S": "60",
    "OCTAVIA_MESH_HOUSEKEEPING_RECORD_EXPIRY_AGE_S": "60",
    "OCTAVIA_MESH_HOUSEKEEPING_ORPHAN_INTERVAL_S": "0.5",
}
AMPHORA_ENV = {
    "OCTAVIA_MESH_WORKER_AMPHORA_CERT_VALIDITY_S": str(CERT_VALIDITY_S),
    "OCTAVIA_MESH_HOUSEKEEPING_CERT_EXPIRY_BUFFER_S": str(CERT_BUFFER_S),
    "OCTAVIA_MESH_HOUSEKEEPING_CERT_INTERVAL_S": "0.5",
    "OCTAVIA_MESH_HOUSEKEEPING_ORPHAN_INTERVAL_S": "1",
}


@pytest.fixture(scope="session")
def noop_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from start_mesh(tmp_path_factory, "noauth", service_env=NOOP_ENV)


@pytest.fixture(scope="session")
def amphora_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from start_mesh(
        tmp_path_factory, "noauth", default_project="housekeeping", default_provider="amphora", service_env=AMPHORA_ENV
    )


@pytest.fixture(scope="session")
def noop_api(noop_mesh: Mesh) -> Rest:
    return Rest(noop_mesh.endpoint)


@pytest.fixture(scope="session")
def amphora_api(amphora_mesh: Mesh) -> Rest:
    return Rest(amphora_mesh.endpoint)
