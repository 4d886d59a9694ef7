"""Housekeeping's periodic jobs, and the loop that runs each at its own interval.

Every job is idempotent and safe beside another replica running the same job, so housekeeping can run as
several replicas with no leader. A job that fails (database or NATS down) is logged and runs again at its
next interval.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common.db.models import utcnow
from octavia_mesh.housekeeping import metrics, orphans, pending, purge, rotation
from octavia_mesh.housekeeping.settings import HousekeepingSettings

logger = logging.getLogger(__name__)

#: The providers whose workers run amphorae (and so rotate certificates and reap instances).
AMPHORA_PROVIDERS = ("amphora",)


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval_s: float
    run: Callable[[], Awaitable[Any]]


class Housekeeper:
    """The jobs, on one database; ``wake`` is called after a job queued commands (the relay publishes them)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: HousekeepingSettings,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions, self.settings, self.wake = sessions, settings, wake

    async def cleanup(self, now: dt.datetime | None = None) -> dict[str, int]:
        """Purge expired and orphaned rows (``purge``); how many of each."""
        now = now or utcnow()
        s = self.settings

        def before(age_s: float) -> dt.datetime:
            return now - dt.timedelta(seconds=age_s)

        counts = {
            "load_balancer": await purge.purge_load_balancers(self.sessions, before(s.load_balancer_expiry_age_s)),
            "amphora": await purge.purge_amphorae(self.sessions, before(s.amphora_expiry_age_s)),
        }
        counts["provider_command"], counts["flow_progress"] = await purge.purge_records(
            self.sessions, before(s.record_expiry_age_s)
        )
        counts["amphora_health"], counts["listener_statistics"] = await purge.purge_gone_objects(self.sessions)
        for kind, count in counts.items():
            metrics.PURGED.labels(kind).inc(count)
        if any(counts.values()):
            logger.info("purged %s", ", ".join(f"{n} {k}" for k, n in counts.items() if n))
        return counts

    async def recover(self, now: dt.datetime | None = None) -> pending.Recovery:
        """Re-drive or give up changes stuck in PENDING_* (``pending``)."""
        recovery = await pending.recover_pending(self.sessions, self.settings.pending_timeout_s, now or utcnow())
        metrics.PENDING.labels("redriven").inc(len(recovery.redriven))
        metrics.PENDING.labels("given_up").inc(len(recovery.failed))
        if recovery.redriven or recovery.failed:
            self.wake()
        return recovery

    async def rotate(self, now: dt.datetime | None = None) -> list[str]:
        """Queue rotations of certificates that expire within the buffer (``rotation``)."""
        queued = await rotation.queue_rotations(
            self.sessions, AMPHORA_PROVIDERS, self.settings.cert_expiry_buffer_s, now or utcnow()
        )
        metrics.ROTATIONS.inc(len(queued))
        if queued:
            self.wake()
        return queued

    async def sweep_orphans(self) -> tuple[int, list[str]]:
        """Give back orphaned VIP addresses, and ask the workers to reap orphaned amphorae (``orphans``)."""
        released = await purge.release_orphaned_vips(self.sessions)
        if released:
            logger.warning("released %d VIP addresses whose load balancer is gone", released)
        queued = await orphans.queue_reaps(self.sessions, AMPHORA_PROVIDERS)
        metrics.ORPHANS.labels("vip_released").inc(released)
        metrics.ORPHANS.labels("amphora_reap_queued").inc(len(queued))
        if queued:
            self.wake()
        return released, queued

    def jobs(self) -> list[Job]:
        s = self.settings
        return [
            Job("cleanup", s.cleanup_interval_s, self.cleanup),
            Job("pending", s.pending_interval_s, self.recover),
            Job("certificates", s.cert_interval_s, self.rotate),
            Job("orphans", s.orphan_interval_s, self.sweep_orphans),
        ]


class Scheduler:
    """Runs each job now, then every ``interval_s`` after its previous run ended."""

    def __init__(self, jobs: list[Job]) -> None:
        self._jobs = jobs
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(job), name=f"housekeeping-{job.name}") for job in self._jobs]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @staticmethod
    async def _loop(job: Job) -> None:
        while True:
            started = time.monotonic()
            try:
                await job.run()
                metrics.JOB_RUNS.labels(job.name, "success").inc()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.JOB_RUNS.labels(job.name, "failure").inc()
                logger.warning("housekeeping job %s failed; retrying in %.0fs", job.name, job.interval_s, exc_info=True)
            metrics.JOB_SECONDS.labels(job.name).observe(time.monotonic() - started)
            await asyncio.sleep(job.interval_s)
