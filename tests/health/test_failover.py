"""Automatic and admin failover on a whole mesh: real amphorae, real heartbeats, real traffic through the VIP.

* a killed amphora (its agent and HAProxy, SIGKILL) is detected from its broken heartbeat stream, well within
  the heartbeat timeout, and replaced by the worker's failover flow: the load balancer is ACTIVE/ONLINE and
  serving again through the same VIP, and the new amphora reports heartbeats;
* restarting the health service (also after an outage longer than the timeout) or NATS fails nothing over;
* too many silent amphorae at once (agents frozen with SIGSTOP: HAProxy keeps serving, heartbeats stop)
  open the circuit breaker, which fails nothing over, and closes once they report again;
* admin failover through both API calls replaces the amphora while a client keeps sending requests;
* a worker killed in the middle of a failover flow leaves nothing PENDING_* once it is back.

The module runs its own mesh with short intervals (``ENV``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataplane"))

from dataplane_helpers import (  # noqa: E402
    AMPHORAE,
    LBS,
    Backend,
    amphora_base,
    amphora_home,
    amphorae_of,
    delete_lb,
    get,
    local_subnet,
    processes_mentioning,
    wait_lb,
    wait_until,
)
from support import Rest, mesh_engine, random_vip_in, start_mesh  # noqa: E402

from octavia_mesh.cli.mesh import Mesh, grpc_serving  # noqa: E402
from octavia_mesh.common.commands import Kind, Op  # noqa: E402
from octavia_mesh.common.db.models import AmphoraHealth, ProviderCommand, utcnow  # noqa: E402
from octavia_mesh.health.failover import AUTOMATIC_FAILOVER  # noqa: E402
from octavia_mesh.protos.provider.v1 import commands_pb2  # noqa: E402

TIMEOUT_S = 3.0
SCAN_S = 0.5
GRACE_S = 6.0  # more than an agent's longest reconnect pause (3 s) plus a heartbeat and a flush
MAX_SILENT = 2
ACK_WAIT_S = 3
ENV = {
    "OCTAVIA_MESH_HEALTH_HEARTBEAT_TIMEOUT_S": str(TIMEOUT_S),
    "OCTAVIA_MESH_HEALTH_FAILOVER_SCAN_INTERVAL_S": str(SCAN_S),
    "OCTAVIA_MESH_HEALTH_FAILOVER_STARTUP_GRACE_S": str(GRACE_S),
    "OCTAVIA_MESH_HEALTH_FAILOVER_BREAKER_MAX_SILENT": str(MAX_SILENT),
    "OCTAVIA_MESH_HEALTH_FAILOVER_BREAKER_MAX_SILENT_PERCENT": "0",
    "OCTAVIA_MESH_WORKER_ACK_WAIT_S": str(ACK_WAIT_S),
}
#: From a kill to the failover's claim: the timeout, a scan, a heartbeat flush, and slack for a loaded machine.
DETECT_WITHIN_S = TIMEOUT_S + SCAN_S + 3.0
#: A failover rebuilds one amphora (an agent boots in about a second).
REBUILD_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def fmesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from start_mesh(tmp_path_factory, "noauth", "failover", "amphora", service_env=ENV)


@pytest.fixture(scope="module")
def api(fmesh: Mesh) -> Rest:
    return Rest(fmesh.endpoint)


@pytest.fixture
def backend() -> Iterator[Backend]:
    member = Backend("member0")
    yield member
    member.close()


@pytest.fixture
def created(fmesh: Mesh, api: Rest) -> Iterator[list[str]]:
    """Load balancers a test created: cascade-deleted after it, with every process of the mesh running."""
    ids: list[str] = []
    yield ids
    for name in ("worker", "health", "nats"):
        if fmesh.supervisor.child(name).process.poll() is not None:
            fmesh.supervisor.restart(name)
    for lb_id in ids:
        wait_lb(api, lb_id, timeout=60)
        delete_lb(api, lb_id)


# ------------------------------------------------------------------------------------------- helpers


def make_lb(api: Rest, created: list[str], backend: Backend, port: int, name: str) -> dict[str, Any]:
    tree = {
        "protocol": "HTTP",
        "protocol_port": port,
        "default_pool": {
            "protocol": "HTTP",
            "lb_algorithm": "ROUND_ROBIN",
            "members": [{"address": backend.address, "protocol_port": backend.port}],
        },
    }
    # A random VIP of the mesh's own local subnet (support.claim_vip_cidr): the tests' load balancers rarely
    # reuse an address a deleted one may still hold.
    vip = random_vip_in(api)
    body = {"name": name, "vip_subnet_id": local_subnet(api), "vip_address": vip, "listeners": [tree]}
    lb = api.ok("POST", LBS, {"loadbalancer": body})["loadbalancer"]
    created.append(lb["id"])
    lb = wait_lb(api, lb["id"], timeout=60)
    assert get(lb["vip_address"], port).who == backend.name
    return lb


def the_amphora(api: Rest, lb_id: str) -> str:
    (amphora,) = [a for a in amphorae_of(api, lb_id) if a["status"] == "ALLOCATED"]
    return str(amphora["id"])


def health_rows(mesh: Mesh) -> dict[str, Any]:
    engine = mesh_engine(mesh)
    try:
        with engine.connect() as conn:
            return {r.amphora_id: r for r in conn.execute(select(AmphoraHealth))}
    finally:
        engine.dispose()


def failover_commands(mesh: Mesh) -> list[tuple[commands_pb2.ProviderCommand, Any]]:
    """Every amphora failover command in the outbox (whoever queued it), with the row's creation time."""
    engine = mesh_engine(mesh)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(ProviderCommand.payload, ProviderCommand.created_at)).all()
    finally:
        engine.dispose()
    out = []
    for payload, created_at in rows:
        command = commands_pb2.ProviderCommand.FromString(payload)
        if command.kind == Kind.RESOURCE_KIND_AMPHORA and command.operation == Op.OPERATION_FAILOVER:
            out.append((command, created_at))
    return out


