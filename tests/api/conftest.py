"""``tests/api`` tests the API's behaviour on the fast tier (``fastedge.py``): ``mesh``, ``rest``, ``secure_mesh``
and ``secure_rest`` stand for its light meshes here. What only the real Envoy edge shows is tested through
``envoy_mesh`` / ``envoy_rest`` (``test_edge.py``, and ``test_fast_edge.py``, which sends the same requests
through both and compares the answers), and so are the modules that boot amphorae (``test_secrets.py``,
``test_amphora_provider_limits.py``)."""

from __future__ import annotations

import pytest
from lightmesh import LightMesh
from support import Rest


@pytest.fixture(scope="session")
def mesh(fast_mesh: LightMesh) -> LightMesh:
    return fast_mesh


@pytest.fixture(scope="session")
def rest(fast_mesh: LightMesh) -> Rest:
    return Rest(fast_mesh.endpoint)


@pytest.fixture(scope="session")
def secure_mesh(fast_secure_mesh: LightMesh) -> LightMesh:
    return fast_secure_mesh


@pytest.fixture(scope="session")
def secure_rest(fast_secure_mesh: LightMesh) -> Rest:
    return Rest(fast_secure_mesh.endpoint)
