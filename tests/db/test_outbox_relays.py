"""Who publishes the outbox: one owner sweeps every row; the other writers publish only what they commit.

Real NATS (JetStream, a nats-server of its own) and the real database.
"""

from __future__ import annotations

import asyncio
import uuid

from nats.js import JetStreamContext
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from octavia_mesh.common import commands
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import ProviderCommand


async def _queue(write: async_sessionmaker[AsyncSession], provider: str) -> str:
    lb_id = str(uuid.uuid4())
    async with write() as session, session.begin():
        row = commands.new_command(
            session, provider, Kind.RESOURCE_KIND_LOAD_BALANCER, Op.OPERATION_UPDATE, lb_id, lb_id
        )
    return row.id


async def _published(write: async_sessionmaker[AsyncSession], command_id: str) -> bool:
    async with write() as session:
        stamp = (
            await session.execute(select(ProviderCommand.published_at).where(ProviderCommand.id == command_id))
        ).scalar_one()
    return stamp is not None


async def _until(check, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        assert loop.time() < deadline, "not published in time"
        await asyncio.sleep(0.05)


async def test_a_local_relay_publishes_its_own_rows_and_only_those(engine: AsyncEngine, js: JetStreamContext) -> None:
    _, write = session_factories(engine)
    provider = f"relay{uuid.uuid4().hex[:8]}"
    foreign = await _queue(write, provider)  # committed before the relay exists: another process's row
    relay = commands.OutboxRelay(write, js, sweep_interval_s=0.1, owner=False)
    relay.start()
    try:
        own = await _queue(write, provider)  # committed by "this process": the session event tells the relay
        await _until(lambda: _published(write, own))
        await asyncio.sleep(0.5)  # several sweeps
        assert not await _published(write, foreign), "a local relay published another process's row"

        async with write() as session, session.begin():  # rolled back: nothing to publish, nothing left pending
            commands.new_command(session, provider, Kind.RESOURCE_KIND_LOAD_BALANCER, Op.OPERATION_DELETE, "x", "x")
            await session.rollback()
        assert not relay._own
    finally:
        await relay.stop()

    owner = commands.OutboxRelay(write, js, sweep_interval_s=0.1)
    owner.start()
    try:
        await _until(lambda: _published(write, foreign))  # the owner sweeps every row
    finally:
        await owner.stop()
    info = await js.stream_info(commands.STREAM)
    assert info.state.messages >= 2