def reporting(mesh: Mesh, amphora_id: str, within_s: float = TIMEOUT_S / 2) -> bool:
    """Whether ``amphora_id`` was heard from in the last ``within_s`` seconds."""
    row = health_rows(mesh).get(amphora_id)
    if row is None:
        return False
    return (utcnow() - row.last_update).total_seconds() < within_s


def armed(mesh: Mesh) -> bool:
    return grpc_serving(mesh.grpc_targets["health"], AUTOMATIC_FAILOVER)


def wait_armed(mesh: Mesh, *amphora_ids: str) -> None:
    """Until every amphora named reports and automatic failover is armed (start-up grace over)."""
    wait_until(
        lambda: all(reporting(mesh, a) for a in amphora_ids),
        30,
        f"heartbeats of {amphora_ids} (do their agents resume streaming after an outage?)",
    )
    wait_until(lambda: armed(mesh), GRACE_S + 30, "automatic failover to be armed")


def restart_health(mesh: Mesh) -> None:
    """Restart the health service and wait until it serves (it imports a lot: seconds on a busy machine)."""
    mesh.supervisor.restart("health")
    wait_until(lambda: grpc_serving(mesh.grpc_targets["health"]), 60, "the health service to serve again")


def kill_amphora(mesh: Mesh, amphora_id: str) -> tuple[float, float]:
    """SIGKILL every process of the amphora: its agent and its HAProxy (master and workers). Returns the moment
    (monotonic, wall clock), read once the processes are found (scanning /proc takes a while on a busy machine),
    right before the signals go."""
    victims = processes_mentioning(str(amphora_home(mesh, amphora_id)))
    assert any("amphora_agent" in cmd for cmd in victims.values()), victims
    assert any("haproxy" in cmd for cmd in victims.values()), victims
    moment = (time.monotonic(), time.time())
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return moment


def agent_pid(mesh: Mesh, amphora_id: str) -> int:
    return int((amphora_home(mesh, amphora_id) / "agent.pid").read_text())


