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
from octavia_mesh.common.observability.logging import REQUEST_ID
from octavia_mesh.protos.provider.v1 import commands_pb2


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


async def test_a_command_keeps_the_request_id_of_the_call_that_wrote_it(
    engine: AsyncEngine, js: JetStreamContext
) -> None:
    """The request id is in the outbox row's payload (so any relay, however late, publishes it) and in the
    message's headers."""
    _, write = session_factories(engine)
    provider = f"reqid{uuid.uuid4().hex[:8]}"
    token = REQUEST_ID.set("req-4c9f1e52-0000-4000-8000-000000000001")
    try:
        command_id = await _queue(write, provider)
    finally:
        REQUEST_ID.reset(token)
    relay = commands.OutboxRelay(write, js, sweep_interval_s=0.1)  # an owner, sweeping rows no one woke it for
    relay.start()
    try:
        await _until(lambda: _published(write, command_id))
    finally:
        await relay.stop()
    subscription = await js.pull_subscribe(commands.provider_filter(provider), durable=provider)
    (message,) = await subscription.fetch(1, timeout=10)
    await message.ack()
    command = commands_pb2.ProviderCommand.FromString(message.data)
    assert (command.command_id, command.request_id) == (command_id, "req-4c9f1e52-0000-4000-8000-000000000001")
    assert message.headers is not None
    assert message.headers["x-openstack-request-id"] == command.request_id
    assert not command.trace_context  # tracing is off in this process: nothing to carry
