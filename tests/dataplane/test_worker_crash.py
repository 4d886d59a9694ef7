"""A worker killed (SIGKILL) while it builds a load balancer: once restarted, the load balancer ends ACTIVE
and serves, nothing stays PENDING_*, and no amphora process is left without its load balancer.

This module runs its own mesh (it kills the worker), with JetStream redelivering an unacknowledged command
after ``ACK_WAIT_S`` instead of the default 60 s, so that a command the dead worker held comes back soon.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dataplane_helpers import (
    AMPHORAE,
    LBS,
    amphora_base,
    amphora_home,
    amphorae_of,
    delete_lb,
    get,
    local_subnet,
    processes_mentioning,
    run_mesh,
    wait_lb,
    wait_until,
    who,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from support import Rest, mesh_engine

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.common.db import models
from octavia_mesh.worker.deps import AmphoraDeps
from octavia_mesh.worker.flows.engine import FlowContext
from octavia_mesh.worker.tasks import CreateAmphora

ACK_WAIT_S = 3
#: A redelivered command waits for ACK_WAIT_S, then the flow finishes (an agent boots in about a second).
RECOVERY_S = ACK_WAIT_S + 30


@pytest.fixture(scope="module")
def crash_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OCTAVIA_MESH_WORKER_ACK_WAIT_S", str(ACK_WAIT_S))
        # No spare pool: these tests kill the worker inside the create flow's own boot steps, which a create that
        # takes a spare skips (the pool has tests of its own: test_fast_healing.py, test_spare_take.py).
        patch.setenv("OCTAVIA_MESH_WORKER_SPARE_AMPHORAE", "0")
        yield from run_mesh(tmp_path_factory, "crash")


@pytest.fixture(scope="module")
def crash_api(crash_mesh: Mesh) -> Rest:
    return Rest(crash_mesh.endpoint)


@pytest.fixture
def created(crash_mesh: Mesh, crash_api: Rest) -> Iterator[list[str]]:
    """Load balancers a test created: cascade-deleted after it (with a worker running)."""
    ids: list[str] = []
    yield ids
    if crash_mesh.supervisor.child("worker").process.poll() is not None:
        crash_mesh.supervisor.restart("worker")
    for lb_id in ids:
        delete_lb(crash_api, lb_id)


def _tree(member: Any, port: int) -> dict[str, Any]:
    return {
        "protocol": "HTTP",
        "protocol_port": port,
        "default_pool": {
            "protocol": "HTTP",
            "lb_algorithm": "ROUND_ROBIN",
            "members": [{"address": member.address, "protocol_port": member.port}],
        },
    }


def _pending(value: Any, path: str = "") -> list[str]:
    """Every object of a /status tree whose provisioning_status is not ACTIVE."""
    out = []
    if isinstance(value, dict):
        if value.get("provisioning_status") not in (None, "ACTIVE"):
            out.append(f"{path}/{value.get('id')}: {value['provisioning_status']}")
        for key, item in value.items():
            out += _pending(item, f"{path}/{key}")
    elif isinstance(value, list):
        for item in value:
            out += _pending(item, path)
    return out


def _assert_settled(mesh: Mesh, api: Rest, lb_id: str) -> None:
    """Nothing of the load balancer is pending; every amphora process and directory has a live amphora."""
    assert _pending(api.ok("GET", f"{LBS}/{lb_id}/status")["statuses"]) == []
    amphorae = api.ok("GET", AMPHORAE)["amphorae"]
    stuck = [(a["id"], a["status"]) for a in amphorae if a["status"] not in ("ALLOCATED", "DELETED")]
    assert stuck == [], f"amphorae left half-built: {stuck}"
    allocated = {a["id"] for a in amphorae if a["status"] == "ALLOCATED"}
    homes = {str(amphora_home(mesh, amphora_id)): amphora_id for amphora_id in allocated}
    processes = processes_mentioning(str(amphora_base(mesh)))
    orphans = {pid: cmd for pid, cmd in processes.items() if not any(home in cmd for home in homes)}
    assert orphans == {}, f"processes of no live amphora: {orphans}"
    agents = sorted(cmd.split("--amphora-id ")[1].split()[0] for cmd in processes.values() if "amphora_agent" in cmd)
    assert agents == sorted(allocated), "one agent per live amphora"
    directories = {p.name for p in amphora_base(mesh).iterdir()}
    assert directories == {amphora_id.replace("-", "")[:12] for amphora_id in allocated}


def _recover(mesh: Mesh, api: Rest, lb_id: str) -> float:
    """Restart the worker; seconds until the load balancer is ACTIVE."""
    mesh.supervisor.restart("worker")
    restarted = time.monotonic()
    wait_lb(api, lb_id, timeout=RECOVERY_S)
    return time.monotonic() - restarted


def test_worker_stops_promptly_on_sigterm(crash_mesh: Mesh, crash_api: Rest, created) -> None:
    """First in the module, on the worker the mesh started (a restarted one does not always hang)."""
    body = {"name": "before-sigterm", "vip_subnet_id": local_subnet(crash_api)}
    lb = crash_api.ok("POST", LBS, {"loadbalancer": body})["loadbalancer"]
    created.append(lb["id"])
    wait_lb(crash_api, lb["id"], timeout=60)
    worker = crash_mesh.supervisor.child("worker").process
    os.kill(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker still runs 5 s after SIGTERM")
    finally:
        if worker.poll() is None:
            crash_mesh.supervisor.kill("worker")
        crash_mesh.supervisor.restart("worker")


def test_killed_right_after_the_create_was_accepted(crash_mesh: Mesh, crash_api: Rest, backends, created) -> None:
    (member,) = backends(1)
    body = {"name": "crash-at-once", "vip_subnet_id": local_subnet(crash_api), "listeners": [_tree(member, 8101)]}
    lb = crash_api.ok("POST", LBS, {"loadbalancer": body})["loadbalancer"]
    crash_mesh.supervisor.kill("worker")
    created.append(lb["id"])
    assert crash_api.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["provisioning_status"] == "PENDING_CREATE"
    took = _recover(crash_mesh, crash_api, lb["id"])
    print(f"\nkilled at once: ACTIVE {took:.2f}s after the restart")
    assert get(lb["vip_address"], 8101).who == "member0"
    _assert_settled(crash_mesh, crash_api, lb["id"])
    assert [a["status"] for a in amphorae_of(crash_api, lb["id"])].count("ALLOCATED") == 1


def test_killed_while_the_amphora_boots(crash_mesh: Mesh, crash_api: Rest, backends, created) -> None:
    """The kill lands mid-flow (the agent runs, the configuration is not pushed yet): the redelivered
    command resumes the flow on the same amphora instead of booting another."""
    (member,) = backends(1)
    body = {"name": "crash-mid-flow", "vip_subnet_id": local_subnet(crash_api), "listeners": [_tree(member, 8102)]}
    lb = crash_api.ok("POST", LBS, {"loadbalancer": body})["loadbalancer"]
    created.append(lb["id"])

    def booted_amphora() -> str | None:
        for amphora in amphorae_of(crash_api, lb["id"]):
            if processes_mentioning(amphora["id"]):
                return str(amphora["id"])
        return None

    amphora_id = wait_until(booted_amphora, 20, "the amphora's agent to start", interval=0.005)
    crash_mesh.supervisor.kill("worker")
    status = crash_api.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["provisioning_status"]
    if status != "PENDING_CREATE":
        pytest.fail(f"the worker finished ({status}) before it was killed: the test saw no crash")
    assert processes_mentioning(amphora_id), "the amphora died with the worker"
    took = _recover(crash_mesh, crash_api, lb["id"])
    print(f"\nkilled mid-flow: ACTIVE {took:.2f}s after the restart")
    assert get(lb["vip_address"], 8102).who == "member0"
    _assert_settled(crash_mesh, crash_api, lb["id"])
    assert [(a["id"], a["status"]) for a in amphorae_of(crash_api, lb["id"])] == [(amphora_id, "ALLOCATED")]


def test_resumed_after_its_amphora_was_lost_too(crash_mesh: Mesh, crash_api: Rest, backends, created) -> None:
    """The worker dies after the flow recorded the amphora as booted, and the amphora goes too (the machine or
    ``octavia-mesh up`` was restarted meanwhile). The resumed flow re-checks what it did, boots the amphora
    again and ends ACTIVE: it used to wait for the lost instance and end a create the API accepted in ERROR
    ("wait-for-agent failed: amphora ... has no running instance")."""
    (member,) = backends(1)
    body = {"name": "crash-lost-amphora", "vip_subnet_id": local_subnet(crash_api), "listeners": [_tree(member, 8104)]}
    lb = crash_api.ok("POST", LBS, {"loadbalancer": body})["loadbalancer"]
    created.append(lb["id"])
    engine = mesh_engine(crash_mesh)

    def booted() -> str | None:
        """The amphora, once the flow's progress says it is booted (take-spare, a no-op here, create-amphora and
        boot-amphora done). From the database alone: the flow goes on in about a second (wait-for-agent, then
        configuration), and a poll through the API as well made this test miss that window under CI's load."""
        with engine.connect() as conn:
            rows = conn.execute(
                select(models.FlowProgress.store).where(
                    models.FlowProgress.flow == "create-load-balancer", models.FlowProgress.done_steps >= 3
                )
            ).scalars()
            ids = set(
                conn.execute(select(models.Amphora.id).where(models.Amphora.load_balancer_id == lb["id"])).scalars()
            )
            return next((store["amphora_id"] for store in rows if store.get("amphora_id") in ids), None)

    try:
        amphora_id = wait_until(booted, 30, "the flow to record the amphora booted", interval=0.005)
    finally:
        engine.dispose()
    crash_mesh.supervisor.kill("worker")
    status = crash_api.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["provisioning_status"]
    if status != "PENDING_CREATE":
        pytest.fail(f"the worker finished ({status}) before it was killed: the test saw no crash")
    pid = int((amphora_home(crash_mesh, amphora_id) / "agent.pid").read_text())
    os.killpg(pid, signal.SIGKILL)  # the instance is lost while no worker runs
    wait_until(lambda: not processes_mentioning(amphora_id), 10, "the amphora to be gone")
    took = _recover(crash_mesh, crash_api, lb["id"])
    print(f"\nkilled mid-flow, amphora lost: ACTIVE {took:.2f}s after the restart")
    assert get(lb["vip_address"], 8104).who == "member0"
    _assert_settled(crash_mesh, crash_api, lb["id"])
    assert [(a["id"], a["status"]) for a in amphorae_of(crash_api, lb["id"])] == [(amphora_id, "ALLOCATED")]