@dataclass
class Traffic:
    """A client sending one request at a time through a VIP (a fresh connection each), recording outcomes."""

    address: str
    port: int
    max_s: float = 120.0
    results: list[tuple[float, bool, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                response = get(self.address, self.port, timeout=1.0)
                self.results.append((time.monotonic(), response.status == 200, response.who))
            except Exception as exc:  # refused, reset, timed out: the VIP did not serve this one
                self.results.append((time.monotonic(), False, type(exc).__name__))
            time.sleep(0.005)

    def first_ok_after(self, moment: float) -> float | None:
        return next((t for t, ok, _ in self.results if t > moment and ok), None)

    def failures(self, since: float = 0.0) -> list[tuple[float, bool, str]]:
        return [r for r in self.results if r[0] >= since and not r[1]]

    def served(self, since: float = 0.0) -> int:
        return sum(1 for t, ok, _ in self.results if t >= since and ok)


def assert_replaced(mesh: Mesh, api: Rest, lb: dict[str, Any], old: str, port: int, backend: Backend) -> str:
    """The load balancer is ACTIVE/ONLINE on one new amphora, serving the same VIP; the old one is gone."""
    current = api.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]
    assert (current["provisioning_status"], current["operating_status"]) == ("ACTIVE", "ONLINE")
    assert current["vip_address"] == lb["vip_address"]
    statuses = api.ok("GET", f"{LBS}/{lb['id']}/status")["statuses"]["loadbalancer"]
    assert [listener["provisioning_status"] for listener in statuses["listeners"]] == ["ACTIVE"]
    new = the_amphora(api, lb["id"])
    assert new != old
    assert all(a["id"] != old for a in api.ok("GET", AMPHORAE)["amphorae"]), "the old amphora is retired"
    assert processes_mentioning(str(amphora_home(mesh, old))) == {}, "nothing of the old amphora runs"
    assert not amphora_home(mesh, old).exists()
    assert get(lb["vip_address"], port).who == backend.name
    wait_until(lambda: reporting(mesh, new), 15, "heartbeats of the new amphora")
    return new


# --------------------------------------------------------------------------------------------- tests


def test_restarting_the_health_service_fails_nothing_over(fmesh: Mesh, api: Rest, backend: Backend, created) -> None:
    """Two restarts: a quick one, and one after an outage longer than the heartbeat timeout (every row is stale
    when the service comes back; the start-up grace lets the streams reconnect first)."""
    lbs = [make_lb(api, created, backend, 8201 + i, f"health-restart-{i}") for i in range(2)]
    amphorae = [the_amphora(api, lb["id"]) for lb in lbs]
    wait_armed(fmesh, *amphorae)
    before = len(failover_commands(fmesh))

    restart_health(fmesh)
    wait_armed(fmesh, *amphorae)
    fmesh.supervisor.kill("health")
    time.sleep(TIMEOUT_S + 2)
    assert not any(reporting(fmesh, a, TIMEOUT_S) for a in amphorae), "the rows went stale meanwhile"
    restart_health(fmesh)
    wait_armed(fmesh, *amphorae)
    time.sleep(TIMEOUT_S + 2 * SCAN_S)  # armed for longer than a timeout: a stale row would be claimed by now

    assert len(failover_commands(fmesh)) == before
    assert [the_amphora(api, lb["id"]) for lb in lbs] == amphorae
    for i, lb in enumerate(lbs):
        assert api.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["provisioning_status"] == "ACTIVE"
        assert get(lb["vip_address"], 8201 + i).who == backend.name


def test_restarting_nats_fails_nothing_over(fmesh: Mesh, api: Rest, backend: Backend, created) -> None:
    lb = make_lb(api, created, backend, 8211, "nats-restart")
    amphora = the_amphora(api, lb["id"])
    wait_armed(fmesh, amphora)
    before = len(failover_commands(fmesh))
    with Traffic(lb["vip_address"], 8211) as traffic:
        started = time.monotonic()
        fmesh.supervisor.restart("nats")
        time.sleep(TIMEOUT_S + 2)
        assert armed(fmesh) and reporting(fmesh, amphora)
    assert traffic.failures() == [] and traffic.served(started) > 0
    assert len(failover_commands(fmesh)) == before
    assert the_amphora(api, lb["id"]) == amphora
    # The control plane works again through the restarted NATS: a change still reaches the amphora.
    listener_id = lb["listeners"][0]["id"]
    api.ok("PUT", f"/v2/lbaas/listeners/{listener_id}", {"listener": {"name": "after-nats"}})
    wait_lb(api, lb["id"])


def test_too_many_silent_amphorae_open_the_breaker_and_it_closes_again(
    fmesh: Mesh, api: Rest, backend: Backend, created
) -> None:
    """Agents frozen with SIGSTOP stop reporting while their HAProxy serves on: what a broken health plane looks
    like from the database. More than MAX_SILENT at once opens the breaker: no failover."""
    lbs = [make_lb(api, created, backend, 8221 + i, f"breaker-{i}") for i in range(MAX_SILENT + 1)]
    amphorae = [the_amphora(api, lb["id"]) for lb in lbs]
    wait_armed(fmesh, *amphorae)
    before = len(failover_commands(fmesh))
    log = fmesh.logs / "health.log"
    log_start = log.stat().st_size
    pids = [agent_pid(fmesh, a) for a in amphorae]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: not armed(fmesh), TIMEOUT_S + 5, "the breaker to open")
        opened = log.read_text()[log_start:]
        assert f"circuit breaker OPEN: {len(amphorae)} of" in opened, opened[-2000:]
        time.sleep(TIMEOUT_S + 4 * SCAN_S)  # every frozen amphora is stale now, and stays unclaimed
        assert not armed(fmesh)
        assert len(failover_commands(fmesh)) == before
        for i, lb in enumerate(lbs):
            assert api.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["provisioning_status"] == "ACTIVE"
            assert get(lb["vip_address"], 8221 + i).who == backend.name, "HAProxy served all along"
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    wait_armed(fmesh, *amphorae)
    assert "circuit breaker closed" in log.read_text()[log_start:]
    time.sleep(TIMEOUT_S + 2 * SCAN_S)
    assert len(failover_commands(fmesh)) == before
    assert [the_amphora(api, lb["id"]) for lb in lbs] == amphorae


