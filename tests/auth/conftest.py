"""A real Keystone 30 and meshes in keystone mode for the authentication tests.

Tokens live 20 s (Keystone's ``[token] expiration``, so that an expired token can be shown without a clock
trick); the helpers below get a fresh one per call. The keystone-mode mesh reuses a validation for
:data:`CACHE_TIME_S` (Keystone's revocation is honoured that late).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from keystone_server import CACHE_TIME_S, TOKEN_LIFETIME_S, USER_PASSWORD, Keystone, keystone_env, running_keystone
from support import start_mesh

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.cli.processes import free_port


@dataclass(frozen=True)
class People:
    """The test users: project A's reader, member and a second member; project B's member; the admin."""

    project_a: str
    project_b: str


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keystone]:
    with running_keystone(tmp_path_factory.mktemp("keystone"), token_expiration_s=TOKEN_LIFETIME_S) as server:
        yield server


@pytest.fixture(scope="session")
def people(keystone: Keystone) -> People:
    keystone.user("reader-a", USER_PASSWORD, {"proj-a": ["reader"]})
    keystone.user("member-a", USER_PASSWORD, {"proj-a": ["member"]})
    keystone.user("member-b", USER_PASSWORD, {"proj-b": ["member"]})
    keystone.user("sysadmin", USER_PASSWORD, {}, system_roles=("admin",))
    return People(project_a=keystone.project("proj-a"), project_b=keystone.project("proj-b"))


@pytest.fixture(scope="session")
def ks_mesh(tmp_path_factory: pytest.TempPathFactory, keystone: Keystone) -> Iterator[Mesh]:
    """The mesh in keystone mode (noop provider), validating against ``keystone``."""
    env = keystone_env(keystone, cache_time_s=CACHE_TIME_S)
    yield from start_mesh(tmp_path_factory, "keystone", service_env=env)


@pytest.fixture(scope="session")
def down_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """A keystone-mode mesh whose Keystone does not answer (nothing listens on its port)."""
    env = {
        "OCTAVIA_MESH_API_KEYSTONE_AUTH_URL": f"http://127.0.0.1:{free_port()}/v3",
        "OCTAVIA_MESH_API_KEYSTONE_PASSWORD": "unused",
        "OCTAVIA_MESH_API_KEYSTONE_TIMEOUT_S": "2",
    }
    yield from start_mesh(tmp_path_factory, "keystone", service_env=env)
