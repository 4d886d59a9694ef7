"""Purges: expired DELETED rows, finished records and rows of gone objects go; everything younger stays.

The first tests run housekeeping's cleanup job on a real database (SQLite, or PostgreSQL/MariaDB when
OCTAVIA_MESH_TEST_DATABASE_URL names one) with a fixed clock and planted rows of every kind; the last one
watches the running service purge a load balancer deleted through the API.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import PROJECT, SUBNET, Rest, mesh_engine

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.common.db.engine import make_engine, session_factories
from octavia_mesh.common.db.models import (
    Amphora,
    AmphoraHealth,
    FlowProgress,
    Listener,
    ListenerStatistics,
    LoadBalancer,
    ProviderCommand,
    VipAllocation,
)
from octavia_mesh.housekeeping.jobs import Housekeeper
from octavia_mesh.housekeeping.settings import HousekeepingSettings

NOW = dt.datetime(2026, 6, 1, 12, 0, 0)
HOUR = dt.timedelta(hours=1)
SETTINGS = HousekeepingSettings(load_balancer_expiry_age_s=3600, amphora_expiry_age_s=3600, record_expiry_age_s=600)


def _id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(database_url)
    try:
        yield session_factories(engine)[1]
    finally:
        await engine.dispose()


def lb(status: str, changed: dt.datetime, **fields: Any) -> LoadBalancer:
    return LoadBalancer(
        id=_id(),
        project_id=PROJECT,
        name="",
        provisioning_status=status,
        operating_status="OFFLINE",
        provider="amphora",
        created_at=changed - HOUR,
        updated_at=changed,
        **fields,
    )


def amphora(lb_id: str | None, status: str, changed: dt.datetime) -> Amphora:
    return Amphora(id=_id(), load_balancer_id=lb_id, status=status, created_at=changed - HOUR, updated_at=changed)


def listener(lb_id: str) -> Listener:
    return Listener(
        id=_id(),
        load_balancer_id=lb_id,
        protocol="HTTP",
        protocol_port=80,
        provisioning_status="ACTIVE",
        operating_status="ONLINE",
        created_at=NOW - HOUR,
    )


def command(lb_id: str, completed: dt.datetime | None, created: dt.datetime = NOW - 2 * HOUR) -> ProviderCommand:
    return ProviderCommand(
        id=_id(),
        provider="amphora",
        subject="octavia.provider.v1.amphora.load_balancer.update",
        payload=b"",
        load_balancer_id=lb_id,
        created_at=created,
        published_at=created,
        completed_at=completed,
    )


def flow(command_id: str, state: str, changed: dt.datetime) -> FlowProgress:
    return FlowProgress(
        command_id=command_id, flow="configure", state=state, done_steps=1, store={}, updated_at=changed
    )


def stats(listener_id: str, amphora_id: str, stamped: dt.datetime | None) -> ListenerStatistics:
    return ListenerStatistics(listener_id=listener_id, amphora_id=amphora_id, updated_at=stamped)


async def _ids(sessions: async_sessionmaker[AsyncSession], column: Any) -> set[Any]:
    async with sessions() as session:
        return set((await session.execute(select(column))).scalars())


async def test_expired_rows_go_and_younger_ones_stay(sessions: async_sessionmaker[AsyncSession]) -> None:
    old, young = NOW - 2 * HOUR, NOW - dt.timedelta(minutes=10)
    expired_lb, young_lb, live_lb = lb("DELETED", old), lb("DELETED", young), lb("ACTIVE", old)
    lb_with_dead_amp, lb_with_live_amp, lb_with_child = lb("DELETED", old), lb("DELETED", old), lb("DELETED", old)
    dead_amp = amphora(lb_with_dead_amp.id, "DELETED", old)
    stuck_amp = amphora(lb_with_live_amp.id, "ALLOCATED", old)  # the orphan sweep retires it first
    child = listener(lb_with_child.id)  # a bug left it: the row stays rather than break a foreign key
    expired_amp, young_amp, live_amp = (
        amphora(None, "DELETED", old),
        amphora(None, "DELETED", young),
        amphora(live_lb.id, "ALLOCATED", old),
    )
    live_listener = listener(live_lb.id)
    old_done, young_done, never_done = command("x", old), command("x", young), command("x", None)
    old_flow, young_flow = flow(old_done.id, "DONE", old), flow(young_done.id, "DONE", young)
    lost_flow = flow(_id(), "RUNNING", old)  # its command is gone: nothing will ever resume it
    resumable = flow(never_done.id, "REVERTING", old)  # its command may still be delivered
    async with sessions() as session, session.begin():
        session.add_all([expired_lb, young_lb, live_lb, lb_with_dead_amp, lb_with_live_amp, lb_with_child])
        await session.flush()
        session.add_all([dead_amp, stuck_amp, child, expired_amp, young_amp, live_amp, live_listener])
        session.add_all([old_done, young_done, never_done, old_flow, young_flow, lost_flow, resumable])
        session.add_all(
            [
                AmphoraHealth(amphora_id=expired_amp.id, last_update=old),
                AmphoraHealth(amphora_id=live_amp.id, last_update=young),
                AmphoraHealth(amphora_id=_id(), last_update=young),  # no amphora at all
                stats(live_listener.id, live_amp.id, young),
                stats(live_listener.id, dead_amp.id, young),  # a retired amphora's share of a live listener
                stats(_id(), live_amp.id, young),  # its listener is gone
                stats(_id(), live_amp.id, None),  # no service stamped it: left alone
                stats(live_listener.id, expired_amp.id, young),
            ]
        )

    counts = await Housekeeper(sessions, SETTINGS).cleanup(now=NOW)

    # Amphora rows take their health rows along; the gone-object counts are what was left.
    assert counts == {
        "load_balancer": 2,
        "amphora": 1,  # expired_amp (dead_amp went with its load balancer)
        "provider_command": 1,
        "flow_progress": 2,
        "amphora_health": 1,  # the one of no amphora at all
        "listener_statistics": 1,  # the one of a gone listener
    }
    lbs = await _ids(sessions, LoadBalancer.id)
    assert expired_lb.id not in lbs and lb_with_dead_amp.id not in lbs
    assert {young_lb.id, live_lb.id, lb_with_live_amp.id, lb_with_child.id} <= lbs
    assert await _ids(sessions, Amphora.id) >= {stuck_amp.id, young_amp.id, live_amp.id}
    assert not await _ids(sessions, Amphora.id) & {dead_amp.id, expired_amp.id}
    commands = await _ids(sessions, ProviderCommand.id)
    assert old_done.id not in commands and {young_done.id, never_done.id} <= commands
    assert await _ids(sessions, FlowProgress.command_id) >= {young_done.id, never_done.id}
    assert not await _ids(sessions, FlowProgress.command_id) & {old_done.id, lost_flow.command_id}
    assert live_amp.id in await _ids(sessions, AmphoraHealth.amphora_id)
    async with sessions() as session:
        left = {(r.listener_id, r.amphora_id) for r in (await session.execute(select(ListenerStatistics))).scalars()}
    # A live listener keeps the statistics of its purged amphorae (its totals are their sum), and the
    # unstamped row stays.
    assert {(live_listener.id, a) for a in (live_amp.id, dead_amp.id, expired_amp.id)} <= left and len(left) == 4

    # Running again changes nothing; an hour later the young rows have expired too.
    assert set((await Housekeeper(sessions, SETTINGS).cleanup(now=NOW)).values()) == {0}
    later = await Housekeeper(sessions, SETTINGS).cleanup(now=NOW + HOUR)
    assert later["load_balancer"] == 1 and later["amphora"] == 1 and later["provider_command"] == 1
    assert young_lb.id not in await _ids(sessions, LoadBalancer.id)


async def test_orphaned_vip_allocations_are_released(sessions: async_sessionmaker[AsyncSession]) -> None:
    live, deleted = lb("ACTIVE", NOW), lb("DELETED", NOW)
    async with sessions() as session, session.begin():
        session.add_all([live, deleted])
        await session.flush()
        session.add_all(
            VipAllocation(subnet_id=SUBNET, address=f"127.226.9.{i}", load_balancer_id=lb_id)
            for i, lb_id in enumerate((live.id, deleted.id, _id()), start=1)
        )
    released, _ = await Housekeeper(sessions, SETTINGS).sweep_orphans()
    assert released == 2
    async with sessions() as session:
        left = (await session.execute(select(VipAllocation.load_balancer_id, VipAllocation.address))).all()
    assert [tuple(r) for r in left if r[1].startswith("127.226.9.")] == [(live.id, "127.226.9.1")]


def test_the_service_purges_a_deleted_load_balancer_after_its_expiry(noop_mesh: Mesh, noop_api: Rest) -> None:
    body = {"loadbalancer": {"name": "purged", "vip_subnet_id": SUBNET, "project_id": PROJECT}}
    lb_id = noop_api.ok("POST", "/v2/lbaas/loadbalancers", body)["loadbalancer"]["id"]
    noop_api.wait_lb_active(lb_id)
    noop_api.ok("DELETE", f"/v2/lbaas/loadbalancers/{lb_id}")
    noop_api.wait_status(f"/v2/lbaas/loadbalancers/{lb_id}", "loadbalancer", "DELETED")
    db = mesh_engine(noop_mesh)
    try:

        def rows() -> tuple[int, int]:
            with db.connect() as conn:
                lbs = conn.execute(text("SELECT count(*) FROM load_balancer WHERE id = :i"), {"i": lb_id}).scalar()
                done = conn.execute(
                    text("SELECT count(*) FROM provider_command WHERE load_balancer_id = :i"), {"i": lb_id}
                ).scalar()
            return int(lbs or 0), int(done or 0)

        time.sleep(2.0)  # four cleanup runs: younger than the expiry (60 s), the rows stay
        assert rows() == (1, 2)
        with db.begin() as conn:  # let a minute and a half pass, for these rows
            past = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=90)
            conn.execute(update(LoadBalancer).where(LoadBalancer.id == lb_id).values(updated_at=past))
            conn.execute(
                update(ProviderCommand).where(ProviderCommand.load_balancer_id == lb_id).values(completed_at=past)
            )
        deadline = time.monotonic() + 15
        while rows() != (0, 0):
            assert time.monotonic() < deadline, f"not purged: {rows()}"
            time.sleep(0.2)
    finally:
        db.dispose()
