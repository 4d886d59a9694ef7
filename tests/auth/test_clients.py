"""Clients that need Keystone, unchanged, against the mesh in keystone mode: the ``openstack`` CLI's quota and secret
commands (finding the mesh in Keystone's catalog) and the ``barbican`` CLI against ``/key-manager``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from keystone_server import ADMIN_PASSWORD, USER_PASSWORD, Keystone

from octavia_mesh.cli.mesh import Mesh

#: The first test also starts Keystone (~20 s, a one-time ~2 min bootstrap on a fresh machine) and a mesh, and
#: each CLI run imports the whole openstack client (~3 CPU-seconds; over 40 s each at a load average of 25).
pytestmark = pytest.mark.timeout(600)


BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def catalog(ks_mesh: Mesh, keystone: Keystone, people) -> Mesh:
    """The mesh registered in Keystone's catalog as load-balancer and key-manager."""
    keystone.register_endpoint("load-balancer", "octavia", ks_mesh.endpoint)
    keystone.register_endpoint("key-manager", "barbican", ks_mesh.endpoint + "/key-manager")
    return ks_mesh


def run(
    keystone: Keystone, tmp_path: Path, user: str, project: str, *argv: str, tool: str = "openstack", fmt: bool = True
) -> Any:
    password = ADMIN_PASSWORD if user == "admin" else USER_PASSWORD
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OS_")},
        "OS_AUTH_URL": keystone.url,
        "OS_USERNAME": user,
        "OS_PASSWORD": password,
        "OS_PROJECT_NAME": project,
        "OS_USER_DOMAIN_ID": "default",
        "OS_PROJECT_DOMAIN_ID": "default",
        "OS_IDENTITY_API_VERSION": "3",
        "OS_INTERFACE": "public",
        "OS_REGION_NAME": "RegionOne",
        "HOME": str(tmp_path),  # no clouds.yaml of the machine's user
    }
    done = subprocess.run(
        [str(BIN / tool), *argv, *(("-f", "json") if fmt else ())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{tool} {' '.join(argv)}: {done.stderr[-2000:]}"
    return json.loads(done.stdout) if fmt and done.stdout.strip() else done.stdout


def test_quota_show_set_reset(catalog: Mesh, keystone: Keystone, people, tmp_path: Path) -> None:
    def load_balancer_quota() -> object:  # as the API has it (a fresh token: a CLI run may outlast one)
        headers = {"X-Auth-Token": keystone.token_of("admin", "admin")}
        answer = requests.get(f"{catalog.endpoint}/v2/lbaas/quotas/{people.project_b}", headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["quota"]["load_balancer"]

    shown = run(keystone, tmp_path, "admin", "admin", "loadbalancer", "quota", "show", "proj-b")  # name -> id
    assert shown["load_balancer"] == load_balancer_quota()
    set_7 = ("loadbalancer", "quota", "set", "--loadbalancer", "7", "proj-b")
    run(keystone, tmp_path, "admin", "admin", *set_7, fmt=False)
    assert load_balancer_quota() == 7
    run(keystone, tmp_path, "admin", "admin", "loadbalancer", "quota", "reset", "proj-b", fmt=False)
    assert load_balancer_quota() != 7


def test_openstack_secret_store_finds_the_store_in_the_catalog(catalog: Mesh, keystone: Keystone, tmp_path) -> None:
    stored = run(keystone, tmp_path, "member-a", "proj-a", "secret", "store", "--name", "cli", "--payload", "s3cr3t")
    ref = stored["Secret href"]
    assert ref.startswith(catalog.endpoint + "/") and "/v1/secrets/" in ref  # the mesh's store, found in the catalog
    got = run(keystone, tmp_path, "member-a", "proj-a", "secret", "get", "--payload", ref)
    assert got["Payload"] == "s3cr3t"
    listed = run(keystone, tmp_path, "member-b", "proj-b", "secret", "list")
    assert ref not in {s["Secret href"] for s in listed}  # another project's secret stays hidden


def test_barbican_cli_against_key_manager(catalog: Mesh, keystone: Keystone, tmp_path: Path) -> None:
    endpoint = ["--endpoint", catalog.endpoint + "/key-manager"]
    stored = run(
        keystone, tmp_path, "member-a", "proj-a", *endpoint, "secret", "store", "--payload", "b4rb", tool="barbican"
    )
    ref = stored["Secret href"]
    got = run(keystone, tmp_path, "member-a", "proj-a", *endpoint, "secret", "get", "--payload", ref, tool="barbican")
    assert got["Payload"] == "b4rb"
