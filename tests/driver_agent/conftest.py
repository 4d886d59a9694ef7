"""A mesh whose API offers the ``acme`` provider, served by the out-of-tree driver in ``site/``.

The driver agent finds ``acme`` through the entry point in
``site/acme_provider-1.0.dist-info/entry_points.txt`` (``site`` is on the
services' ``PYTHONPATH``) and runs it; the API enables it through
``OCTAVIA_MESH_API_ENABLED_PROVIDER_DRIVERS``. The driver journals what it sees
to ``journal.jsonl`` in a folder of the test session.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from acme_helpers import ACME_DESCRIPTION, SITE, Journal  # noqa: E402
from support import Rest, start_mesh  # noqa: E402

from octavia_mesh.cli.mesh import Mesh  # noqa: E402


@pytest.fixture(scope="session")
def acme_journal(tmp_path_factory: pytest.TempPathFactory) -> Journal:
    return Journal(tmp_path_factory.mktemp("acme-journal"))


@pytest.fixture(scope="session")
def acme_mesh(tmp_path_factory: pytest.TempPathFactory, acme_journal: Journal) -> Iterator[Mesh]:
    python_path = os.pathsep.join(p for p in (str(SITE), os.environ.get("PYTHONPATH", "")) if p)
    meshes = start_mesh(
        tmp_path_factory,
        "noauth",
        service_env={
            "OCTAVIA_MESH_API_ENABLED_PROVIDER_DRIVERS": (
                f"noop:The no-op driver: every change completes at once,acme:{ACME_DESCRIPTION}"
            ),
            "PYTHONPATH": python_path,
            "ACME_JOURNAL": str(acme_journal.path.parent),
        },
    )
    mesh = next(meshes)
    try:
        # The driver agent is healthy before its provider agents have started (a Python process importing grpc,
        # nats and SQLAlchemy takes seconds on a loaded machine): wait until acme takes commands.
        acme_journal.wait_for(lambda e: True, "consuming", timeout=120)
        yield mesh
    finally:
        meshes.close()


@pytest.fixture(scope="session")
def acme_rest(acme_mesh: Mesh) -> Rest:
    return Rest(acme_mesh.endpoint)


@pytest.fixture(scope="session")
def driver_agent_address(acme_mesh: Mesh) -> str:
    return acme_mesh.grpc_targets["driver-agent"]
