"""Several API processes behind the edge (issue 12): Envoy spreads the calls over them, a call that finds one
dead goes to another, and commands written through any of them are published (one outbox owner)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import SUBNET, listen_port, stop_mesh

from octavia_mesh.cli.mesh import Mesh, MeshOptions, grpc_serving


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    mesh = Mesh(
        MeshOptions(
            host="127.0.0.1",
            port=listen_port(),
            state_dir=tmp_path_factory.mktemp("mesh-apis"),
            database_url=None,
            nats_url=None,
            auth_strategy="noauth",
            start_timeout=60.0,
            default_project="demo",
            default_provider="noop",
            api_processes=2,
        )
    )
    mesh.start()
    try:
        yield mesh
    finally:
        stop_mesh(mesh)


def _call(mesh: Mesh, method: str, path: str, body: object = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        mesh.endpoint + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback URL we built
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def test_both_serve_and_every_create_is_published(mesh: Mesh) -> None:
    ports = json.loads((mesh.state / "ports.json").read_text())
    assert grpc_serving(f"127.0.0.1:{ports['api']}") and grpc_serving(f"127.0.0.1:{ports['api-2']}")
    envoy = json.loads((mesh.state / "envoy.json").read_text())
    clusters = {c["name"]: c for c in envoy["static_resources"]["clusters"]}
    for cluster, names in (("api", ("api", "api-2")), ("api_bridge", ("api-bridge", "api-2-bridge"))):
        endpoints = clusters[cluster]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert sorted(e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints) == sorted(
            ports[name] for name in names
        )
    # Envoy runs a worker thread per API process (one thread carried every call in turn).
    argv = Path(f"/proc/{mesh.supervisor.child('envoy').process.pid}/cmdline").read_bytes().split(b"\0")
    assert argv[argv.index(b"--concurrency") + 1] == b"2"
    ids = []
    for _ in range(8):  # spread over both processes: each one's relay publishes what it commits
        status, body = _call(mesh, "POST", "/v2/lbaas/loadbalancers", {"loadbalancer": {"vip_subnet_id": SUBNET}})
        assert status == 201, body
        ids.append(body["loadbalancer"]["id"])
    deadline = time.monotonic() + 60
    while True:
        _, body = _call(mesh, "GET", "/v2/lbaas/loadbalancers?fields=id&fields=provisioning_status")
        states = {lb["id"]: lb["provisioning_status"] for lb in body["loadbalancers"]}
        if all(states.get(i) == "ACTIVE" for i in ids):
            break
        assert time.monotonic() < deadline, f"not every create was carried out: {states}"
        time.sleep(0.2)


def test_a_dead_api_process_costs_no_call(mesh: Mesh) -> None:
    """SIGKILL the first API process (no supervisor restarts it here): every call during the next seconds is
    answered by the other, none gets the edge's 503."""
    victim = mesh.supervisor.child("api").process
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    answers = [_call(mesh, "GET", "/v2/lbaas/loadbalancers")[0] for _ in range(40)]
    assert answers == [200] * 40
    assert Path(mesh.state / "logs" / "api-2.log").exists()
