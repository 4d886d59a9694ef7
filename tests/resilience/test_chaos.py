"""Chaos: every process of the control plane is SIGKILLed in turn, several rounds, while traffic flows through
several VIPs and the API is changing things. Nothing through a VIP may fail, nothing may stay PENDING_*, no create
the API accepted may end in ERROR, and every process must be running again by itself (the supervisor of
``octavia-mesh up``, here from a thread of the test)."""

from __future__ import annotations

import http.client
import http.server
import os
import random
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from support import Rest, start_mesh

from octavia_mesh.cli.mesh import Mesh, grpc_serving, rest_ready
from octavia_mesh.cli.processes import tcp_ready

LBS = "/v2/lbaas/loadbalancers"
ROUNDS = 2
VIPS = 3
#: Every process of the control plane, in the order they are killed.
VICTIMS = ("api", "worker", "health", "housekeeping", "driver-agent", "nats", "envoy")
#: Bounds: a killed process must serve again within this, the whole test within TEST_BUDGET_S.
RECOVER_S = 60.0
TEST_BUDGET_S = 420.0


class Backend(http.server.BaseHTTPRequestHandler):
    token = b""  # our backends answer with it: an answer without it came from someone else's HAProxy

    def do_GET(self) -> None:  # noqa: N802 - http.server's API
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.token)))
        self.end_headers()
        self.wfile.write(self.token)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Traffic:
    """Requests on fresh connections to one VIP, until stopped."""

    address: str
    port: int
    token: bytes
    ok: int = 0
    failures: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(0.02):
            try:
                conn = http.client.HTTPConnection(self.address, self.port, timeout=5)
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read()
                conn.close()
                if response.status == 200 and body == self.token:
                    self.ok += 1
                else:
                    self.failures.append(f"{time.strftime('%X')} HTTP {response.status} {body[:60]!r}")
            except OSError as exc:
                self.failures.append(f"{time.strftime('%X')} {exc!r}")


@pytest.fixture(scope="module")
def chaos_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    # A killed worker's command comes back when JetStream's ack wait ends (60 s by default); shortened here so
    # that the test stays in CI's budget. The worker says it is still busy every ack_wait/3, so long flows are safe.
    env = {"OCTAVIA_MESH_WORKER_ACK_WAIT_S": "5"}
    for mesh in start_mesh(tmp_path_factory, "noauth", "chaos", default_provider="amphora", service_env=env):
        mesh.supervise()
        yield mesh


def _retrying(call: Callable[[], requests.Response], accept: tuple[int, ...], deadline: float) -> requests.Response:
    """Call through the edge until it answers one of ``accept``: the API or the edge may be restarting
    (connection refused, 503), or the load balancer busy with the previous change (409)."""
    while True:
        try:
            response = call()
            if response.status_code in accept:
                return response
            assert response.status_code in (409, 502, 503, 504), f"{response.status_code}: {response.text[:300]}"
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "the API did not take the change in time"
        time.sleep(0.2)


def _tree(name: str, port: int, members: list[int]) -> dict[str, Any]:
    return {
        "loadbalancer": {
            "name": name,
            "vip_subnet_id": "",
            "listeners": [
                {
                    "protocol": "HTTP",
                    "protocol_port": port,
                    "default_pool": {
                        "protocol": "HTTP",
                        "lb_algorithm": "ROUND_ROBIN",
                        "members": [{"address": "127.0.0.1", "protocol_port": m} for m in members],
                    },
                }
            ],
        }
    }


