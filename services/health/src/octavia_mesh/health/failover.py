"""Automatic failover: amphorae that stop reporting are replaced by the worker's failover flow.

Every ``failover_scan_interval_s`` the detector reads ``amphora_health`` (which the heartbeat streams keep
fresh) and:

1. counts the monitored amphorae (ALLOCATED, with a health row, not already claimed) and the *silent* ones
   (not heard from for half the heartbeat timeout: by the time the first of a health-plane outage's victims
   is stale, all of them are silent, so the breaker sees the outage whole, not its first few rows);
2. asks the :class:`~octavia_mesh.health.breaker.Gate` whether failover is armed (start-up grace, database
   trouble, circuit breaker);
3. claims *stale* amphorae (silent for the whole heartbeat timeout), oldest first, at most
   ``failover_max_per_scan`` per scan and ``failover_max_in_flight`` claimed and not yet finished across all
   replicas: Octavia's storms came from unbounded parallel rebuilds.

A claim is one transaction, as the API's own failover: the health row turns ``busy`` (only if it is still
stale and unclaimed), the load balancer turns PENDING_UPDATE (only from ACTIVE or ERROR, Octavia's
``FAILOVERABLE_STATUSES``; a load balancer already PENDING_* is left to the change in flight), and the
provider command ``AMPHORA FAILOVER`` joins the outbox (``lifecycle.transitions.claim_for_failover``: the
rule of the API's and the worker's failovers too). Conditional UPDATEs with their row counts checked
make the claim safe with any number of health replicas. The health service never imports the worker: the
command goes out through a local outbox relay, which publishes what this process commits (the API's relay,
the outbox's owner, sweeps up anything left).

Housekeeping of the table happens here too: rows of amphorae that are gone are deleted, a claim whose
failover failed (the load balancer settled while the amphora is still ALLOCATED) is released for a retry
after :data:`FAILED_RETRY_S`, and ALLOCATED amphorae that never reported are logged (they cannot be failed
over: a health plane that hears nothing must be loud, not silent as in Octavia).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, exists, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from octavia_mesh.common import commands
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.engine import make_engine, rowcount, session_factories
from octavia_mesh.common.db.models import Amphora, AmphoraHealth, LoadBalancer, utcnow
from octavia_mesh.common.db.retry import retry_transaction
from octavia_mesh.common.lifecycle import FAILOVERABLE, AmphoraStatus
from octavia_mesh.common.lifecycle.transitions import claim_for_failover
from octavia_mesh.health import metrics
from octavia_mesh.health.breaker import BreakerPolicy, Gate, Verdict

logger = logging.getLogger(__name__)

#: grpc.health.v1 service name: SERVING while automatic failover is armed, NOT_SERVING while it is held
#: (start-up grace, database trouble, circuit breaker open, disabled).
AUTOMATIC_FAILOVER = "octavia_mesh.health.AutomaticFailover"
#: A claim whose failover failed is released for another attempt after this long.
FAILED_RETRY_S = 30.0
#: How often the table is tidied (gone amphorae, failed claims, amphorae that never reported).
TIDY_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class DetectorPolicy:
    """The detector's settings (from the health service's ``heartbeat_timeout_s`` and ``failover_*``)."""

    heartbeat_timeout_s: float = 5.0
    scan_interval_s: float = 1.0
    max_per_scan: int = 2
    max_in_flight: int = 5
    startup_grace_s: float = 15.0
    loss_confirm_s: float = 0.2
    #: An amphora unheard for this long counts as silent for the breaker (None: half the heartbeat timeout).
    breaker_silence_s: float | None = None
    enabled: bool = True
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)

    @classmethod
    def from_settings(cls, settings: Any) -> DetectorPolicy:
        return cls(
            heartbeat_timeout_s=settings.heartbeat_timeout_s,
            scan_interval_s=settings.failover_scan_interval_s,
            max_per_scan=settings.failover_max_per_scan,
            max_in_flight=settings.failover_max_in_flight,
            startup_grace_s=settings.failover_startup_grace_s,
            loss_confirm_s=settings.loss_confirm_s,
            breaker_silence_s=breaker_silence(settings),
            enabled=settings.failover_enabled,
            breaker=BreakerPolicy(settings.failover_breaker_max_silent, settings.failover_breaker_max_silent_percent),
        )


def breaker_silence(settings: Any) -> float:
    """How long unheard makes an amphora count as silent for the circuit breaker.

    A quiet stream is marked lost after ``stream_silence_s`` and claimed ``loss_confirm_s`` later. Amphorae hung
    at the same moment sent their last heartbeats up to one interval apart, so when the first of them is claimed
    every other one has been unheard for at least ``stream_silence_s - heartbeat_interval_s + loss_confirm_s``:
    counting from there, the breaker sees the whole mass hang before the first claim (half the timeout alone let
    the first losses of a mass hang be claimed while the others were still counted as healthy).
    """
    half_timeout = settings.heartbeat_timeout_s / 2
    if not settings.stream_silence_s:
        return half_timeout
    mass_hang = settings.stream_silence_s - settings.heartbeat_interval_s + settings.loss_confirm_s
    return min(half_timeout, max(settings.heartbeat_interval_s, mass_hang))


@dataclass(slots=True)
class ScanResult:
    """What one scan saw and did."""

    verdict: Verdict
    monitored: int = 0
    silent: int = 0
    in_flight: int = 0
    claimed: list[str] = field(default_factory=list)
    #: How far behind its heartbeats the service recently was (lag.py): silence was judged that much later.
    lag_s: float = 0.0


class _Lost(Exception):
    """Another replica, a heartbeat or a change got there first: the claim is rolled back."""


class FailoverDetector:
    """Finds stale amphorae and queues their failover, within the rate limit and the breaker's verdict.

    Args:
        engine: the database (the one the heartbeat writers fill).
        policy: timeouts, limits and breaker thresholds.
        wake: called after a claim commits (the outbox relay's ``wake``), so the command goes out at once.
        on_verdict: called with every verdict that differs from the previous one.
        writes_ok: whether this replica's heartbeat writes currently succeed (failover is held while not).
        lag: how far behind its heartbeats this replica recently was (``LagMeter.recent``): amphorae are
            judged silent and stale that much later.
        clock: monotonic seconds (grace and holds); ``now``: naive UTC, as ``last_update`` is stored.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        policy: DetectorPolicy,
        *,
        wake: Callable[[], None] | None = None,
        on_verdict: Callable[[Verdict], Any] | None = None,
        writes_ok: Callable[[], bool] | None = None,
        lag: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.policy = policy
        self._read, self._write = session_factories(engine)
        self._wake = wake
        self._on_verdict = on_verdict
        self._writes_ok = writes_ok or (lambda: True)
        self._lag = lag or (lambda: 0.0)
        self._clock = clock
        self._now = now
        self.gate = Gate(policy.breaker, policy.heartbeat_timeout_s, policy.startup_grace_s, clock())
        self.verdict: Verdict | None = None
        self.last_scan: ScanResult | None = None  # what the metrics show
        self._next_tidy = 0.0
        self._failed_since: dict[str, float] = {}
        self._never_reported: set[str] = set()
        self._started_at = clock()
        self._poked = asyncio.Event()
        self._claimed_at: collections.deque[float] = collections.deque()  # this replica's recent claims
        self._closed_at: dt.datetime | None = None  # when (as last_update is stored) the breaker last closed

    # -- the loop ----------------------------------------------------------------------------------

    def poke(self) -> None:
        """A loss was marked (loss.py): scan once it is ``loss_confirm_s`` old, not at the next regular scan."""
        self._poked.set()

    async def run(self) -> None:
        """Scan every ``scan_interval_s``, and after every poke, until cancelled."""
        while True:
            started = self._clock()
            await self.scan()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._poked.wait(), max(0.0, self.policy.scan_interval_s - (self._clock() - started))
                )
                self._poked.clear()
                await asyncio.sleep(self.policy.loss_confirm_s + 0.01)
                self._poked.clear()  # losses marked meanwhile are old enough now, or the next poke's

    def _stale(self, stale_before: dt.datetime, confirmed_before: dt.datetime) -> ColumnElement[bool]:
        """Not heard from for the heartbeat timeout, or lost (stream broken or quiet) with nothing heard since,
        for ``loss_confirm_s``."""
        lost = and_(
            AmphoraHealth.lost_at.is_not(None),
            AmphoraHealth.lost_at >= AmphoraHealth.last_update,
            AmphoraHealth.lost_at < confirmed_before,
        )
        return or_(AmphoraHealth.last_update < stale_before, lost)

    async def scan(self) -> ScanResult:
        """One pass: count, judge, claim. Database errors hold failover; they never end the loop."""
        try:
            result = await self._scan()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, SQLAlchemyError | OSError):  # a bug, not an outage: say so, and hold all the same
                logger.exception("failover scan failed")
            result = ScanResult(self.gate.database_failed(exc))
        self.last_scan = result
        await self._report(result.verdict)
        return result

    async def _report(self, verdict: Verdict) -> None:
        if verdict == self.verdict:
            return
        self.verdict = verdict
        if verdict.armed:
            logger.info("automatic failover armed")
        else:
            logger.info("automatic failover held: %s", verdict.reason)
        if self._on_verdict is not None:
            outcome = self._on_verdict(verdict)
            if asyncio.iscoroutine(outcome):
                await outcome

    async def _scan(self) -> ScanResult:
        mono, now = self._clock(), self._now()
        timeout = dt.timedelta(seconds=self.policy.heartbeat_timeout_s)
        silence = self.policy.breaker_silence_s
        # Heartbeats this service had no CPU to read (or write) yet would look like silence: judged later.
        lag_s = self._lag()
        lag = dt.timedelta(seconds=lag_s)
        silent_before = now - (timeout / 2 if silence is None else dt.timedelta(seconds=silence)) - lag
        stale_before = now - timeout - lag
        stale = self._stale(stale_before, now - dt.timedelta(seconds=self.policy.loss_confirm_s))
        if mono >= self._next_tidy:
            await self._tidy(mono, now)
            self._next_tidy = mono + TIDY_EVERY_S
        monitored_rows = (
            select(AmphoraHealth.last_update, AmphoraHealth.lost_at)
            .join(Amphora, Amphora.id == AmphoraHealth.amphora_id)
            .where(Amphora.status == AmphoraStatus.ALLOCATED, AmphoraHealth.busy.is_(False))
            .subquery()
        )
        async with self._read() as session:
            monitored, silent = (
                await session.execute(
                    # SUM(CASE ...), not COUNT(*) FILTER: MariaDB has no FILTER clause.
                    select(
                        func.count(),
                        func.coalesce(
                            func.sum(
                                case(
                                    (monitored_rows.c.last_update < silent_before, 1),
                                    # A loss counts at once: the breaker must see a mass death before claims.
                                    (monitored_rows.c.lost_at >= monitored_rows.c.last_update, 1),
                                    else_=0,
                                )
                            ),
                            0,
                        ),
                    ).select_from(monitored_rows)
                )
            ).one()
            in_flight = (
                await session.scalar(
                    select(func.count())
                    .select_from(AmphoraHealth)
                    .join(Amphora, Amphora.id == AmphoraHealth.amphora_id)
                    .where(AmphoraHealth.busy.is_(True), Amphora.status != AmphoraStatus.DELETED)
                )
            ) or 0
        monitored, silent = int(monitored), int(silent)  # MariaDB sums to Decimal
        was_open = self.gate.breaker_open
        verdict = self.gate.assess(mono, silent, monitored, self._writes_ok())
        if was_open and not self.gate.breaker_open:
            self._closed_at = now
        if verdict.armed and not self.policy.enabled:
            verdict = Verdict(False, "automatic failover is disabled (failover_enabled)")
        result = ScanResult(verdict, monitored, silent, in_flight, lag_s=lag_s)
        if self.gate.unheard_held_since(mono) is not None and self._closed_at is not None:
            # The breaker just closed: amphorae not heard from since may be heartbeats still coming back.
            stale = and_(stale, AmphoraHealth.last_update >= self._closed_at)
        # Scans come early after a loss, so the per-scan limit is kept per scan interval, whatever the scans.
        while self._claimed_at and mono - self._claimed_at[0] >= self.policy.scan_interval_s:
            self._claimed_at.popleft()
        budget = min(self.policy.max_per_scan - len(self._claimed_at), self.policy.max_in_flight - in_flight)
        if not verdict.armed or budget <= 0:
            return result
        async with self._read() as session:
            candidates = (
                await session.execute(
                    select(
                        AmphoraHealth.amphora_id,
                        AmphoraHealth.last_update,
                        Amphora.load_balancer_id,
                        AmphoraHealth.lost_at,
                    )
                    .join(Amphora, Amphora.id == AmphoraHealth.amphora_id)
                    .join(LoadBalancer, LoadBalancer.id == Amphora.load_balancer_id)
                    .where(
                        AmphoraHealth.busy.is_(False),
                        stale,
                        Amphora.status == AmphoraStatus.ALLOCATED,
                        LoadBalancer.provisioning_status.in_(FAILOVERABLE),
                    )
                    .order_by(AmphoraHealth.last_update)
                    .limit(budget * 4)  # some may be lost to a replica or a change; the rest wait a scan
                )
            ).all()
        for amphora_id, last_update, lb_id, lost_at in candidates:
            if len(result.claimed) >= budget:
                break
            if lb_id is None:  # joined on the load balancer: never, but the column may be NULL
                continue
            claimed = await self._claim(amphora_id, lb_id, stale)
            reason = "stream_lost" if lost_at is not None and lost_at >= last_update else "heartbeat_timeout"
            metrics.FAILOVER_CLAIMS.labels(reason, "claimed" if claimed else "lost").inc()
            if claimed:
                result.claimed.append(amphora_id)
                self._claimed_at.append(mono)
                logger.warning(
                    "amphora %s of load balancer %s silent since %s (%.1fs): failover queued",
                    amphora_id,
                    lb_id,
                    last_update.isoformat(sep=" ", timespec="milliseconds"),
                    (now - last_update).total_seconds(),
                )
        if result.claimed and self._wake is not None:
            self._wake()
        return result

    # -- claiming ----------------------------------------------------------------------------------

    async def _claim(self, amphora_id: str, lb_id: str, stale: ColumnElement[bool]) -> bool:
        async def work() -> None:
            async with self._write() as session, session.begin():
                await self._claim_in(session, amphora_id, lb_id, stale)

        try:
            await retry_transaction(work)
        except _Lost:
            return False
        return True

    async def _claim_in(self, session: AsyncSession, amphora_id: str, lb_id: str, stale: ColumnElement[bool]) -> None:
        claimed = await session.execute(
            update(AmphoraHealth)
            .where(AmphoraHealth.amphora_id == amphora_id, AmphoraHealth.busy.is_(False), stale)
            .values(busy=True)
        )
        if rowcount(claimed) != 1:
            raise _Lost
        if not await claim_for_failover(session, lb_id):
            raise _Lost
        # With the load balancer locked no flow can change its amphorae: this read stays true until commit.
        amphora = (
            await session.execute(select(Amphora.status, Amphora.load_balancer_id).where(Amphora.id == amphora_id))
        ).one_or_none()
        if amphora is None or tuple(amphora) != (AmphoraStatus.ALLOCATED, lb_id):
            raise _Lost
        provider = await session.scalar(select(LoadBalancer.provider).where(LoadBalancer.id == lb_id))
        if provider is None:
            raise _Lost
        commands.new_command(session, provider, Kind.RESOURCE_KIND_AMPHORA, Op.OPERATION_FAILOVER, amphora_id, lb_id)

    # -- tidying -----------------------------------------------------------------------------------

    async def _tidy(self, mono: float, now: dt.datetime) -> None:
        live = exists().where(Amphora.id == AmphoraHealth.amphora_id, Amphora.status != AmphoraStatus.DELETED)
        async with self._write() as session, session.begin():
            gone = await session.execute(delete(AmphoraHealth).where(~live))
        if rowcount(gone):
            logger.info("forgot the health of %d amphorae that are gone", rowcount(gone))
        async with self._read() as session:
            # Claimed, yet the load balancer settled and the amphora is still there: that failover failed.
            failed = set(
                (
                    await session.execute(
                        select(AmphoraHealth.amphora_id)
                        .join(Amphora, Amphora.id == AmphoraHealth.amphora_id)
                        .join(LoadBalancer, LoadBalancer.id == Amphora.load_balancer_id)
                        .where(
                            AmphoraHealth.busy.is_(True),
                            Amphora.status == AmphoraStatus.ALLOCATED,
                            LoadBalancer.provisioning_status.in_(FAILOVERABLE),
                        )
                    )
                ).scalars()
            )
            silent_since_start = self._started_at + self.policy.startup_grace_s + self.policy.heartbeat_timeout_s
            unheard = (
                set(
                    (
                        await session.execute(
                            select(Amphora.id).where(
                                Amphora.status == AmphoraStatus.ALLOCATED,
                                Amphora.load_balancer_id.is_not(None),
                                ~exists().where(AmphoraHealth.amphora_id == Amphora.id),
                                Amphora.updated_at < now - dt.timedelta(seconds=self.policy.heartbeat_timeout_s),
                            )
                        )
                    ).scalars()
                )
                if mono >= silent_since_start
                else set()
            )
        self._failed_since = {a: self._failed_since.get(a, mono) for a in failed}
        retry = [a for a, since in self._failed_since.items() if mono - since >= FAILED_RETRY_S]
        if retry:
            async with self._write() as session, session.begin():
                await session.execute(
                    update(AmphoraHealth)
                    .where(AmphoraHealth.amphora_id.in_(retry), AmphoraHealth.busy.is_(True))
                    .values(busy=False)
                )
            logger.warning("failover of amphorae %s did not replace them; released for another attempt", retry)
            metrics.FAILOVERS_RELEASED.inc(len(retry))
            for amphora_id in retry:
                self._failed_since.pop(amphora_id, None)
        fresh = unheard - self._never_reported
        if fresh:
            logger.error(
                "amphorae %s never reported a heartbeat: they cannot be failed over. Check that their agents "
                "reach the health service.",
                sorted(fresh),
            )
        self._never_reported = unheard


