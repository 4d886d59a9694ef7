"""The `openstack loadbalancer …` CLI (python-octaviaclient), unchanged, as a subprocess.

Its ``create`` resolves ``--vip-subnet-id`` through Neutron first, as against real Octavia; Neutron is faked
at its HTTP boundary (``fake_neutron``). Everything else is the real mesh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_neutron import running
from support import SUBNET, start_mesh

from octavia_mesh.cli.mesh import Mesh

OPENSTACK = str(Path(sys.executable).parent / "openstack")
#: Each call is a new `openstack` process that imports openstackclient and its plugins first: 3 s on a quiet
#: machine, 13 to 18 s at a load average of 8 (Envoy's access log of a CI run: the mesh answered every call in
#: 2 to 125 ms), so pytest's default 120 s per test bounded the CLI's start-up, not the mesh, for a test of eight
#: calls. Every call keeps its own 60 s bound.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cli_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """Without Keystone the CLI cannot name a project, so this mesh gives calls a default one."""
    yield from start_mesh(tmp_path_factory, "noauth", default_project="cli-project")


@pytest.fixture(scope="module")
def cli_env(cli_mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with running([(SUBNET, "22222222-2222-2222-2222-222222222222", "10.0.0.0/24")]) as neutron:
        config = tmp_path_factory.mktemp("cli") / "clouds.yaml"
        config.write_text(
            "clouds:\n  mesh:\n    auth_type: none\n"
            f"    load_balancer_endpoint_override: {cli_mesh.endpoint}\n"
            f"    network_endpoint_override: {neutron}/\n"
        )
        yield {**os.environ, "OS_CLIENT_CONFIG_FILE": str(config), "OS_CLOUD": "mesh"}


def openstack(env: dict[str, str], *args: str) -> object:
    done = subprocess.run(
        [OPENSTACK, "loadbalancer", *args, "-f", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def openstack_fails(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [OPENSTACK, "loadbalancer", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0, done.stdout
    return done.stderr


def test_create_show_list_set_delete(cli_env: dict[str, str]) -> None:
    lb = openstack(cli_env, "create", "--name", "cli-lb", "--vip-subnet-id", SUBNET, "--wait")
    assert lb["provisioning_status"] == "ACTIVE" and lb["vip_subnet_id"] == SUBNET
    shown = openstack(cli_env, "show", "cli-lb")
    assert shown["id"] == lb["id"] and shown["project_id"] == "cli-project"
    names = [row["name"] for row in openstack(cli_env, "list", "--name", "cli-lb")]
    assert names == ["cli-lb"]
    subprocess.run(
        [OPENSTACK, "loadbalancer", "set", "--description", "set by the CLI", "--wait", lb["id"]],
        env=cli_env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert openstack(cli_env, "show", lb["id"])["description"] == "set by the CLI"
    assert "Unable to locate" in openstack_fails(cli_env, "show", "no-such-lb")
    subprocess.run(
        [OPENSTACK, "loadbalancer", "delete", "--wait", lb["id"]],
        env=cli_env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert openstack(cli_env, "list", "--name", "cli-lb") == []


def test_children_and_status(cli_env: dict[str, str]) -> None:
    lb = openstack(cli_env, "create", "--name", "cli-tree", "--vip-subnet-id", SUBNET, "--wait")
    listener = openstack(
        cli_env,
        "listener",
        "create",
        "--name",
        "cli-l",
        "--protocol",
        "HTTP",
        "--protocol-port",
        "80",
        "--wait",
        lb["id"],
    )
    pool = openstack(
        cli_env,
        "pool",
        "create",
        "--name",
        "cli-p",
        "--protocol",
        "HTTP",
        "--lb-algorithm",
        "ROUND_ROBIN",
        "--listener",
        listener["id"],
        "--wait",
    )
    member = openstack(
        cli_env,
        "member",
        "create",
        "--address",
        "192.0.2.10",
        "--protocol-port",
        "8080",
        "--subnet-id",
        SUBNET,
        "--wait",
        pool["id"],
    )
    openstack(
        cli_env,
        "healthmonitor",
        "create",
        "--delay",
        "5",
        "--timeout",
        "3",
        "--max-retries",
        "3",
        "--type",
        "HTTP",
        "--url-path",
        "/healthz",
        "--wait",
        pool["id"],
    )
    shown = subprocess.run(
        [OPENSTACK, "loadbalancer", "status", "show", lb["id"]],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    tree = json.loads(shown.stdout)["loadbalancer"]  # the command prints JSON itself
    (pool_status,) = tree["listeners"][0]["pools"]
    assert pool_status["members"][0]["id"] == member["id"]
    assert pool_status["health_monitor"]["provisioning_status"] == "ACTIVE"
    failure = openstack_fails(cli_env, "listener", "create", "--protocol", "HTTP", "--protocol-port", "80", lb["id"])
    assert "already using protocol HTTP and protocol_port 80" in failure and "409" in failure
    subprocess.run(
        [OPENSTACK, "loadbalancer", "delete", "--cascade", "--wait", lb["id"]],
        env=cli_env,
        check=True,
        capture_output=True,
        timeout=60,
    )