class Churn:
    """Changes through the API while the chaos runs: member weights flip, load balancers are created (each
    whose create was answered 201 is remembered) and deleted again."""

    def __init__(self, rest: Rest, subnet: str, lbs: list[dict[str, Any]], port: int, members: list[int]) -> None:
        self.rest, self.subnet, self.lbs, self.port, self.members = rest, subnet, lbs, port, members
        self.created: list[str] = []
        self.settled: dict[str, str] = {}  # created, then deleted: how its create ended
        self.changes = 0
        self.errors: list[str] = []

    #: Creates in all (each boots an amphora: a process on this 2-core machine), one every CREATE_EVERY changes.
    MAX_CREATES = 8
    CREATE_EVERY = 5

    def run(self, stop: threading.Event) -> None:
        n = 0
        try:
            while not stop.is_set():
                n += 1
                deadline = time.monotonic() + 120
                lb = self.lbs[n % len(self.lbs)]
                listing = f"/v2/lbaas/pools/{lb['pool']}/members"
                members = _retrying(lambda p=listing: self.rest.get(p), (200,), deadline).json()["members"]
                member = members[n % len(members)]
                path = f"{listing}/{member['id']}"
                body = {"member": {"weight": 1 + n % 5}}
                _retrying(lambda p=path, b=body: self.rest.put(p, b), (200, 202), deadline)
                self.changes += 1
                if n % self.CREATE_EVERY == 0 and len(self.created) < self.MAX_CREATES:
                    tree = _tree(f"chaos-new-{n}", self.port, self.members)
                    tree["loadbalancer"]["vip_subnet_id"] = self.subnet
                    created = _retrying(lambda t=tree: self.rest.post(LBS, t), (201,), deadline).json()
                    self.created.append(created["loadbalancer"]["id"])
                    if len(self.created) % 2 == 0:  # every other one is deleted again, once its create settled
                        victim = f"{LBS}/{self.created[-2]}"
                        while (
                            status := _retrying(lambda v=victim: self.rest.get(v), (200,), deadline).json()[
                                "loadbalancer"
                            ]["provisioning_status"]
                        ).startswith("PENDING_"):
                            time.sleep(0.2)
                        self.settled[self.created[-2]] = status
                        _retrying(lambda v=victim: self.rest.delete(v + "?cascade=true"), (204, 404), deadline)
                time.sleep(0.1)
        except Exception as exc:  # reported by the test, not lost in a thread
            self.errors.append(repr(exc))


def _serving(mesh: Mesh, name: str) -> Callable[[], bool]:
    if name == "nats":
        port = int(mesh.supervisor.child("api").env["OCTAVIA_MESH_NATS_URL"].rsplit(":", 1)[1])
        return tcp_ready("127.0.0.1", port)
    if name == "envoy":
        return lambda: rest_ready(mesh.endpoint + "/")
    return lambda: grpc_serving(mesh.grpc_targets[name])


def _wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except OSError:
            pass
        assert time.monotonic() - start < timeout, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.05)


def _amphorae(rest: Rest, lb_id: str) -> list[tuple[str, str]]:
    found = rest.ok("GET", f"/v2/octavia/amphorae?loadbalancer_id={lb_id}")["amphorae"]
    return sorted((a["id"], a["status"]) for a in found)


