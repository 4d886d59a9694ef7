"""From streams to batches: heartbeats are coalesced per amphora and written every ``flush_interval_s``.

A stream hands each heartbeat to :meth:`Ingest.offer`, which only replaces the amphora's pending entry (the
newest heartbeat says everything the older ones did: statuses are current and counters are totals), so the
memory and the database work per flush grow with the number of amphorae, never with the message rate.
The flusher writes the pending entries in transactions of at most ``flush_max_amphorae`` amphorae and then
publishes the status events of what it wrote.

Only what changed is written. The ingest remembers, per amphora, the report it last evaluated against the
database and the counters it last wrote: a report equal to the one evaluated less than ``status_recheck_s``
ago skips the read of its load balancer's tree (it would change no status), and only counters that changed
are upserted. ``amphora_health`` (the liveness the failover detector reads) is written for every amphora
heard. The recheck bounds how long a status written by someone else while the report stays the same (the
report itself changes with every configuration change the worker makes) goes uncorrected. A flush makes at
most ``flush_max_amphorae`` such re-checks, the oldest first, so that their cost does not grow with the number
of amphorae (each is a tree read).

A flush also re-checks the rows of the reporting amphorae whose last check is ``identity_recheck_s`` old: a
stream whose certificate stopped being the amphora's current one (rotated out, amphora deleted) is marked
revoked, and the servicer ends it at its next heartbeat. Stream openings are checked the same way, in
batches (:class:`AmphoraDirectory`): after a replica dies, thousands of amphorae reconnect to the others at
once.
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
from octavia_mesh.health.store import AmphoraRecord, BatchResult, Counters, HealthStore, Item, refusal
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
    record: AmphoraRecord | None = None  # the amphora's row, as last checked
    checked_at: float | None = None  # when (monotonic); None: never


@dataclass(slots=True)
class _Pending:
    stream: Stream
    heartbeat: health_pb2.StreamHeartbeatsRequest
    received_at: dt.datetime


@dataclass(slots=True)
class _Known:
    """What the database has of one amphora's reports, as far as this replica wrote or read it."""

    load_balancer_id: str | None
    report: st.Report | None = None  # the report last evaluated against a settled tree
    evaluated_at: float = 0.0  # when (monotonic)
    listeners: frozenset[str] | None = None  # the listener ids of the load balancer's tree when last read
    counters: dict[str, Counters] = field(default_factory=dict)  # listener id -> the totals last written


def to_item(pending: _Pending, record: AmphoraRecord) -> Item:
    """The batch entry of an amphora's heartbeat: its own load balancer's report and counters."""
    item = Item(
        amphora_id=record.id,
        load_balancer_id=record.load_balancer_id,
        allocated=record.status == AmphoraStatus.ALLOCATED,
        received_at=pending.received_at,
    )
    heartbeat = pending.heartbeat
    if heartbeat.HasField("sample_time"):
        stamp = heartbeat.sample_time  # naive UTC, as the database keeps times (cheaper than ToDatetime())
        sampled = _EPOCH + dt.timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)
        item.sampled_at = min(sampled, pending.received_at)
    # Plain loops rather than generators: this runs for every amphora of every flush.
    for lb in heartbeat.load_balancers:
        if lb.load_balancer_id != record.load_balancer_id:
            continue  # files of another load balancer left on the amphora: not its to report
        listeners: list[tuple[str, str]] = []
        counters: dict[str, Counters] = {}
        for li in lb.listeners:
            name, c = li.name, li.counters
            listeners.append((name, li.status))
            counters[name] = Counters(
                c.bytes_in, c.bytes_out, c.active_connections, c.total_connections, c.request_errors
            )
        backends = []
        for p in lb.pools:
            members = {}
            for m in p.members:
                members[m.name] = m.status
            backends.append((p.name, p.status, members))
        item.report = st.Report.of(lb.running, listeners, backends)
        item.counters = counters
    return item


_EPOCH = dt.datetime(1970, 1, 1)


