"""Provider commands over NATS JetStream: the outbox (rows written with a change) and its relay.

The stream's contract (``PROVIDER_COMMANDS``, subjects, ``Nats-Msg-Id``) lives in the provider SDK,
:mod:`octavia_mesh.provider_sdk.stream`, which needs no database; it is re-exported here for the services.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Iterable
from typing import cast

from google.protobuf import timestamp_pb2
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge
from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from octavia_mesh.common.db.models import ProviderCommand, utcnow
from octavia_mesh.common.observability import tracing
from octavia_mesh.common.observability.logging import REQUEST_ID, REQUEST_ID_HEADER
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
        kind=cast("commands_pb2.ResourceKind", kind),  # any int: the stubs want the enum's type
        operation=cast("commands_pb2.Operation", operation),
        resource_id=resource_id,
        load_balancer_id=load_balancer_id,
        cascade=cascade,
        create_time=stamp,
        request_id=REQUEST_ID.get() or "",
    )
    tracing.inject(message.trace_context)  # the command goes on the trace of the call that wrote it
    row = ProviderCommand(
        id=command_id,
        provider=provider,
        subject=subject(provider, kind, operation),
        payload=message.SerializeToString(),
        load_balancer_id=load_balancer_id,
        created_at=now,
    )
    session.add(row)
    # For the relays of this process, once committed: the message as written, so that publishing it reads nothing.
    session.info.setdefault(_WRITTEN, []).append((command_id, row.subject, row.payload))
    return row


def _headers(command_id: str, payload: bytes) -> dict[str, str]:
    """The message's headers: its id for the stream's duplicate window, and the request id and trace context
    the command carries (also in its payload, which is what the worker reads), for anyone watching the subject."""
    headers = {"Nats-Msg-Id": command_id}
    message = commands_pb2.ProviderCommand.FromString(payload)
    if message.request_id:
        headers[REQUEST_ID_HEADER] = message.request_id
    headers.update(message.trace_context)
    return headers


#: Key in a session's ``info`` under which :func:`new_command` lists the commands the session adds (id,
#: subject, payload).
_WRITTEN = "octavia_mesh.outbox.written"
#: The relays of this process: each publishes the rows its process commits as soon as they are committed.
_LOCAL_RELAYS: weakref.WeakSet[OutboxRelay] = weakref.WeakSet()


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    written = session.info.pop(_WRITTEN, None)
    if written:
        for relay in list(_LOCAL_RELAYS):
            relay.committed(written)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_WRITTEN, None)  # those rows never existed


OUTBOX_PUBLISHED = Counter(
    "octavia_mesh_outbox_published",
    "Provider commands this process's outbox relay published to JetStream (re-publishes of stale ones included).",
)
OUTBOX_REDRIVEN = Counter(
    "octavia_mesh_outbox_redriven", "Provider commands published again because no provider completed them in time."
)
OUTBOX_UNPUBLISHED = Gauge(
    "octavia_mesh_outbox_unpublished_commands",
    "Outbox rows not yet published to JetStream, at the owning relay's last sweep (0 unless NATS is down or slow).",
)
OUTBOX_UNCOMPLETED = Gauge(
    "octavia_mesh_outbox_uncompleted_commands",
    "Outbox rows no provider has completed yet (published or not), at the owning relay's last sweep.",
)


class OutboxRelay:
    """Publishes committed outbox rows to JetStream.

    Every relay publishes the rows its own process commits right after the commit, from the messages the
    transaction wrote (no read), and retries those until published: a command does not wait for a sweep, and
    the health service's and housekeeping's do not depend on the API being up. One relay owns the outbox
    (``owner=True``: the API service's): its sweep, every ``sweep_interval_s``, picks up rows left by any
    process that died between its commit and its publish (or written by one with no relay, such as the
    worker's rebuild after a restart), and publishes again the commands that no provider completed within
    ``redrive_after_s`` (the provider skips the ones it has completed, so a re-publish is harmless; JetStream
    drops one inside its duplicate window, as it drops a row two relays publish). Completed rows are deleted by
    housekeeping's purge alone.

    A row is stamped ``published_at`` a little after its message went out (:data:`MARK_AFTER_S`), with the
    others sent meanwhile, in one write: on SQLite every write transaction takes the database's one write lock,
    and a stamp per create was a third of the lock's takers on the create path. Until it is stamped the relay
    knows the row as sent and does not publish it again; a relay that dies first leaves it unstamped, and the
    owner's sweep publishes it again (JetStream drops the copy within its duplicate window, and a provider
    skips a command it completed).
    """

    #: How long a sent row may wait for its ``published_at`` stamp (the stamps of a second's creates: one write).
    MARK_AFTER_S = 0.25

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        js: JetStreamContext,
        sweep_interval_s: float = 1.0,
        redrive_after_s: float = 60.0,
        *,
        owner: bool = True,
    ) -> None:
        self._sessions = sessions
        self._js = js
        self._sweep_interval_s = sweep_interval_s
        self._redrive_after_s = redrive_after_s
        self._owner = owner
        self._own: dict[str, tuple[str, bytes]] = {}  # committed here, not published yet: id -> subject, payload
        self._sent: dict[str, float] = {}  # published, not yet stamped: id -> when it went out (monotonic)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        _LOCAL_RELAYS.add(self)

    def wake(self) -> None:
        self._wakeup.set()

    def committed(self, written: Iterable[tuple[str, str, bytes]]) -> None:
        """A transaction of this process committed these outbox rows (called by the session event)."""
        self._own.update((cid, (subj, payload)) for cid, subj, payload in written)
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        _LOCAL_RELAYS.discard(self)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.mark_sent()
        except Exception:  # the database is away: the owner's sweep publishes them again
            logger.warning("outbox relay: could not stamp %d published commands", len(self._sent))

    async def _run(self) -> None:
        last_redrive = last_sweep = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._sweep_interval_s)
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                if self._sent and loop.time() - min(self._sent.values()) >= self.MARK_AFTER_S:
                    await self.mark_sent()
                await self.publish_own()
                # The sweep runs once a sweep interval, not after every commit that wakes the relay: a count and a
                # query per create were most of what the relay cost the API.
                if not self._owner or loop.time() - last_sweep < self._sweep_interval_s:
                    continue
                last_sweep = loop.time()
                await self.measure()
                await self.publish_pending()
                if loop.time() - last_redrive >= self._redrive_after_s:
                    last_redrive = loop.time()
                    await self.redrive_stale()
            except asyncio.CancelledError:
                raise
            except Exception:  # NATS or the database is down: the next sweep retries.
                logger.warning("outbox relay: publish failed, will retry", exc_info=True)

    async def measure(self) -> None:
        """Count the outstanding commands for the metrics (the owner's sweep; both columns are indexed)."""
        async with self._sessions() as session:
            unpublished = await session.scalar(
                select(func.count()).select_from(ProviderCommand).where(ProviderCommand.published_at.is_(None))
            )
            uncompleted = await session.scalar(
                select(func.count()).select_from(ProviderCommand).where(ProviderCommand.completed_at.is_(None))
            )
        OUTBOX_UNPUBLISHED.set(max(0, (unpublished or 0) - len(self._sent)))
        OUTBOX_UNCOMPLETED.set(uncompleted or 0)

    async def publish_own(self) -> int:
        """Publish the rows this process committed; returns how many went out (a row another relay published
        already goes again, and JetStream drops the copy)."""
        if not self._own:
            return 0
        rows = [(cid, subj, payload) for cid, (subj, payload) in self._own.items()]  # _publish takes sent ones out
        await self._publish(rows)
        return len(rows)

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
            new = [row for row in rows if row.id not in self._sent]  # sent, not yet stamped
            if new:
                await self._publish(new)
                published += len(new)
            if len(rows) < batch:  # that was all of them: no query to find nothing
                return published
            await self.mark_sent()  # a full page: stamp it, or the next query finds the same rows

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
            OUTBOX_REDRIVEN.inc(len(stale))

    async def _publish(self, rows: Iterable[tuple[str, str, bytes]]) -> None:
        """Publish ``rows`` (each acknowledged by JetStream); :meth:`mark_sent` stamps them soon after."""
        now = asyncio.get_running_loop().time()
        last = None
        for cid, subj, payload in rows:
            last = await self._js.publish(subj, payload, headers=_headers(cid, payload))
            self._sent[cid] = now
            self._own.pop(cid, None)
            OUTBOX_PUBLISHED.inc()
        logger.debug("published commands (last seq %s)", last.seq if last else None)

    async def mark_sent(self) -> None:
        """Stamp ``published_at`` on every row sent and not yet stamped, in one write."""
        if not self._sent:
            return
        ids = list(self._sent)
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(ProviderCommand).where(ProviderCommand.id.in_(ids)).values(published_at=utcnow())
            )
        for cid in ids:
            self._sent.pop(cid, None)
