"""Nothing is left in PENDING_*: a change whose command was lost is re-driven, one nobody applies is given up
(its objects go to ERROR), and neither happens before the timeout.

The mesh tests use the real processes with the noop provider (housekeeping's timeout is 4 s there); the
worker is paused (SIGUSR1) to hold changes back, and a lost command is an outbox row deleted from the
database. The last tests run the recovery on a real database with a fixed clock, for the rules on what
counts as progress.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hk_timing import PENDING_TIMEOUT_S
from sqlalchemy import delete, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import PROJECT, SUBNET, Rest, mesh_engine, paused

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.common import commands
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.engine import make_engine, session_factories
from octavia_mesh.common.db.models import FlowProgress, LoadBalancer, ProviderCommand
from octavia_mesh.housekeeping.pending import recover_pending

LBS = "/v2/lbaas/loadbalancers"
LISTENERS = "/v2/lbaas/listeners"


@pytest.fixture(scope="module")
def db(noop_mesh: Mesh) -> Engine:
    engine = mesh_engine(noop_mesh)
    yield engine
    engine.dispose()


def _create_lb(api: Rest, name: str) -> str:
    body = {"loadbalancer": {"name": name, "vip_subnet_id": SUBNET, "project_id": PROJECT}}
    return api.ok("POST", LBS, body)["loadbalancer"]["id"]


def _status(api: Rest, path: str, key: str) -> str:
    response = api.get(path)
    return "DELETED" if response.status_code == 404 else response.json()[key]["provisioning_status"]


def _wait_not_pending(check: Callable[[], list[str]], since: float, timeout: float) -> tuple[list[str], float]:
    """Poll ``check`` (statuses) until none is PENDING_*; returns them and the seconds since ``since``."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = check()
        if not any(s.startswith("PENDING_") for s in statuses):
            return statuses, time.monotonic() - since
        assert time.monotonic() < deadline, f"still pending after {timeout:g}s: {statuses}"
        time.sleep(0.1)


def _lose_commands(db: Engine, lb_id: str) -> None:
    """The change's command is lost: wait until the relay published it, then delete its outbox row."""
    deadline = time.monotonic() + 10
    while True:
        with db.connect() as conn:
            rows = conn.execute(
                text("SELECT published_at FROM provider_command WHERE load_balancer_id = :i AND completed_at IS NULL"),
                {"i": lb_id},
            ).all()
        if rows and all(r[0] is not None for r in rows):
            break
        assert time.monotonic() < deadline, "the change's command was never published"
        time.sleep(0.05)
    with db.begin() as conn:
        conn.execute(delete(ProviderCommand).where(ProviderCommand.load_balancer_id == lb_id))


def _subjects(db: Engine, lb_id: str) -> list[tuple[str, bool]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(ProviderCommand.subject, ProviderCommand.completed_at)
            .where(ProviderCommand.load_balancer_id == lb_id)
            .order_by(ProviderCommand.created_at)
        ).all()
    return [(subject.rsplit(".", 2)[-2] + "." + subject.rsplit(".", 1)[-1], done is not None) for subject, done in rows]


def _completed(db: Engine, lb_id: str) -> list[str]:
    """The load balancer's commands, once all are completed (the worker stamps a command right after the
    transaction that settled its objects)."""
    deadline = time.monotonic() + 10
    while True:
        subjects = _subjects(db, lb_id)
        if all(done for _, done in subjects):
            return [subject for subject, _ in subjects]
        assert time.monotonic() < deadline, f"commands not completed: {subjects}"
        time.sleep(0.05)