class FailoverService:
    """The detector as a task of the health service, with its outbox relay and its health status.

    The relay connects to NATS in the background: the health service must start, and heartbeats must be
    written, whether or not NATS is up (commands wait in the outbox, which the API's relay also sweeps).
    """

    def __init__(
        self,
        settings: Any,
        health: Any | None = None,
        *,
        engine: AsyncEngine | None = None,
        writes_ok: Callable[[], bool] | None = None,
        lag: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self._health = health
        self._own_engine = engine is None
        self.engine = engine if engine is not None else make_engine(settings.database_url)
        self.detector = FailoverDetector(
            self.engine,
            DetectorPolicy.from_settings(settings),
            wake=self._wake,
            on_verdict=self._publish_verdict,
            writes_ok=writes_ok,
            lag=lag,
        )
        self._relay: commands.OutboxRelay | None = None
        self._nats: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    def _wake(self) -> None:
        if self._relay is not None:
            self._relay.wake()

    async def _publish_verdict(self, verdict: Verdict) -> None:
        if self._health is not None:
            await self._health.set_status(AUTOMATIC_FAILOVER, verdict.armed)

    async def start(self) -> None:
        if self._health is not None:
            await self._health.set_status(AUTOMATIC_FAILOVER, False)
        self._tasks = [
            asyncio.create_task(self.detector.run(), name="failover-detector"),
            asyncio.create_task(self._connect_relay(), name="failover-relay"),
        ]

    async def _connect_relay(self) -> None:
        complained = False
        while True:
            try:
                self._nats, js = await commands.connect(self.settings.nats_url, "octavia-mesh-health")
                await commands.ensure_stream(js)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not complained:
                    logger.warning("NATS unreachable (%s): failover commands wait in the outbox", exc)
                    complained = True
                if self._nats is not None:
                    with contextlib.suppress(Exception):
                        await self._nats.close()
                    self._nats = None
                await asyncio.sleep(1.0)
        _, write = session_factories(self.engine)
        self._relay = commands.OutboxRelay(write, js, owner=False)
        self._relay.start()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._relay is not None:
            await self._relay.stop()
        if self._nats is not None:
            await commands.close_nats(self._nats)
        if self._own_engine:
            await self.engine.dispose()


async def start(settings: Any, health: Any | None = None, **kwargs: Any) -> FailoverService:
    """Start automatic failover for the health service (``await service.stop()`` on shutdown)."""
    service = FailoverService(settings, health, **kwargs)
    await service.start()
    return service


__all__ = [
    "AUTOMATIC_FAILOVER",
    "DetectorPolicy",
    "FailoverDetector",
    "FailoverService",
    "ScanResult",
    "start",
]
