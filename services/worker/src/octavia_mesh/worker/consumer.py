"""Takes provider commands from JetStream and applies each exactly once.

A command is applied in one database transaction that also stamps its outbox
row ``completed_at``; a redelivered command whose row is already stamped is
just acknowledged. A command that fails is negatively acknowledged and
redelivered after a back-off, so a database outage delays changes but never
loses one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common import commands
from octavia_mesh.common.db.models import ProviderCommand, utcnow
from octavia_mesh.protos.provider.v1 import commands_pb2

logger = logging.getLogger(__name__)


class Provider(Protocol):
    """What the consumer needs of a provider."""

    name: str

    async def apply(self, session: AsyncSession, command: commands_pb2.ProviderCommand) -> None:
        """Apply ``command`` inside ``session``'s transaction."""
        ...


class CommandConsumer:
    """One durable pull consumer per provider on the ``PROVIDER_COMMANDS`` stream."""

    #: How long one pull waits for commands; also the longest a pause waits for the pull in flight.
    FETCH_WAIT_S = 0.2

    def __init__(
        self,
        js: JetStreamContext,
        sessions: async_sessionmaker[AsyncSession],
        provider: Provider,
        batch_size: int = 64,
        ack_wait_s: float = 60.0,
    ) -> None:
        self._js = js
        self._sessions = sessions
        self._provider = provider
        self._batch_size = batch_size
        self._ack_wait_s = ack_wait_s
        self._task: asyncio.Task[None] | None = None
        self._consuming = asyncio.Event()
        self._consuming.set()
        self._busy = asyncio.Lock()  # held while a fetched batch is applied

    async def pause(self) -> None:
        """Stop taking commands; returns once the batch in hand is applied (commands wait in JetStream)."""
        self._consuming.clear()
        async with self._busy:
            pass

    def resume(self) -> None:
        self._consuming.set()

    async def start(self) -> None:
        durable = f"provider-{self._provider.name}"
        self._subscription = await self._js.pull_subscribe(
            commands.provider_filter(self._provider.name),
            durable=durable,
            stream=commands.STREAM,
            config=ConsumerConfig(
                durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=self._ack_wait_s, max_deliver=-1
            ),
        )
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self._provider.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._consuming.wait()
            async with self._busy:  # pause() waits for this: no command is in hand once it returns
                if not self._consuming.is_set():
                    continue
                try:
                    messages = await self._subscription.fetch(self._batch_size, timeout=self.FETCH_WAIT_S)
                except TimeoutError:
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.warning("fetch from JetStream failed; retrying", exc_info=True)
                    await asyncio.sleep(0.5)
                    continue
                for message in messages:
                    if self._consuming.is_set():
                        await self._handle(message)
                    else:  # paused mid-batch: hand the rest back to JetStream
                        await message.nak()

    async def _handle(self, message: Msg) -> None:
        try:
            command = commands_pb2.ProviderCommand.FromString(message.data)
        except Exception:
            logger.error("dropping malformed command on %s", message.subject)
            await message.term()
            return
        try:
            await self.apply(command)
        except asyncio.CancelledError:
            raise
        except Exception:
            delivered = message.metadata.num_delivered if message.metadata else 1
            logger.warning("command %s failed (delivery %d); will retry", command.command_id, delivered, exc_info=True)
            await message.nak(delay=min(30.0, 0.5 * 2 ** min(delivered, 6)))
            return
        await message.ack()

    async def apply(self, command: commands_pb2.ProviderCommand) -> bool:
        """Apply ``command`` unless it was applied before; returns whether it ran now."""
        async with self._sessions() as session, session.begin():
            done = await session.execute(
                update(ProviderCommand)
                .where(ProviderCommand.id == command.command_id, ProviderCommand.completed_at.is_(None))
                .values(completed_at=utcnow())
            )
            if done.rowcount != 1:
                logger.debug("command %s already applied", command.command_id)
                return False
            await self._provider.apply(session, command)
        logger.info(
            "applied %s %s %s",
            commands.Kind.Name(command.kind),
            commands.Op.Name(command.operation),
            command.resource_id,
        )
        return True