class Ingest:
    """The open streams, the heartbeats waiting to be written, and the flusher that writes them."""

    def __init__(
        self,
        store: HealthStore,
        publisher: ev.EventPublisher,
        flush_interval_s: float = 0.25,
        flush_max_amphorae: int = 500,
        status_recheck_s: float = 2.0,
        identity_recheck_s: float = 1.0,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._interval_s = flush_interval_s
        self._max = max(1, flush_max_amphorae)
        self._status_recheck_s = status_recheck_s
        self._identity_recheck_s = identity_recheck_s
        self._pending: dict[str, _Pending] = {}
        self._streams: set[Stream] = set()
        self._open_per_amphora: dict[str, int] = {}
        self._known: dict[str, _Known] = {}
        self._task: asyncio.Task[None] | None = None
        self._flush_now = asyncio.Event()
        self._last_ok = time.monotonic()
        self._failing = False
        # When the oldest heartbeat still waiting (monotonic), and the oldest of the batch being written.
        self._pending_since: float | None = None
        self._writing_since: float | None = None
        #: Heartbeats received, and amphora entries written, since the start (for benchmarks and logs).
        self.received = 0
        self.written = 0

    # -- streams -----------------------------------------------------------------------------------

    def open(self, amphora_id: str, serial: str, peer: str, record: AmphoraRecord | None = None) -> Stream:
        """A new stream; ``record``: the amphora's row, as its opening was just checked against."""
        # An amphora that reconnected before this replica noticed its old call was gone has two for a while;
        # both report the same amphora, and keepalives end the dead one.
        stream = Stream(amphora_id, serial, peer, record=record)
        if record is not None:
            stream.checked_at = time.monotonic()
        self._streams.add(stream)
        self._open_per_amphora[amphora_id] = self._open_per_amphora.get(amphora_id, 0) + 1
        return stream

    def close(self, stream: Stream) -> None:
        if stream not in self._streams:
            return
        self._streams.discard(stream)
        left = self._open_per_amphora.pop(stream.amphora_id, 1) - 1
        if left > 0:
            self._open_per_amphora[stream.amphora_id] = left
        else:
            # Another replica may write its reports from now on: what this one remembers would go stale.
            self._known.pop(stream.amphora_id, None)

    @property
    def streams(self) -> int:
        return len(self._streams)

    def open_streams(self) -> list[Stream]:
        return list(self._streams)

    def offer(
        self, stream: Stream, heartbeat: health_pb2.StreamHeartbeatsRequest, received_at: dt.datetime | None = None
    ) -> None:
        """Take ``heartbeat`` (``received_at``: when, if the caller read the clock for a batch of them)."""
        self.received += 1
        now = time.monotonic()
        if not self._pending:
            self._pending_since = now
        self._pending[stream.amphora_id] = _Pending(stream, heartbeat, received_at or utcnow())
        stream.last_seen = now
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

    def backlog_s(self) -> float:
        """How long the oldest heartbeat read and not yet written has waited beyond one flush interval (0:
        none has): while it waits its amphora's row looks older than it is (lag.py)."""
        waiting = [t for t in (self._pending_since, self._writing_since) if t is not None]
        return max(0.0, time.monotonic() - min(waiting) - self._interval_s) if waiting else 0.0

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
        self._writing_since, self._pending_since = self._pending_since, None
        try:
            return await self._flush(batch)
        finally:
            self._writing_since = None

    async def _flush(self, batch: dict[str, _Pending]) -> int:
        now = time.monotonic()
        due = [
            amphora_id
            for amphora_id, pending in batch.items()
            if pending.stream.checked_at is None or now - pending.stream.checked_at >= self._identity_recheck_s
        ]
        try:
            records = await self._store.amphorae(due) if due else {}
        except Exception:
            self._restore(batch)
            raise
        for amphora_id in due:
            batch[amphora_id].stream.record = records.get(amphora_id)
            batch[amphora_id].stream.checked_at = now
        items: list[Item] = []
        rechecks: list[tuple[float, Item, frozenset[str]]] = []
        for pending in batch.values():
            record = pending.stream.record
            reason = refusal(record, pending.stream.serial)
            if reason is not None or record is None:
                pending.stream.revoked = reason
                continue
            items.append(self._only_changes(to_item(pending, record), now, rechecks))
        self._limit_rechecks(rechecks)
        written = 0
        for start in range(0, len(items), self._max):
            chunk = items[start : start + self._max]
            try:
                result = await self._store.write(chunk)
            except Exception:
                self._restore({i.amphora_id: batch[i.amphora_id] for i in items[start:]})
                raise
            written += len(chunk)
            self._remember(chunk, result, now)
            if result.changes:
                when, reporter = utcnow(), self._store.reporter
                self._publisher.publish([ev.encode(c, pj, amp, reporter, when) for c, pj, amp in result.changes])
                for change, _, amphora in result.changes:
                    logger.info(
                        "%s %s: %s -> %s (amphora %s)", change.kind, change.id, change.previous, change.status, amphora
                    )
        self.written += written
        return written

    def _only_changes(self, item: Item, now: float, rechecks: list[tuple[float, Item, frozenset[str]]]) -> Item:
        """``item`` less what the database already has: counters as last written, and the evaluation of a
        report as last evaluated (within ``status_recheck_s``; an older one is a re-check, added to
        ``rechecks``)."""
        known = self._known.get(item.amphora_id)
        if known is None or known.load_balancer_id != item.load_balancer_id:
            return item
        if known.counters:
            item.counters = {name: c for name, c in item.counters.items() if known.counters.get(name) != c}
        if item.allocated and known.listeners is not None and item.report is not None and item.report == known.report:
            if now - known.evaluated_at < self._status_recheck_s:
                item.evaluate, item.listeners = False, known.listeners
            else:
                rechecks.append((known.evaluated_at, item, known.listeners))
        return item

    def _limit_rechecks(self, rechecks: list[tuple[float, Item, frozenset[str]]]) -> None:
        """At most ``flush_max_amphorae`` re-checks of unchanged reports in one flush, the oldest first; the
        others wait for the next flush. Re-checks are most of the tree reads at scale (10,000 amphorae: 5,000 a
        second at the default 2 s), and they only guard against statuses written by someone else: their cost
        must not grow with the number of amphorae until the writes fall behind the heartbeats."""
        if len(rechecks) <= self._max:
            return
        rechecks.sort(key=lambda entry: entry[0])
        for _, item, listeners in rechecks[self._max :]:
            item.evaluate, item.listeners = False, listeners

    def _remember(self, items: list[Item], result: BatchResult, now: float) -> None:
        """What a committed batch wrote, for :meth:`_only_changes`."""
        by_id: dict[str, tuple[Item, _Known]] = {}
        for item in items:
            if item.amphora_id not in self._open_per_amphora:
                continue  # its stream closed meanwhile
            known = self._known.get(item.amphora_id)
            if known is None or known.load_balancer_id != item.load_balancer_id:
                known = self._known[item.amphora_id] = _Known(item.load_balancer_id)
            by_id[item.amphora_id] = (item, known)
            listeners = result.listeners.get(item.load_balancer_id or "")
            if listeners is not None:
                known.listeners = listeners
            if item.amphora_id in result.evaluated:
                known.report, known.evaluated_at = item.report, now
        for amphora_id, listener_id in result.statistics:
            entry = by_id.get(amphora_id)
            if entry is not None:
                entry[1].counters[listener_id] = entry[0].counters[listener_id]

    def _restore(self, entries: dict[str, _Pending]) -> None:
        # Keep what could not be written for the next flush, unless a newer heartbeat came meanwhile.
        if entries:
            waiting = [t for t in (self._pending_since, self._writing_since) if t is not None]
            self._pending_since = min(waiting) if waiting else time.monotonic()
        for amphora_id, pending in entries.items():
            self._pending.setdefault(amphora_id, pending)

    def pending_ids(self) -> Iterable[str]:
        return list(self._pending)