def test_a_lost_create_is_redriven_after_the_timeout(noop_mesh: Mesh, noop_api: Rest, db: Engine) -> None:
    with paused(noop_mesh):
        started = time.monotonic()
        lb_id = _create_lb(noop_api, "lost-create")
        _lose_commands(db, lb_id)
    # The worker, resumed, takes the published command and skips it: its outbox row is gone.
    statuses, took = _wait_not_pending(
        lambda: [_status(noop_api, f"{LBS}/{lb_id}", "loadbalancer")], started, PENDING_TIMEOUT_S + 15
    )
    assert statuses == ["ACTIVE"]
    assert took >= PENDING_TIMEOUT_S, f"acted after {took:.1f}s, before the {PENDING_TIMEOUT_S:g}s timeout"
    assert _completed(db, lb_id) == ["load_balancer.create"]  # the re-driven command, applied
    noop_api.ok("DELETE", f"{LBS}/{lb_id}")


def test_a_lost_child_change_is_redriven(noop_mesh: Mesh, noop_api: Rest, db: Engine) -> None:
    lb_id = noop_api.create_lb(name="lost-listener")["id"]
    with paused(noop_mesh):
        started = time.monotonic()
        body = {"listener": {"protocol": "HTTP", "protocol_port": 80, "loadbalancer_id": lb_id}}
        listener_id = noop_api.ok("POST", LISTENERS, body)["listener"]["id"]
        _lose_commands(db, lb_id)
    statuses, took = _wait_not_pending(
        lambda: [
            _status(noop_api, f"{LBS}/{lb_id}", "loadbalancer"),
            _status(noop_api, f"{LISTENERS}/{listener_id}", "listener"),
        ],
        started,
        PENDING_TIMEOUT_S + 15,
    )
    assert statuses == ["ACTIVE", "ACTIVE"] and took >= PENDING_TIMEOUT_S
    assert _completed(db, lb_id)[-1] == "load_balancer.update"  # the whole load balancer, re-applied
    noop_api.ok("DELETE", f"{LBS}/{lb_id}?cascade=true")


def test_changes_nobody_applies_are_given_up(noop_mesh: Mesh, noop_api: Rest, db: Engine) -> None:
    child_lb, updated_lb, deleted_lb = (noop_api.create_lb(name=n)["id"] for n in ("child", "updated", "deleted"))
    with paused(noop_mesh):
        started = time.monotonic()
        created_lb = _create_lb(noop_api, "never-created")
        body = {"listener": {"protocol": "HTTP", "protocol_port": 81, "loadbalancer_id": child_lb}}
        listener_id = noop_api.ok("POST", LISTENERS, body)["listener"]["id"]
        noop_api.ok("PUT", f"{LBS}/{updated_lb}", {"loadbalancer": {"name": "renamed"}})
        noop_api.ok("DELETE", f"{LBS}/{deleted_lb}")
        paths = [
            (f"{LBS}/{created_lb}", "loadbalancer"),
            (f"{LBS}/{child_lb}", "loadbalancer"),
            (f"{LISTENERS}/{listener_id}", "listener"),
            (f"{LBS}/{updated_lb}", "loadbalancer"),
            (f"{LBS}/{deleted_lb}", "loadbalancer"),
        ]
        statuses, took = _wait_not_pending(
            lambda: [_status(noop_api, p, k) for p, k in paths], started, PENDING_TIMEOUT_S + 15
        )
        # Created or deleted: ERROR (it may be deleted then); a child's change: the child in ERROR, its load
        # balancer ACTIVE again; the load balancer's own update: ERROR.
        assert statuses == ["ERROR", "ACTIVE", "ERROR", "ERROR", "ERROR"]
        assert took >= PENDING_TIMEOUT_S
        created = noop_api.ok("GET", f"{LBS}/{created_lb}")["loadbalancer"]
        assert created["operating_status"] == "ERROR"
        for lb_id in (created_lb, child_lb, updated_lb, deleted_lb):
            assert all(done for _, done in _subjects(db, lb_id)), "a given-up command is not marked completed"
    # The worker, resumed, skips the given-up commands: nothing it does turns the ERRORs back.
    time.sleep(1.5)
    assert [_status(noop_api, p, k) for p, k in paths] == statuses
    # Everything in ERROR can be deleted, and the deletes are applied.
    noop_api.ok("DELETE", f"{LISTENERS}/{listener_id}")
    noop_api.wait_lb_active(child_lb)  # the listener's delete holds its load balancer until it is applied
    for lb_id in (created_lb, child_lb, updated_lb, deleted_lb):
        noop_api.ok("DELETE", f"{LBS}/{lb_id}?cascade=true")
    for lb_id in (created_lb, child_lb, updated_lb, deleted_lb):
        noop_api.wait_status(f"{LBS}/{lb_id}", "loadbalancer", "DELETED")


