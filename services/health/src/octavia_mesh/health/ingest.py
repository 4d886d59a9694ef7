"""From streams to batches: heartbeats are coalesced per amphora and written every ``flush_interval_s``.

A stream hands each heartbeat to :meth:`Ingest.offer`, which only replaces the amphora's pending entry (the
newest heartbeat says everything the older ones did: statuses are current and counters are totals), so the
memory and the database work per flush grow with the number of amphorae, never with the message rate.
The flusher writes the pending entries in transactions of at most ``flush_max_amphorae`` amphorae and then
publishes the status events of what it wrote.

Every flush also re-checks each reporting amphora's row: a stream whose certificate stopped being the
amphora's current one (rotated out, amphora deleted) is marked revoked, and the servicer ends it at its next
heartbeat. Stream openings are checked the same way, in batches (:class:`AmphoraDirectory`): after a replica
dies, thousands of amphorae reconnect to the others at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from octavia_mesh.common.db.models import utcnow
from octavia_mesh.common.lifecycle import AmphoraStatus
from octavia_mesh.health import events as ev
from octavia_mesh.health import status as st
from octavia_mesh.health.store import AmphoraRecord, Counters, HealthStore, Item, refusal
from octavia_mesh.protos.health.v1 import health_pb2

logger = logging.getLogger(__name__)


class AmphoraDirectory:
    """Amphora rows by id, looked up many at a time: concurrent :meth:`get` calls share one query."""

    def __init__(self, store: HealthStore, window_s: float = 0.005) -> None:
        self._store = store
        self._window_s = window_s
        self._waiting: dict[str, list[asyncio.Future[AmphoraRecord | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def get(self, amphora_id: str) -> AmphoraRecord | None:
        future: asyncio.Future[AmphoraRecord | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(amphora_id, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._lookup())
        return await future

    async def _lookup(self) -> None:
        # Calls that arrive while a query runs wait for the next round of this same task.
        while self._waiting:
            await asyncio.sleep(self._window_s)
            waiting, self._waiting = self._waiting, {}
            try:
                found = await self._store.amphorae(waiting)
            except Exception as exc:
                for futures in waiting.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for amphora_id, futures in waiting.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(amphora_id))


@dataclass(eq=False, slots=True)
class Stream:
    """One open heartbeat stream."""

    amphora_id: str
    serial: str
    peer: str
    opened_at: float = field(default_factory=time.monotonic)
    revoked: str | None = None  # why the stream must end, once it must
    last_seen: float = field(default_factory=time.monotonic)  # the last heartbeat (monotonic; loss.py)
    quiet: bool = False  # marked lost for its silence, and nothing heard since
    heard: int = 0  # heartbeats received on it


@dataclass(slots=True)
class _Pending:
    stream: Stream
    heartbeat: health_pb2.StreamHeartbeatsRequest
    received_at: dt.datetime


def to_item(pending: _Pending, record: AmphoraRecord) -> Item:
    """The batch entry of an amphora's heartbeat: its own load balancer's report and counters."""
    item = Item(
        amphora_id=record.id,
        load_balancer_id=record.load_balancer_id,
        allocated=record.status == AmphoraStatus.ALLOCATED,
        received_at=pending.received_at,
    )
    if pending.heartbeat.HasField("sample_time"):
        sampled = pending.heartbeat.sample_time.ToDatetime()  # naive UTC, as the database keeps times
        item.sampled_at = min(sampled, pending.received_at)
    for lb in pending.heartbeat.load_balancers:
        if lb.load_balancer_id != record.load_balancer_id:
            continue  # files of another load balancer left on the amphora: not its to report
        item.report = st.Report.of(
            lb.running,
            ((li.name, li.status) for li in lb.listeners),
            ((p.name, p.status, {m.name: m.status for m in p.members}) for p in lb.pools),
        )
        item.counters = {
            li.name: Counters(
                li.counters.bytes_in,
                li.counters.bytes_out,
                li.counters.active_connections,
                li.counters.total_connections,
                li.counters.request_errors,
            )
            for li in lb.listeners
        }
    return item


class Ingest:
    """The open streams, the heartbeats waiting to be written, and the flusher that writes them."""

    def __init__(
        self,
        store: HealthStore,
        publisher: ev.EventPublisher,
        flush_interval_s: float = 0.25,
        flush_max_amphorae: int = 500,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._interval_s = flush_interval_s
        self._max = max(1, flush_max_amphorae)
        self._pending: dict[str, _Pending] = {}
        self._streams: set[Stream] = set()
        self._task: asyncio.Task[None] | None = None
        self._flush_now = asyncio.Event()
        self._last_ok = time.monotonic()
        self._failing = False
        #: Heartbeats received, and amphora entries written, since the start (for benchmarks and logs).
        self.received = 0
        self.written = 0

    # -- streams -----------------------------------------------------------------------------------

    def open(self, amphora_id: str, serial: str, peer: str) -> Stream:
        # An amphora that reconnected before this replica noticed its old call was gone has two for a while;
        # both report the same amphora, and keepalives end the dead one.
        stream = Stream(amphora_id, serial, peer)
        self._streams.add(stream)
        return stream

    def close(self, stream: Stream) -> None:
        self._streams.discard(stream)

    @property
    def streams(self) -> int:
        return len(self._streams)

    def open_streams(self) -> list[Stream]:
        return list(self._streams)

    def offer(self, stream: Stream, heartbeat: health_pb2.StreamHeartbeatsRequest) -> None:
        self.received += 1
        self._pending[stream.amphora_id] = _Pending(stream, heartbeat, utcnow())
        stream.last_seen = time.monotonic()
        stream.heard += 1
        if stream.quiet or stream.heard == 1:
            # Marked lost for its silence, or a new stream (maybe an amphora whose previous call broke, marked
            # lost by another replica): write that it lives now, before a failover claims it.
            stream.quiet = False
            self._flush_now.set()

    async def admit(self, stream: Stream, heartbeat: health_pb2.StreamHeartbeatsRequest) -> None:
        """Take a heartbeat before it is acknowledged: here at once (the flusher writes it); the benchmark's
        unbatched baseline writes it first."""
        self.offer(stream, heartbeat)

    def writes_ok(self) -> bool:
        """Whether heartbeats are being written (the last flush succeeded)."""
        return not self._failing

    # -- flushing ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat-flusher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.flush()  # what arrived last still counts

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.flush()
                if self._failing:
                    logger.info("heartbeats are written again")
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._failing:
                    logger.error("writing heartbeats failed: %s", exc)
                self._failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._flush_now.wait(), max(0.0, self._interval_s - (time.monotonic() - started))
                )
            self._flush_now.clear()

    async def flush(self) -> int:
        """Write everything pending; the number of amphorae written."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        try:
            records = await self._store.amphorae(batch)
        except Exception:
            self._restore(batch)
            raise
        items: list[Item] = []
        for amphora_id, pending in batch.items():
            reason = refusal(records.get(amphora_id), pending.stream.serial)
            if reason is not None:
                pending.stream.revoked = reason
                continue
            items.append(to_item(pending, records[amphora_id]))
        written = 0
        for start in range(0, len(items), self._max):
            chunk = items[start : start + self._max]
            try:
                result = await self._store.write(chunk)
            except Exception:
                self._restore({i.amphora_id: batch[i.amphora_id] for i in items[start:]})
                raise
            written += len(chunk)
            if result.changes:
                now, reporter = utcnow(), self._store.reporter
                self._publisher.publish([ev.encode(c, pj, amp, reporter, now) for c, pj, amp in result.changes])
                for change, _, amphora in result.changes:
                    logger.info(
                        "%s %s: %s -> %s (amphora %s)", change.kind, change.id, change.previous, change.status, amphora
                    )
        self.written += written
        return written

    def _restore(self, entries: dict[str, _Pending]) -> None:
        # Keep what could not be written for the next flush, unless a newer heartbeat came meanwhile.
        for amphora_id, pending in entries.items():
            self._pending.setdefault(amphora_id, pending)

    def pending_ids(self) -> Iterable[str]:
        return list(self._pending)