def test_killed_during_a_change(crash_mesh: Mesh, crash_api: Rest, backends, created) -> None:
    (first, second) = backends(2)
    body = {"name": "crash-on-change", "vip_subnet_id": local_subnet(crash_api), "listeners": [_tree(first, 8103)]}
    lb = crash_api.ok("POST", LBS, {"loadbalancer": body})["loadbalancer"]
    created.append(lb["id"])
    lb = wait_lb(crash_api, lb["id"], timeout=60)
    (pool,) = lb["pools"]
    member = {"member": {"address": second.address, "protocol_port": second.port}}
    crash_api.ok("POST", f"/v2/lbaas/pools/{pool['id']}/members", member)
    crash_mesh.supervisor.kill("worker")
    took = _recover(crash_mesh, crash_api, lb["id"])
    print(f"\nkilled during a change: ACTIVE {took:.2f}s after the restart")
    assert who(lb["vip_address"], 8103, 4) == {"member0": 2, "member1": 2}
    _assert_settled(crash_mesh, crash_api, lb["id"])


async def test_a_rerun_create_amphora_task_finds_its_row(tmp_path: Path) -> None:
    """The window the kills above rarely hit: the worker dies after CreateAmphora added its row but before
    the flow engine saved the task's result. The redelivered command runs the task again, which must find
    that row rather than add a second amphora (left PENDING_CREATE for ever)."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'flows.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(models.Base.metadata.create_all)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        deps = AmphoraDeps(sessions, None, None, None, None, max_connections=1)  # type: ignore[arg-type]
        produced = [
            await CreateAmphora(deps).execute(FlowContext("command-1", "lb-1", "lb-1"))
            for _ in range(2)  # each time with the store a crash left empty
        ]
        async with sessions() as session:
            rows = (await session.execute(select(models.Amphora.id, models.Amphora.status))).all()
        assert produced[0] == produced[1]
        assert [tuple(row) for row in rows] == [(produced[0]["amphora_id"], "PENDING_CREATE")]
    finally:
        await engine.dispose()