# --------------------------------------------------------------- what counts as progress (fixed clock)

NOW = dt.datetime(2026, 6, 1, 12, 0, 0)
TIMEOUT_S = 600.0


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(database_url)
    try:
        yield session_factories(engine)[1]
    finally:
        await engine.dispose()


async def _plant(
    sessions: async_sessionmaker[AsyncSession], status: str, changed: dt.datetime, operation: int | None
) -> tuple[str, str | None]:
    lb_id = str(uuid.uuid4())
    async with sessions() as session, session.begin():
        session.add(
            LoadBalancer(
                id=lb_id,
                project_id=PROJECT,
                provisioning_status=status,
                operating_status="ONLINE",
                provider="amphora",
                created_at=changed,
                updated_at=changed,
            )
        )
        command_id = None
        if operation is not None:
            kind = (
                Kind.RESOURCE_KIND_AMPHORA
                if operation == Op.OPERATION_ROTATE_CERTIFICATE
                else Kind.RESOURCE_KIND_LOAD_BALANCER
            )
            row = commands.new_command(session, "amphora", kind, operation, lb_id, lb_id)
            row.created_at = changed
            command_id = row.id
    return lb_id, command_id


async def _lb(sessions: async_sessionmaker[AsyncSession], lb_id: str) -> Any:
    async with sessions() as session:
        return await session.get(LoadBalancer, lb_id)


async def test_a_flow_step_is_progress(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A long flow whose objects and command are old but whose last step is recent is left alone."""
    old = NOW - dt.timedelta(hours=1)
    lb_id, command_id = await _plant(sessions, "PENDING_UPDATE", old, Op.OPERATION_UPDATE)
    async with sessions() as session, session.begin():
        session.add(
            FlowProgress(
                command_id=command_id,
                flow="x",
                state="RUNNING",
                done_steps=2,
                store={},
                updated_at=NOW - dt.timedelta(seconds=30),
            )
        )
    recovery = await recover_pending(sessions, TIMEOUT_S, NOW)
    assert lb_id not in recovery.failed and lb_id not in recovery.redriven
    assert (await _lb(sessions, lb_id)).provisioning_status == "PENDING_UPDATE"
    # Ten minutes later, with no further step, it is given up.
    recovery = await recover_pending(sessions, TIMEOUT_S, NOW + dt.timedelta(seconds=TIMEOUT_S))
    assert lb_id in recovery.failed
    assert (await _lb(sessions, lb_id)).provisioning_status == "ERROR"


async def test_only_changes_count_as_outstanding_commands(sessions: async_sessionmaker[AsyncSession]) -> None:
    """A certificate rotation queued for the load balancer's amphora is no change: the lost change is re-driven."""
    old = NOW - dt.timedelta(hours=1)
    lb_id, _ = await _plant(sessions, "PENDING_CREATE", old, Op.OPERATION_ROTATE_CERTIFICATE)
    young_id, _ = await _plant(sessions, "PENDING_DELETE", NOW - dt.timedelta(seconds=10), None)
    recovery = await recover_pending(sessions, TIMEOUT_S, NOW)
    assert recovery.redriven.get(lb_id) == "create" and young_id not in recovery.redriven
    later = await recover_pending(sessions, TIMEOUT_S, NOW + dt.timedelta(seconds=TIMEOUT_S))
    assert later.redriven.get(young_id) == "delete"
    async with sessions() as session:
        subjects = (
            await session.execute(select(ProviderCommand.subject).where(ProviderCommand.load_balancer_id == young_id))
        ).scalars()
        assert list(subjects) == ["octavia.provider.v1.amphora.load_balancer.delete"]
