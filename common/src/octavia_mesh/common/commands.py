"""Provider commands over NATS JetStream: the stream, the outbox relay, and command bookkeeping.

Contract (also in ``protos/octavia_mesh/provider/v1/commands.proto`` and
``docs/architecture.md``): commands are ``ProviderCommand`` messages on the
work-queue stream ``PROVIDER_COMMANDS``, subject
``octavia.provider.v1.<provider>.<kind>.<operation>``, each published with its
command id as ``Nats-Msg-Id``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Iterable

import nats
from google.protobuf import timestamp_pb2
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common.db.models import ProviderCommand, utcnow
from octavia_mesh.protos.provider.v1 import commands_pb2

logger = logging.getLogger(__name__)

STREAM = "PROVIDER_COMMANDS"
SUBJECT_PREFIX = "octavia.provider.v1"
#: A re-published command inside this window is dropped by JetStream itself.
DUPLICATE_WINDOW_S = 300.0

Kind = commands_pb2.ResourceKind
Op = commands_pb2.Operation


def subject(provider: str, kind: int, operation: int) -> str:
    """``octavia.provider.v1.<provider>.<kind>.<operation>``, lower case."""
    kind_name = Kind.Name(kind).removeprefix("RESOURCE_KIND_").lower()
    op_name = Op.Name(operation).removeprefix("OPERATION_").lower()
    return f"{SUBJECT_PREFIX}.{provider}.{kind_name}.{op_name}"


def provider_filter(provider: str) -> str:
    """The subject filter of every command for ``provider``."""
    return f"{SUBJECT_PREFIX}.{provider}.>"


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


async def connect(url: str, name: str) -> tuple[NATS, JetStreamContext]:
    """Connect to NATS, retrying forever in the background once connected."""
    client = await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=5)
    return client, client.jetstream()


async def close_nats(client: NATS, timeout_s: float = 2.0) -> None:
    """Drain the connection, but never for long: a pull subscription waiting on the server can hold a drain
    for its whole timeout, and a stopping service must not make its supervisor reach for SIGKILL."""
    try:
        await asyncio.wait_for(client.drain(), timeout_s)
    except Exception:  # a timeout, or NATS already gone: close is what is left
        logger.info("NATS drain did not finish in %.0fs; closing", timeout_s)
        await client.close()


async def ensure_stream(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the command stream, or leave the existing one as it is."""
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=STREAM,
                subjects=[f"{SUBJECT_PREFIX}.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_S,
                num_replicas=replicas,
            )
        )


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