def test_a_killed_amphora_is_replaced_behind_the_same_vip(fmesh: Mesh, api: Rest, backend: Backend, created) -> None:
    lb = make_lb(api, created, backend, 8231, "killed")
    old = the_amphora(api, lb["id"])
    wait_armed(fmesh, old)
    before = len(failover_commands(fmesh))
    with Traffic(lb["vip_address"], 8231) as traffic:
        time.sleep(0.3)
        killed_at, killed_wall = kill_amphora(fmesh, old)
        wait_until(lambda: len(failover_commands(fmesh)) > before, DETECT_WITHIN_S + 5, "the failover to be queued")
        wait_until(lambda: traffic.first_ok_after(killed_at + 0.05), REBUILD_WITHIN_S, "the VIP to serve again")
    back = traffic.first_ok_after(killed_at + 0.05) - killed_at
    (command, queued_at) = failover_commands(fmesh)[-1]
    assert (command.resource_id, command.load_balancer_id) == (old, lb["id"])
    detected = queued_at.replace(tzinfo=dt.UTC).timestamp() - killed_wall
    print(f"\nkilled amphora: failover queued {detected:.2f}s after the kill, serving again after {back:.2f}s")
    # Its heartbeat stream broke with no farewell: a loss at once, not after the timeout (loss.py).
    assert detected < 1.0, "detected from the broken stream, well before the heartbeat timeout"
    wait_lb(api, lb["id"], timeout=REBUILD_WITHIN_S)
    assert_replaced(fmesh, api, lb, old, 8231, backend)
    assert len(failover_commands(fmesh)) == before + 1, "one failover, no second one for the same amphora"


