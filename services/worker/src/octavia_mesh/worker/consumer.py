"""Takes the in-tree providers' commands from JetStream through the provider SDK's consumer.

Delivery is at least once: JetStream redelivers a command until it is acknowledged, and the outbox relay
re-publishes one nobody completed. A command's flow commits its progress step by step and settles (or
fails) its load balancer in its own transactions; its outbox row is stamped ``completed_at`` afterwards, in
a separate transaction (the noop provider settles in one transaction and stamps the command in it). A
command delivered again before that stamp runs again, which is harmless because every step is idempotent
(the flow engine resumes from its stored progress, settling twice is a no-op); one delivered after the stamp
is just acknowledged. A command that fails is negatively acknowledged and redelivered after a back-off, so a
database outage delays changes but never loses one.
"""

from __future__ import annotations

import logging
from typing import Protocol

from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common import commands
from octavia_mesh.common.capabilities import Capabilities, Facts
from octavia_mesh.common.db.models import ProviderCommand, utcnow
from octavia_mesh.common.lifecycle.transitions import complete_commands
from octavia_mesh.common.observability import tracing
from octavia_mesh.common.observability.logging import REQUEST_ID
from octavia_mesh.protos.provider.v1 import commands_pb2
from octavia_mesh.provider_sdk.commands import Consumer
from octavia_mesh.worker import metrics

logger = logging.getLogger(__name__)
_tracer = tracing.tracer(__name__)


class Provider(Protocol):
    """What the consumer needs of a provider."""

    name: str

    def facts(self) -> Facts:
        """What the API must know of the provider (published in :mod:`octavia_mesh.common.capabilities`)."""
        ...

    def capabilities(self) -> Capabilities:
        """What this worker can build for the provider (announced in :mod:`octavia_mesh.common.capabilities`)."""
        ...

    async def apply(self, command: commands_pb2.ProviderCommand) -> bool:
        """Apply ``command`` to completion: its objects end ACTIVE, removed or in ERROR, never PENDING_*.

        It may run again for the same command (after a crash, before the command was stamped completed),
        so it must be idempotent. Returns whether it stamped the command completed itself, in the transaction
        that settled it (else the consumer does, in one of its own).
        """
        ...


class CommandConsumer:
    """The SDK's durable pull consumer for one in-tree provider, skipping commands already completed."""

    #: How long a pull for a batch waits while commands come in (the SDK pulls for one when idle).
    FETCH_WAIT_S = 0.2

    def __init__(
        self,
        js: JetStreamContext,
        sessions: async_sessionmaker[AsyncSession],
        provider: Provider,
        batch_size: int = 64,
        ack_wait_s: float = 60.0,
        reads: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self._sessions = sessions
        # Whether a command was applied before is a read: on SQLite a write session would take the database's
        # one write lock for it (BEGIN IMMEDIATE), as long as a create takes it.
        self._reads = reads or sessions
        self._provider = provider
        self._consumer = Consumer(
            js, provider.name, self.apply, batch_size=batch_size, ack_wait_s=ack_wait_s, fetch_wait_s=self.FETCH_WAIT_S
        )

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def pause(self) -> None:
        """Stop taking commands; returns once the batch in hand is applied (commands wait in JetStream)."""
        await self._consumer.pause()

    def resume(self) -> None:
        self._consumer.resume()

    async def apply(self, command: commands_pb2.ProviderCommand) -> bool:
        """Apply ``command`` unless it was completed before; returns whether it ran now.

        Its log lines carry the request id the command brought, and its spans continue the trace of the call
        that wrote it (a consumer span, child of the API's).
        """
        token = REQUEST_ID.set(command.request_id or None)
        try:
            kind, op = commands.Kind.Name(command.kind), commands.Op.Name(command.operation)  # type: ignore[arg-type]
            with _tracer.start_as_current_span(
                f"apply {kind} {op}",
                context=tracing.extract(command.trace_context),
                kind=SpanKind.CONSUMER,
                attributes={"octavia.command_id": command.command_id, "octavia.resource_id": command.resource_id},
            ):
                return await self._apply(command, kind, op)
        finally:
            REQUEST_ID.reset(token)

    async def _apply(self, command: commands_pb2.ProviderCommand, kind: str, op: str) -> bool:
        counted = metrics.COMMANDS.labels(self._provider.name, kind, op, "failed")
        in_flight = metrics.COMMANDS_IN_FLIGHT.labels(self._provider.name)
        with in_flight.track_inprogress(), counted.count_exceptions():
            async with self._reads() as session:
                done = await session.get(ProviderCommand, command.command_id)
            if done is None or done.completed_at is not None:
                logger.debug("command %s already applied (or unknown)", command.command_id)
                metrics.COMMANDS.labels(self._provider.name, kind, op, "skipped").inc()
                return False
            if not await self._provider.apply(command):
                async with self._sessions() as session, session.begin():
                    await complete_commands(session, done.load_balancer_id, [command.command_id], utcnow())
        metrics.COMMANDS.labels(self._provider.name, kind, op, "applied").inc()
        logger.info("applied %s %s %s", kind, op, command.resource_id)
        return True
