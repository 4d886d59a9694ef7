"""Provider commands over NATS JetStream: the outbox (rows written with a change) and its relay.

The stream's contract (``PROVIDER_COMMANDS``, subjects, ``Nats-Msg-Id``) lives in the provider SDK,
:mod:`octavia_mesh.provider_sdk.stream`, which needs no database; it is re-exported here for the services.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Iterable

from google.protobuf import timestamp_pb2
from nats.js import JetStreamContext
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common.db.models import ProviderCommand, utcnow
from octavia_mesh.protos.provider.v1 import commands_pb2
from octavia_mesh.provider_sdk.stream import (
    DUPLICATE_WINDOW_S,
    STREAM,
    SUBJECT_PREFIX,
    Kind,
    Op,
    close_nats,
    connect,
    ensure_stream,
    provider_filter,
    subject,
)

__all__ = [
    "DUPLICATE_WINDOW_S",
    "STREAM",
    "SUBJECT_PREFIX",
    "Kind",
    "Op",
    "OutboxRelay",
    "close_nats",
    "connect",
    "ensure_stream",
    "new_command",
    "provider_filter",
    "subject",
]

logger = logging.getLogger(__name__)


def new_command(
    session: AsyncSession,
    provider: str,
    kind: int,
    operation: int,
    resource_id: str,
    load_balancer_id: str,
    cascade: bool = False,
) -> ProviderCommand:
    """Add the outbox row of a command to ``session``; it commits with the caller's change."""
    command_id = str(uuid.uuid4())
    now = utcnow()
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(now)
    message = commands_pb2.ProviderCommand(
        command_id=command_id,
        provider=provider,
        kind=kind,
        operation=operation,
        resource_id=resource_id,
        load_balancer_id=load_balancer_id,
        cascade=cascade,
        create_time=stamp,
    )
    row = ProviderCommand(
        id=command_id,
        provider=provider,
        subject=subject(provider, kind, operation),
        payload=message.SerializeToString(),
        load_balancer_id=load_balancer_id,
        created_at=now,
    )
    session.add(row)
    return row


class OutboxRelay:
    """Publishes committed outbox rows to JetStream.

    ``wake()`` after a commit publishes at once; a periodic sweep picks up rows
    left by a process that died between its commit and its publish, and
    re-publishes commands that no provider completed within ``redrive_after_s``
    (the provider skips the ones it has completed, so a re-publish is harmless).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        js: JetStreamContext,
        sweep_interval_s: float = 1.0,
        redrive_after_s: float = 60.0,
    ) -> None:
        self._sessions = sessions
        self._js = js
        self._sweep_interval_s = sweep_interval_s
        self._redrive_after_s = redrive_after_s
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        last_redrive = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._sweep_interval_s)
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                await self.publish_pending()
                if loop.time() - last_redrive >= self._redrive_after_s:
                    last_redrive = loop.time()
                    await self.redrive_stale()
                    await self.forget_completed()
            except asyncio.CancelledError:
                raise
            except Exception:  # NATS or the database is down: the next sweep retries.
                logger.warning("outbox relay: publish failed, will retry", exc_info=True)

    async def publish_pending(self, batch: int = 200) -> int:
        """Publish unpublished rows, oldest first; returns how many went out."""
        published = 0
        while True:
            async with self._sessions() as session:
                rows = (
                    await session.execute(
                        select(ProviderCommand.id, ProviderCommand.subject, ProviderCommand.payload)
                        .where(ProviderCommand.published_at.is_(None))
                        .order_by(ProviderCommand.created_at)
                        .limit(batch)
                    )
                ).all()
            if not rows:
                return published
            await self._publish(rows)
            published += len(rows)

    async def redrive_stale(self) -> None:
        """Publish again the commands no provider completed in time."""
        cutoff = utcnow().timestamp() - self._redrive_after_s
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(
                        ProviderCommand.id,
                        ProviderCommand.subject,
                        ProviderCommand.payload,
                        ProviderCommand.published_at,
                    )
                    .where(ProviderCommand.completed_at.is_(None), ProviderCommand.published_at.is_not(None))
                    .order_by(ProviderCommand.created_at)
                    .limit(500)
                )
            ).all()
        stale = [r[:3] for r in rows if r.published_at.timestamp() < cutoff]
        if stale:
            logger.info("re-publishing %d provider commands not completed in %.0fs", len(stale), self._redrive_after_s)
            await self._publish(stale)

    async def forget_completed(self, keep_s: float = 3600.0) -> None:
        """Drop outbox rows completed over ``keep_s`` ago: JetStream's duplicate window is long past."""
        cutoff = utcnow() - dt.timedelta(seconds=keep_s)
        async with self._sessions() as session, session.begin():
            await session.execute(delete(ProviderCommand).where(ProviderCommand.completed_at < cutoff))

    async def _publish(self, rows: Iterable[tuple[str, str, bytes]]) -> None:
        acks = [await self._js.publish(subj, payload, headers={"Nats-Msg-Id": cid}) for cid, subj, payload in rows]
        ids = [cid for cid, _, _ in rows]
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(ProviderCommand).where(ProviderCommand.id.in_(ids)).values(published_at=utcnow())
            )
        logger.debug("published %d commands (last seq %s)", len(acks), acks[-1].seq if acks else None)