@pytest.mark.parametrize("call", ["loadbalancer", "amphora"])
def test_admin_failover_under_traffic_replaces_the_amphora(
    fmesh: Mesh, api: Rest, backend: Backend, created, call: str
) -> None:
    port = 8241 if call == "loadbalancer" else 8242
    lb = make_lb(api, created, backend, port, f"admin-{call}")
    old = the_amphora(api, lb["id"])
    path = f"{LBS}/{lb['id']}/failover" if call == "loadbalancer" else f"{AMPHORAE}/{old}/failover"
    with Traffic(lb["vip_address"], port) as traffic:
        time.sleep(0.3)
        asked = time.monotonic()
        api.ok("PUT", path, status=202)
        wait_lb(api, lb["id"], timeout=REBUILD_WITHIN_S)
        took = time.monotonic() - asked
        time.sleep(0.3)
    failures = traffic.failures(asked)
    print(
        f"\nadmin failover ({call}): ACTIVE after {took:.2f}s; {traffic.served(asked)} served, {len(failures)} failed"
    )
    assert traffic.served(asked) > 0
    # Make before break: the new amphora serves the VIP before the old one stops.
    assert failures == [], failures
    assert_replaced(fmesh, api, lb, old, port, backend)


def test_a_worker_killed_mid_failover_leaves_nothing_pending(fmesh: Mesh, api: Rest, backend: Backend, created) -> None:
    lb = make_lb(api, created, backend, 8251, "worker-killed")
    old = the_amphora(api, lb["id"])
    wait_armed(fmesh, old)
    held: list[int] = []

    def hold(amphora_id: str) -> bool:
        """SIGSTOP an amphora's processes until the worker is dead: a flow that reaches it then waits on its
        agent, so the kill lands mid-failover however fast the rest of it is (it takes a fraction of a second)."""
        pids = processes_mentioning(amphora_id)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        held.extend(pids)
        return bool(pids)

    def replacement_booting() -> str | None:
        for amphora in amphorae_of(api, lb["id"]):
            if amphora["id"] != old and hold(amphora["id"]):
                return str(amphora["id"])
        return None

    try:
        # The spares too: the failover takes one whose agent already runs, which a poll would find too late.
        for amphora in api.ok("GET", AMPHORAE)["amphorae"]:
            if not amphora["loadbalancer_id"]:
                hold(amphora["id"])
        kill_amphora(fmesh, old)
        new = wait_until(replacement_booting, DETECT_WITHIN_S + 20, "the replacement to boot", interval=0.005)
        fmesh.supervisor.kill("worker")
        status = api.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["provisioning_status"]
    finally:
        for pid in held:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    if status != "PENDING_UPDATE":
        pytest.fail(f"the failover finished ({status}) before the worker was killed: the test saw no crash")
    fmesh.supervisor.restart("worker")
    wait_lb(api, lb["id"], timeout=ACK_WAIT_S + REBUILD_WITHIN_S)
    assert assert_replaced(fmesh, api, lb, old, 8251, backend) == new, "the flow resumed on the same replacement"
    statuses = api.ok("GET", f"{LBS}/{lb['id']}/status")["statuses"]["loadbalancer"]
    assert statuses["provisioning_status"] == "ACTIVE"
    # Spare amphorae (no load balancer: READY, or being booted by the pool, which retires any a killed worker left
    # half-booted) are the pool's, not this flow's.
    amphorae = api.ok("GET", AMPHORAE)["amphorae"]
    stuck = [(a["id"], a["status"]) for a in amphorae if a["loadbalancer_id"] and a["status"] != "ALLOCATED"]
    assert stuck == []
    homes = {p.name for p in amphora_base(fmesh).iterdir() if p.is_dir()}
    live = {a["id"].replace("-", "")[:12] for a in api.ok("GET", AMPHORAE)["amphorae"]}
    assert homes <= live, f"directories of no live amphora: {homes - live}"
