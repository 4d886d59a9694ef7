"""The unchanged `openstack loadbalancer` CLI builds a load balancer that serves traffic, with no Neutron:
the edge answers the CLI's subnet lookups for the local VIP subnet."""

from __future__ import annotations

import http.client
import http.server
import ipaddress
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import start_mesh, vip_network

from octavia_mesh.cli.mesh import Mesh

OPENSTACK = str(Path(sys.executable).parent / "openstack")
# Five CLI processes of 13-18 s start-up each on a loaded machine (the mesh answers in milliseconds), so the
# test gets 300 s as test_openstack_cli does; each call keeps its own 90 s bound.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def amphora_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from start_mesh(tmp_path_factory, "noauth", default_project="cli-local", default_provider="amphora")


def test_cli_builds_a_serving_load_balancer(amphora_mesh: Mesh, tmp_path: Path) -> None:
    config = tmp_path / "clouds.yaml"
    config.write_text(
        "clouds:\n  mesh:\n    auth_type: none\n"
        f"    load_balancer_endpoint_override: {amphora_mesh.endpoint}\n"
        f"    network_endpoint_override: {amphora_mesh.endpoint}\n"
    )
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(config), "OS_CLOUD": "mesh"}

    def cli(*args: str) -> Any:
        done = subprocess.run(
            [OPENSTACK, "loadbalancer", *args, "-f", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's API
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"hello\n")

        def log_message(self, *args: Any) -> None:
            pass

    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    try:
        subnet = amphora_mesh.local_subnet()
        lb = cli("create", "--name", "cli-local", "--vip-subnet-id", subnet, "--wait")
        assert lb["provisioning_status"] == "ACTIVE" and ipaddress.ip_address(lb["vip_address"]) in vip_network(
            amphora_mesh
        )
        listener = cli("listener", "create", "--protocol", "HTTP", "--protocol-port", "8081", "--wait", lb["id"])
        pool = cli(
            "pool",
            "create",
            "--protocol",
            "HTTP",
            "--lb-algorithm",
            "ROUND_ROBIN",
            "--listener",
            listener["id"],
            "--wait",
        )
        cli(
            "member",
            "create",
            "--address",
            "127.0.0.1",
            "--protocol-port",
            str(backend.server_address[1]),
            "--subnet-id",
            subnet,
            "--wait",
            pool["id"],
        )
        conn = http.client.HTTPConnection(lb["vip_address"], 8081, timeout=5)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"hello\n")
        conn.close()
        subprocess.run(
            [OPENSTACK, "loadbalancer", "delete", "--cascade", "--wait", lb["id"]],
            env=env,
            check=True,
            capture_output=True,
            timeout=90,
        )
    finally:
        backend.shutdown()
        backend.server_close()
