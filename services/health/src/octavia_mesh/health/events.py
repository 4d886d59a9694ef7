"""Status events on NATS: every operating status the health service writes is also published.

Contract (``protos/octavia_mesh/events/v1/events.proto``, ``docs/architecture.md``): an
``OperatingStatusChanged`` message on ``octavia.events.v1.operating_status.<load_balancer_id>.<kind>.<id>``,
published through JetStream into the stream ``OCTAVIA_EVENTS`` (limits retention: kept for a bounded age
and size, for subscribers that come late or were away), with its event id as ``Nats-Msg-Id``.

Events go out after the database commit, from a bounded queue: the database is the truth, and a NATS
outage must neither slow heartbeats down nor grow memory without bound (the oldest events are dropped
then, with a warning).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from google.protobuf import timestamp_pb2
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from octavia_mesh.common import commands
from octavia_mesh.health import status as st
from octavia_mesh.protos.events.v1 import events_pb2

logger = logging.getLogger(__name__)

SUBJECT_PREFIX = "octavia.events.v1"
STATUS_SUBJECTS = f"{SUBJECT_PREFIX}.operating_status"
#: Events waiting for NATS beyond this many are dropped, oldest first.
MAX_QUEUED = 10_000

_KINDS = {
    st.LOAD_BALANCER: events_pb2.RESOURCE_KIND_LOAD_BALANCER,
    st.LISTENER: events_pb2.RESOURCE_KIND_LISTENER,
    st.POOL: events_pb2.RESOURCE_KIND_POOL,
    st.MEMBER: events_pb2.RESOURCE_KIND_MEMBER,
}


def subject(load_balancer_id: str, kind: str, resource_id: str) -> str:
    """``octavia.events.v1.operating_status.<load_balancer_id>.<kind>.<id>``."""
    return f"{STATUS_SUBJECTS}.{load_balancer_id}.{kind}.{resource_id}"


def _status(name: str) -> events_pb2.OperatingStatus:
    value = events_pb2.OperatingStatus.Value(f"OPERATING_STATUS_{name}" if name else "OPERATING_STATUS_UNSPECIFIED")
    return cast(events_pb2.OperatingStatus, value)


@dataclass(frozen=True, slots=True)
class Event:
    """One encoded event and where it goes."""

    event_id: str
    subject: str
    payload: bytes


def encode(change: st.Change, project_id: str, amphora_id: str, reporter: str, when: dt.datetime) -> Event:
    event_id = str(uuid.uuid4())
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when)
    message = events_pb2.OperatingStatusChanged(
        event_id=event_id,
        kind=_KINDS[change.kind],
        id=change.id,
        load_balancer_id=change.load_balancer_id,
        project_id=project_id,
        previous_status=_status(change.previous),
        status=_status(change.status),
        change_time=stamp,
        amphora_id=amphora_id,
        reporter=reporter,
    )
    return Event(event_id, subject(change.load_balancer_id, change.kind, change.id), message.SerializeToString())


class EventPublisher(Protocol):
    """Publishes status events; never blocks its caller on the network."""

    def publish(self, events: Sequence[Event]) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class InMemoryEventPublisher:
    """Keeps the events (tests, and a health service run without NATS)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class NatsEventPublisher:
    """Publishes through JetStream (or plain NATS when ``stream`` is empty), connecting in the background."""

    def __init__(self, url: str, stream: str, max_age_s: float, max_bytes: int, name: str) -> None:
        self._url, self._stream, self._name = url, stream, name
        self._max_age_s, self._max_bytes = max_age_s, max_bytes
        self._queue: collections.deque[Event] = collections.deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._nats: Any = None
        self._js: Any = None
        self.dropped = 0

    def publish(self, events: Sequence[Event]) -> None:
        self._queue.extend(events)
        overflow = len(self._queue) - MAX_QUEUED
        if overflow > 0:
            for _ in range(overflow):
                self._queue.popleft()
            self.dropped += overflow
            logger.warning("NATS is behind: dropped %d status events (the database has every status)", overflow)
        self._ready.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="status-events")

    async def _connect(self) -> None:
        complained = False
        while True:
            try:
                self._nats, self._js = await commands.connect(self._url, self._name)
                if self._stream:
                    await self._ensure_stream()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not complained:
                    logger.warning("NATS unreachable (%s): status events wait (in memory)", exc)
                    complained = True
                if self._nats is not None:
                    with contextlib.suppress(Exception):
                        await self._nats.close()
                    self._nats = None
                await asyncio.sleep(1.0)

    async def _ensure_stream(self) -> None:
        config = StreamConfig(
            name=self._stream,
            subjects=[f"{SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self._max_age_s,
            max_bytes=self._max_bytes,
            discard=DiscardPolicy.OLD,
            duplicate_window=min(120.0, self._max_age_s),
        )
        try:
            await self._js.stream_info(self._stream)
        except NotFoundError:
            try:
                await self._js.add_stream(config)
            except Exception:
                # Another replica created it between our two calls; anything else shows on the next call.
                await self._js.stream_info(self._stream)

    async def _run(self) -> None:
        await self._connect()
        while True:
            await self._ready.wait()
            while self._queue:
                event = self._queue[0]
                try:
                    await self._send(event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("publishing status event %s failed (%s); retrying", event.event_id, exc)
                    await asyncio.sleep(0.5)
                    continue
                self._queue.popleft()
            self._ready.clear()

    async def _send(self, event: Event) -> None:
        if self._stream:
            await self._js.publish(event.subject, event.payload, timeout=2.0, headers={"Nats-Msg-Id": event.event_id})
        else:
            await self._nats.publish(event.subject, event.payload)

    async def stop(self, drain_s: float = 1.0) -> None:
        if self._task is not None:
            # Give what is queued a moment to go out, then stop.
            deadline = asyncio.get_running_loop().time() + drain_s
            while self._queue and self._js is not None and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._nats is not None:
            await commands.close_nats(self._nats)
