"""Fast loss detection: a heartbeat stream that breaks, or goes quiet while connected, marks its amphora lost.

The heartbeat timeout (``heartbeat_timeout_s``, read from ``amphora_health.last_update``) sees every kind of
silence, but only after seconds. Two signals are faster, and only the replica holding the stream has them:

* **broken**: the call ended without the agent's farewell (``closing``, sent before every end it chooses: a
  certificate rotation, a move to another replica). A killed agent's kernel closes its connection at once,
  so this is seen within milliseconds of the death;
* **quiet**: the call stays open but no heartbeat came for ``stream_silence_s`` (a few intervals): a hung
  (SIGSTOPped, deadlocked) agent, or a network that drops packets without closing connections.

Either writes ``amphora_health.lost_at`` (when it was seen) and pokes the failover detector. The detector
treats a row with ``lost_at >= last_update`` (nothing heard since) as silent at once, which the circuit
breaker counts, and as stale once the loss is ``loss_confirm_s`` old (so that the losses of a mass event,
seen by several replicas, all reach the database before anything is claimed). Any heartbeat written later
(``last_update > lost_at``) undoes the mark by itself: no row is ever cleared. A replica that is stopping
marks nothing, and one whose event loop stalled (its own streams all look quiet) judges no silence until it
has caught up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import AmphoraHealth, utcnow
from octavia_mesh.health import metrics

logger = logging.getLogger(__name__)

#: How often open streams are checked for silence.
TICK_S = 0.1
#: Losses seen within this window are written in one statement.
BATCH_WINDOW_S = 0.02


class LossMonitor:
    """Marks amphorae lost in the database when their stream breaks or goes quiet (see the module docstring).

    Args:
        engine: the database.
        streams: the open streams (objects with ``amphora_id``, ``last_seen`` and ``quiet``), read every tick.
        silence_s: a stream quiet this long is lost (0: only broken streams are).
        on_lost: called after marks commit (the failover detector's ``poke``).
        lag: how far behind its heartbeats this service recently was (``LagMeter.recent``): a stream is quiet
            only once silent that much longer (its heartbeats may be waiting unread).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        streams: Callable[[], Iterable[Any]],
        silence_s: float,
        on_lost: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        lag: Callable[[], float] | None = None,
    ) -> None:
        _, self._write = session_factories(engine)
        self._streams = streams
        self._silence_s = silence_s
        self.on_lost = on_lost
        self._clock = clock
        self._lag = lag or (lambda: 0.0)
        self._queue: dict[str, dt.datetime] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._judge_after = 0.0
        self.closing = False
        #: Losses marked since the start (for tests and logs).
        self.marked = 0

    def start(self) -> None:
        self._judge_after = self._clock() + self._silence_s
        self._tasks = [asyncio.create_task(self._writer(), name="loss-writer")]
        if self._silence_s > 0:
            self._tasks.append(asyncio.create_task(self._watch(), name="loss-watchdog"))

    async def stop(self) -> None:
        self.closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def lost(self, amphora_id: str, why: str, kind: str = "broken") -> None:
        """``amphora_id``'s stream broke (``kind`` broken) or went quiet (quiet) now."""
        if self.closing:
            return
        logger.warning("heartbeat stream of amphora %s %s", amphora_id, why)
        metrics.STREAM_LOSSES.labels(kind).inc()
        self._queue.setdefault(amphora_id, utcnow())
        self._wake.set()

    async def _watch(self) -> None:
        last = self._clock()
        while True:
            await asyncio.sleep(TICK_S)
            now = self._clock()
            if now - last > TICK_S + self._silence_s / 2:
                # This loop was starved: heartbeats that arrived meanwhile are not read yet, and every stream
                # would look quiet. Judge again once they have had time to be.
                logger.warning(
                    "heartbeat loop stalled for %.2fs: not judging silence for %.1fs", now - last, self._silence_s
                )
                self._judge_after = now + self._silence_s
            last = now
            if now < self._judge_after:
                continue
            silence = self._silence_s + self._lag()
            for stream in list(self._streams()):
                if not stream.quiet and now - stream.last_seen > silence:
                    stream.quiet = True
                    self.lost(stream.amphora_id, f"sent nothing for {now - stream.last_seen:.2f}s (connected)", "quiet")

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(BATCH_WINDOW_S)
            self._wake.clear()
            batch, self._queue = self._queue, {}
            try:
                async with self._write() as session, session.begin():
                    for amphora_id, seen in batch.items():
                        await session.execute(
                            update(AmphoraHealth)
                            .where(AmphoraHealth.amphora_id == amphora_id, AmphoraHealth.busy.is_(False))
                            .values(lost_at=seen)
                        )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the heartbeat timeout still sees them
                logger.error("could not mark amphorae %s lost: %s", sorted(batch), exc)
                continue
            self.marked += len(batch)
            if self.on_lost is not None:
                with contextlib.suppress(Exception):
                    self.on_lost()