def _pending(rest: Rest, lb_id: str) -> list[str]:
    response = rest.get(f"{LBS}/{lb_id}/status")
    if response.status_code == 404:
        return []
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if str(node.get("provisioning_status", "")).startswith("PENDING_"):
                found.append(f"{node.get('id')}: {node['provisioning_status']}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(response.json())
    return found


@pytest.mark.timeout(TEST_BUDGET_S + 240)  # the budget, then the settling and the checks
def test_killing_every_control_plane_process_in_turn_fails_nothing(chaos_mesh: Mesh) -> None:
    began = time.monotonic()
    rest = Rest(chaos_mesh.endpoint, {"X-Project-Id": "chaos"})
    subnet = chaos_mesh.local_subnet()
    token = secrets.token_hex(8).encode()
    Backend.token = token
    backends = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend) for _ in range(2)]
    for backend in backends:
        threading.Thread(target=backend.serve_forever, daemon=True).start()
    ports = [b.server_address[1] for b in backends]
    # A listener port of our own: other meshes on this machine may hand out the same VIP addresses.
    port = random.randrange(20000, 30000)  # noqa: S311
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        lbs = []
        for n in range(VIPS):
            body = _tree(f"chaos-{n}", port, ports)
            body["loadbalancer"]["vip_subnet_id"] = subnet
            lbs.append(rest.ok("POST", LBS, body)["loadbalancer"])
        for lb in lbs:
            rest.wait_lb_active(lb["id"])
            lb["pool"] = rest.ok("GET", f"/v2/lbaas/pools?loadbalancer_id={lb['id']}")["pools"][0]["id"]
        amphorae = {lb["id"]: _amphorae(rest, lb["id"]) for lb in lbs}
        traffic = [Traffic(lb["vip_address"], port, token) for lb in lbs]
        churn = Churn(rest, subnet, lbs, port, ports)
        threads = [threading.Thread(target=t.run, args=(stop,), daemon=True) for t in traffic]
        threads.append(threading.Thread(target=churn.run, args=(stop,), daemon=True))
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        assert all(t.ok for t in traffic), "no traffic before the chaos began"

        recoveries: dict[str, list[float]] = {name: [] for name in VICTIMS}
        for _ in range(ROUNDS):
            for name in VICTIMS:
                child = chaos_mesh.supervisor.child(name)
                os.kill(child.process.pid, signal.SIGKILL)
                _wait(lambda c=child: chaos_mesh.supervisor.child(c.name) is not c, RECOVER_S, f"{name} restarted")
                recoveries[name].append(_wait(_serving(chaos_mesh, name), RECOVER_S, f"{name} to serve again"))
                print(f"{time.monotonic() - began:6.1f}s {name} serves again after {recoveries[name][-1]:.1f}s")
                assert not churn.errors, churn.errors
                assert time.monotonic() - began < TEST_BUDGET_S, "the chaos took too long"
        print("\nserving again after SIGKILL (s):", {k: [round(x, 1) for x in v] for k, v in recoveries.items()})
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(150)
        assert not churn.errors, churn.errors
        print(
            f"requests through the VIPs: {[t.ok for t in traffic]}; API changes: {churn.changes}; "
            f"creates: {len(churn.created)}"
        )
        failures = [f for t in traffic for f in t.failures]
        assert failures == [], f"{len(failures)} requests through a VIP failed: {failures[:10]}"

        # Every change settles: nothing PENDING_*, and no create the API accepted ends in ERROR.
        everything = [lb["id"] for lb in lbs] + churn.created
        deadline = time.monotonic() + 120
        while stuck := [p for lb_id in everything for p in _pending(rest, lb_id)]:
            assert time.monotonic() < deadline, f"stuck in PENDING_*: {stuck}"
            time.sleep(0.5)
        statuses = {lb_id: rest.get(f"{LBS}/{lb_id}") for lb_id in everything}
        errors = {
            lb_id: r.json()["loadbalancer"]["provisioning_status"]
            for lb_id, r in statuses.items()
            if r.status_code == 200 and r.json()["loadbalancer"]["provisioning_status"] not in ("ACTIVE", "DELETED")
        }
        errors |= {lb_id: status for lb_id, status in churn.settled.items() if status != "ACTIVE"}
        assert errors == {}, f"load balancers that did not end ACTIVE: {errors}"
        # No kill made anyone rebuild an amphora: the same ones serve (adopted by every restarted service).
        assert {lb["id"]: _amphorae(rest, lb["id"]) for lb in lbs} == amphorae
        # Every process runs again, started by the supervisor, none given up.
        for name in VICTIMS:
            child = chaos_mesh.supervisor.child(name)
            assert child.process.poll() is None and not child.gave_up and child.restarts == ROUNDS, name
            assert _serving(chaos_mesh, name)(), f"{name} does not serve"
    finally:
        stop.set()
        for backend in backends:
            backend.shutdown()
            backend.server_close()
