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

    async def apply(self, command: commands_pb2.ProviderCommand) -> None:
        """Apply ``command`` to completion: its objects end ACTIVE, removed or in ERROR, never PENDING_*.

        It may run again for the same command (after a crash, before the command was stamped completed),
        so it must be idempotent.
        """
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
                # Commands of one batch run side by side: the API lets one change per load balancer be in
                # flight, so they never touch the same objects.
                await asyncio.gather(*(self._handle(m) if self._consuming.is_set() else m.nak() for m in messages))

    async def _handle(self, message: Msg) -> None:
        try:
            command = commands_pb2.ProviderCommand.FromString(message.data)
        except Exception:
            logger.error("dropping malformed command on %s", message.subject)
            await message.term()
            return
        keepalive = asyncio.create_task(self._keep_in_progress(message))
        try:
            await self.apply(command)
        except asyncio.CancelledError:
            raise
        except Exception:
            delivered = message.metadata.num_delivered if message.metadata else 1
            logger.warning("command %s failed (delivery %d); will retry", command.command_id, delivered, exc_info=True)
            await message.nak(delay=min(30.0, 0.5 * 2 ** min(delivered, 6)))
            return
        finally:
            keepalive.cancel()
        await message.ack()

    async def _keep_in_progress(self, message: Msg) -> None:
        """Tell JetStream a long flow is still being worked on, so it does not redeliver it meanwhile."""
        while True:
            await asyncio.sleep(self._ack_wait_s / 3)
            await message.in_progress()

    async def apply(self, command: commands_pb2.ProviderCommand) -> bool:
        """Apply ``command`` unless it was completed before; returns whether it ran now."""
        async with self._sessions() as session:
            done = await session.get(ProviderCommand, command.command_id)
        if done is None or done.completed_at is not None:
            logger.debug("command %s already applied (or unknown)", command.command_id)
            return False
        await self._provider.apply(command)
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(ProviderCommand).where(ProviderCommand.id == command.command_id).values(completed_at=utcnow())
            )
        logger.info(
            "applied %s %s %s",
            commands.Kind.Name(command.kind),
            commands.Op.Name(command.operation),
            command.resource_id,
        )
        return True
