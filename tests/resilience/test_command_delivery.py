"""No change is lost or stuck in PENDING_* when a process of the mesh dies (real processes, real NATS)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from support import PROJECT, SUBNET, Rest

from octavia_mesh.cli.mesh import Mesh

LBS = "/v2/lbaas/loadbalancers"


@pytest.fixture(scope="module")
def rest_own(own_mesh: Mesh) -> Rest:
    return Rest(own_mesh.endpoint)


def _create(rest: Rest, name: str) -> str:
    body = {"loadbalancer": {"name": name, "vip_subnet_id": SUBNET, "project_id": PROJECT}}
    return rest.ok("POST", LBS, body)["loadbalancer"]["id"]


def _wait_api(rest: Rest, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if rest.get("/").status_code == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the API did not come back")


def test_worker_down_then_back(own_mesh: Mesh, rest_own: Rest) -> None:
    own_mesh.supervisor.kill("worker")
    lb_id = _create(rest_own, "while-worker-down")
    time.sleep(1.0)
    assert rest_own.ok("GET", f"{LBS}/{lb_id}")["loadbalancer"]["provisioning_status"] == "PENDING_CREATE"
    own_mesh.supervisor.restart("worker")
    rest_own.wait_lb_active(lb_id)


def test_api_killed_before_publishing(own_mesh: Mesh, rest_own: Rest) -> None:
    """The API commits the change and its command, then dies before NATS took the command."""
    nats = own_mesh.supervisor.child("nats")
    os.kill(nats.process.pid, signal.SIGSTOP)  # NATS hangs: the relay cannot publish
    try:
        lb_id = _create(rest_own, "api-dies-before-publish")
        own_mesh.supervisor.kill("api")
    finally:
        os.kill(nats.process.pid, signal.SIGCONT)
    own_mesh.supervisor.restart("api")
    _wait_api(rest_own)
    assert rest_own.wait_lb_active(lb_id)["provisioning_status"] == "ACTIVE"


def test_nats_restart_loses_nothing(own_mesh: Mesh, rest_own: Rest) -> None:
    own_mesh.supervisor.kill("nats")
    lb_id = _create(rest_own, "while-nats-down")
    own_mesh.supervisor.restart("nats")
    assert rest_own.wait_lb_active(lb_id)["provisioning_status"] == "ACTIVE"
