"""Sub-second healing and creation on a whole mesh: real amphorae, real heartbeat streams, traffic through the VIP.

* a killed amphora (agent and HAProxy, SIGKILL): its heartbeat stream breaks, the failover is queued at once and
  the load balancer serves again from a spare amphora within a second;
* a hung amphora (agent and HAProxy, SIGSTOP): its open stream goes quiet, it is failed over within three
  seconds and fenced: none of its (stopped) processes is left;
* ten amphorae killed at once: the circuit breaker opens on their broken streams before anything is claimed,
  and nothing storms;
* a burst of creates larger than the pool: the first take spares, the rest boot, every one serves, and the pool
  refills.

The module runs its own mesh with the default detection settings and a pool of ``POOL`` spares.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataplane"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataplane_helpers import (  # noqa: E402
    LBS,
    Backend,
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
from test_failover import Traffic, armed, failover_commands, reporting  # noqa: E402

from octavia_mesh.cli.mesh import Mesh  # noqa: E402
from octavia_mesh.common.db.models import Amphora  # noqa: E402

POOL = 2
GRACE_S = 6.0
ENV = {
    "OCTAVIA_MESH_HEALTH_FAILOVER_STARTUP_GRACE_S": str(GRACE_S),
    "OCTAVIA_MESH_WORKER_SPARE_AMPHORAE": str(POOL),
}
#: Issue 9's targets: a dead amphora serves again within 1 s, a hung one within 3 s. What the health service
#: does is bounded here (detection, well inside them); the rebuild's share is the worker's CPU, which a machine
#: shared by many meshes does not guarantee, so the tests check that it took a spare (no boot) and print the
#: outage, and bench/failover_bench.py measures it (p50/p99) against an admin failover of the same run.
DEAD_DETECTED_WITHIN_S = 0.6  # the loss at once, plus loss_confirm_s (0.2 s), a scan and a commit
HUNG_DETECTED_WITHIN_S = 2.5  # stream_silence_s (1.5 s), plus the same
#: A rebuild from a spare, on a loaded machine (a boot takes 4 to 15 s at a load average of 20).
REBUILD_FROM_SPARE_S = 3.0


@pytest.fixture(scope="module")
def hmesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from start_mesh(tmp_path_factory, "noauth", "healing", "amphora", service_env=ENV)


@pytest.fixture(scope="module")
def api(hmesh: Mesh) -> Rest:
    return Rest(hmesh.endpoint)


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    member = Backend("member0")
    yield member
    member.close()


@pytest.fixture
def created(hmesh: Mesh, api: Rest) -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    for lb_id in ids:
        with contextlib.suppress(Exception):
            wait_lb(api, lb_id, timeout=60)
            delete_lb(api, lb_id)


def spares(mesh: Mesh) -> int:
    engine = mesh_engine(mesh)
    try:
        with engine.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count())
                    .select_from(Amphora)
                    .where(Amphora.status == "READY", Amphora.load_balancer_id.is_(None))
                )
                or 0
            )
    finally:
        engine.dispose()


def from_pool(mesh: Mesh, amphora_id: str) -> bool:
    """Whether a flow took ``amphora_id`` from the pool of spares (flows/spares.py marks it)."""
    engine = mesh_engine(mesh)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(Amphora.assigned_by).where(Amphora.id == amphora_id)) is not None
    finally:
        engine.dispose()


def wait_pool_full(mesh: Mesh) -> None:
    wait_until(lambda: spares(mesh) >= POOL, 90, f"{POOL} spare amphorae")


def body(api: Rest, backend: Backend, port: int, name: str) -> dict[str, Any]:
    vip = random_vip_in(api)  # of the mesh's own VIP subnet (support.claim_vip_cidr)
    listener = {
        "protocol": "HTTP",
        "protocol_port": port,
        "default_pool": {
            "protocol": "HTTP",
            "lb_algorithm": "ROUND_ROBIN",
            "members": [{"address": backend.address, "protocol_port": backend.port}],
        },
    }
    return {"name": name, "vip_subnet_id": local_subnet(api), "vip_address": vip, "listeners": [listener]}


def make_lb(api: Rest, created: list[str], backend: Backend, port: int, name: str) -> dict[str, Any]:
    lb = api.ok("POST", LBS, {"loadbalancer": body(api, backend, port, name)})["loadbalancer"]
    created.append(lb["id"])
    lb = wait_lb(api, lb["id"], timeout=60)
    assert get(lb["vip_address"], port).who == backend.name
    return lb


def the_amphora(api: Rest, lb_id: str) -> str:
    (amphora,) = [a for a in amphorae_of(api, lb_id) if a["status"] == "ALLOCATED"]
    return str(amphora["id"])


def signal_amphora(mesh: Mesh, amphora_id: str, signum: int) -> tuple[list[int], float, float]:
    """Send ``signum`` to every process of the amphora (agent, HAProxy master and workers); their pids and the
    moment (monotonic, wall clock) right before the signals go."""
    victims = processes_mentioning(str(amphora_home(mesh, amphora_id)))
    assert any("amphora_agent" in cmd for cmd in victims.values()), victims
    assert any("haproxy" in cmd for cmd in victims.values()), victims
    moment = (time.monotonic(), time.time())
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
    return list(victims), *moment


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def queued_after(mesh: Mesh, before: int, wall: float) -> float:
    (_, queued_at) = failover_commands(mesh)[before]
    return queued_at.replace(tzinfo=dt.UTC).timestamp() - wall


def test_a_killed_amphora_serves_again_within_a_second(hmesh: Mesh, api: Rest, backend: Backend, created) -> None:
    lb = make_lb(api, created, backend, 8301, "fast-killed")
    old = the_amphora(api, lb["id"])
    wait_pool_full(hmesh)
    wait_until(lambda: reporting(hmesh, old, 1.0) and armed(hmesh), GRACE_S + 30, "failover armed")
    before = len(failover_commands(hmesh))
    with Traffic(lb["vip_address"], 8301) as traffic:
        time.sleep(0.3)
        _, killed_at, killed_wall = signal_amphora(hmesh, old, signal.SIGKILL)
        wait_until(lambda: traffic.first_ok_after(killed_at + 0.02), 30, "the VIP to serve again", interval=0.01)
    back = traffic.first_ok_after(killed_at + 0.02) - killed_at
    detected = queued_after(hmesh, before, killed_wall)
    print(f"\nkilled amphora: failover queued after {detected:.2f}s, serving again after {back:.2f}s")
    assert detected < DEAD_DETECTED_WITHIN_S, "a broken stream is a loss at once (plus the confirmation window)"
    assert back - detected < REBUILD_FROM_SPARE_S
    wait_lb(api, lb["id"], timeout=30)
    new = the_amphora(api, lb["id"])
    assert from_pool(hmesh, new), "rebuilt from a spare, not booted"
    assert new != old and processes_mentioning(str(amphora_home(hmesh, old))) == {}
    assert len(failover_commands(hmesh)) == before + 1
    wait_until(lambda: reporting(hmesh, new, 1.0), 10, "heartbeats of the new amphora (a former spare)")


def test_a_hung_amphora_is_fenced_and_replaced_within_three_seconds(
    hmesh: Mesh, api: Rest, backend: Backend, created
) -> None:
    lb = make_lb(api, created, backend, 8302, "fast-hung")
    old = the_amphora(api, lb["id"])
    wait_pool_full(hmesh)
    wait_until(lambda: reporting(hmesh, old, 1.0) and armed(hmesh), GRACE_S + 30, "failover armed")
    before = len(failover_commands(hmesh))
    with Traffic(lb["vip_address"], 8302) as traffic:
        time.sleep(0.3)
        pids, stopped_at, stopped_wall = signal_amphora(hmesh, old, signal.SIGSTOP)
        try:
            wait_until(
                lambda: len(failover_commands(hmesh)) > before and traffic.served(time.monotonic() - 0.05) > 0,
                30,
                "the failover and the VIP serving again",
                interval=0.01,
            )
            wait_until(lambda: not any(alive(p) for p in pids), 10, "the hung amphora to be fenced")
            fenced = time.monotonic() - stopped_at
        finally:
            for pid in pids:  # so that nothing stays stopped if the fence failed
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        time.sleep(1.6)  # longer than the client's 1 s timeout: requests sent to the hung HAProxy have ended
    # Served again for good: the first success after the last failure (one request may still get through
    # right after the SIGSTOP, if HAProxy had read it already).
    last_failure = max(t for t, ok, _ in traffic.results if not ok)
    back = next(t for t, ok, _ in traffic.results if t > last_failure and ok) - stopped_at
    settled = [r for r in traffic.results if r[0] > stopped_at + fenced + 1.1]
    detected = queued_after(hmesh, before, stopped_wall)
    print(f"\nhung amphora: queued after {detected:.2f}s, fenced after {fenced:.2f}s, serving again after {back:.2f}s")
    assert detected < HUNG_DETECTED_WITHIN_S, "a quiet stream is a loss after stream_silence_s"
    assert back - detected < REBUILD_FROM_SPARE_S
    assert settled and all(ok for _, ok, _ in settled), "once fenced, every request is served (none queued on it)"
    assert processes_mentioning(str(amphora_home(hmesh, old))) == {}, "nothing of the hung amphora runs"
    wait_lb(api, lb["id"], timeout=30)
    new = the_amphora(api, lb["id"])
    assert new != old and from_pool(hmesh, new)


def test_ten_amphorae_killed_at_once_open_the_breaker_and_nothing_storms(
    hmesh: Mesh, api: Rest, backend: Backend, created
) -> None:
    """Their streams break within milliseconds of each other: every loss reaches the database before the first
    is old enough to be claimed, so the breaker (more than 50 % of those monitored) sees them all at once."""
    lbs = [make_lb(api, created, backend, 8310 + i, f"storm-{i}") for i in range(10)]
    amphorae = [the_amphora(api, lb["id"]) for lb in lbs]
    wait_until(lambda: all(reporting(hmesh, a, 1.0) for a in amphorae) and armed(hmesh), GRACE_S + 60, "armed")
    log = hmesh.logs / "health.log"
    log_start = log.stat().st_size
    before = len(failover_commands(hmesh))
    victims: dict[int, str] = {}
    for amphora_id in amphorae:
        victims.update(processes_mentioning(str(amphora_home(hmesh, amphora_id))))
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not armed(hmesh), 5, "the breaker to open")
    time.sleep(3.0)  # several scans, and past the heartbeat timeout's half
    opened = log.read_text()[log_start:]
    assert "circuit breaker OPEN: 10 of" in opened, opened[-3000:]
    assert len(failover_commands(hmesh)) == before, "not one failover while the breaker is open"
    assert not armed(hmesh)


def test_a_burst_of_creates_larger_than_the_pool_all_serve_and_the_pool_refills(
    hmesh: Mesh, api: Rest, backend: Backend, created
) -> None:
    wait_pool_full(hmesh)
    burst = POOL + 2
    asked = time.monotonic()
    ids = []
    for i in range(burst):
        lb = api.ok("POST", LBS, {"loadbalancer": body(api, backend, 8330 + i, f"burst-{i}")})["loadbalancer"]
        created.append(lb["id"])
        ids.append(lb["id"])
    lbs = [wait_lb(api, lb_id, timeout=90) for lb_id in ids]
    took = time.monotonic() - asked
    for i, lb in enumerate(lbs):
        assert lb["provisioning_status"] == "ACTIVE"
        assert get(lb["vip_address"], 8330 + i).who == backend.name
    engine = mesh_engine(hmesh)
    try:
        with engine.connect() as conn:
            taken = conn.scalar(
                select(func.count())
                .select_from(Amphora)
                .where(Amphora.load_balancer_id.in_(ids), Amphora.assigned_by.is_not(None))
            )
    finally:
        engine.dispose()
    print(f"\nburst of {burst} creates: all ACTIVE after {took:.2f}s, {taken} from the pool")
    assert 1 <= taken <= burst
    wait_pool_full(hmesh)
