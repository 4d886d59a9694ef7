"""What housekeeping asks of the workers, on a real database with a fixed clock: a certificate rotation for
each amphora whose certificate is due (once, even while a rotation is outstanding; again when its claim went
stale), and one orphan sweep per provider at a time."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import PROJECT

from octavia_mesh.common.db.engine import make_engine, session_factories
from octavia_mesh.common.db.models import Amphora, LoadBalancer, ProviderCommand
from octavia_mesh.housekeeping.jobs import Housekeeper
from octavia_mesh.housekeeping.settings import HousekeepingSettings
from octavia_mesh.protos.provider.v1 import commands_pb2

NOW = dt.datetime(2026, 6, 1, 12, 0, 0)
DAY = dt.timedelta(days=1)
SETTINGS = HousekeepingSettings(cert_expiry_buffer_s=14 * 86400)
ROTATE = "octavia.provider.v1.amphora.amphora.rotate_certificate"
REAP = "octavia.provider.v1.amphora.amphora.reap_orphans"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(database_url)
    try:
        _, write = session_factories(engine)
        async with write() as session, session.begin():  # each test starts from no command at all
            await session.execute(ProviderCommand.__table__.delete())
        yield write
    finally:
        await engine.dispose()


async def _lb(sessions: async_sessionmaker[AsyncSession], provider: str = "amphora", status: str = "ACTIVE") -> str:
    lb_id = str(uuid.uuid4())
    async with sessions() as session, session.begin():
        session.add(
            LoadBalancer(
                id=lb_id,
                project_id=PROJECT,
                provisioning_status=status,
                operating_status="ONLINE",
                provider=provider,
                created_at=NOW,
            )
        )
    return lb_id


async def _amphora(
    sessions: async_sessionmaker[AsyncSession], lb_id: str | None, expires: dt.datetime | None, **fields: object
) -> str:
    amphora_id = str(uuid.uuid4())
    values = {"status": "ALLOCATED", "cert_busy": False, **fields}
    async with sessions() as session, session.begin():
        session.add(Amphora(id=amphora_id, load_balancer_id=lb_id, cert_expiration=expires, created_at=NOW, **values))
    return amphora_id


async def _rotations(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        payloads = (
            await session.execute(select(ProviderCommand.payload).where(ProviderCommand.subject == ROTATE))
        ).scalars()
        return sorted(commands_pb2.ProviderCommand.FromString(p).resource_id for p in payloads)


async def test_due_certificates_are_rotated_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    lb = await _lb(sessions)
    due = await _amphora(sessions, lb, NOW + 3 * DAY)
    expired = await _amphora(sessions, lb, NOW - DAY)  # overdue: still worth a try
    fresh = await _amphora(sessions, lb, NOW + 20 * DAY)
    unknown = await _amphora(sessions, lb, None)  # no certificate known (a provider that records none)
    booting = await _amphora(sessions, lb, NOW + DAY, status="BOOTING")
    spare = await _amphora(sessions, None, NOW + DAY)
    other_provider = await _amphora(sessions, await _lb(sessions, provider="noop"), NOW + DAY)
    deleted_lb = await _amphora(sessions, await _lb(sessions, status="DELETED"), NOW + DAY)
    keeper = Housekeeper(sessions, SETTINGS)

    assert sorted(await keeper.rotate(now=NOW)) == sorted([due, expired])
    assert await _rotations(sessions) == sorted([due, expired])
    async with sessions() as session:
        busy = set((await session.execute(select(Amphora.id).where(Amphora.cert_busy.is_(True)))).scalars())
    assert busy == {due, expired}
    for untouched in (fresh, unknown, booting, spare, other_provider, deleted_lb):
        assert untouched not in busy
    # Outstanding rotations are not queued again, however often the scan runs.
    assert await keeper.rotate(now=NOW) == [] and await keeper.rotate(now=NOW + DAY) == []

    # The worker finished one (new certificate, busy cleared); the other's command was lost: its claim is stale.
    async with sessions() as session, session.begin():
        await session.execute(
            update(Amphora).where(Amphora.id == due).values(cert_busy=False, cert_expiration=NOW + 30 * DAY)
        )
        await session.execute(update(ProviderCommand).values(completed_at=NOW))
        lost = (await session.execute(select(ProviderCommand).where(ProviderCommand.subject == ROTATE))).scalars()
        for row in lost:
            if commands_pb2.ProviderCommand.FromString(row.payload).resource_id == expired:
                await session.delete(row)
    assert await keeper.rotate(now=NOW) == [expired]


async def test_one_orphan_sweep_at_a_time(sessions: async_sessionmaker[AsyncSession]) -> None:
    keeper = Housekeeper(sessions, SETTINGS)

    async def sweeps() -> int:
        async with sessions() as session:
            query = select(ProviderCommand.id).where(ProviderCommand.subject == REAP)
            return len((await session.execute(query)).all())

    assert (await keeper.sweep_orphans())[1] == ["amphora"]
    assert (await keeper.sweep_orphans())[1] == [] and await sweeps() == 1  # the first is still outstanding
    async with sessions() as session, session.begin():
        await session.execute(update(ProviderCommand).where(ProviderCommand.subject == REAP).values(completed_at=NOW))
    assert (await keeper.sweep_orphans())[1] == ["amphora"] and await sweeps() == 2
