"""How far behind this health service has recently been in reading and writing heartbeats.

``amphora_health.last_update`` is when this service *read* a heartbeat, and a row changes only when the
flusher *writes* it. When the service is starved (a busy machine gives it no CPU for seconds, a slow database
holds its flush), heartbeats wait unread in sockets or unwritten in memory, and every amphora looks silent at
once although every amphora sent in time: the circuit breaker opened and closed over and over at a thousand
amphorae on a 2-core machine, and each close held failover for a whole heartbeat timeout.

The meter measures that starvation from inside: how late a short timer fires (the event loop or the whole
process had no CPU) and how old the oldest heartbeat waiting to be written is (beyond one flush interval). The
failover detector and the loss monitor judge silence against heartbeats the service had the chance to read:
they extend their thresholds by the largest lag of the recent window. An amphora that died is still judged
dead, at most that lag later; a lag never hides a broken stream (a dead process's connection closes at once).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: How often the timer fires.
TICK_S = 0.1
#: Lags below this are a loaded machine's ordinary jitter: not remembered.
NOISE_S = 0.05
#: A lag this large is logged (once per window).
LOUD_S = 1.0


class LagMeter:
    """The largest lag of the last ``window_s`` seconds (0 when the service kept up).

    Args:
        window_s: how long a lag keeps counting (the heartbeat timeout: every judgement of silence made
            within it may be about heartbeats the lag held up).
        backlog: the age (seconds) of the oldest heartbeat read and not yet written, beyond the flusher's
            own interval (0 when there is none).
    """

    def __init__(
        self,
        window_s: float,
        backlog: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self._backlog = backlog or (lambda: 0.0)
        self._clock = clock
        self._samples: collections.deque[tuple[float, float]] = collections.deque()  # (when, lag), lag falling
        self._task: asyncio.Task[None] | None = None
        self._logged_at = -float("inf")

    def note(self, lag: float, now: float | None = None) -> None:
        """A lag of ``lag`` seconds observed now."""
        now = self._clock() if now is None else now
        if lag < NOISE_S:
            return
        if lag >= LOUD_S and now - self._logged_at >= self.window_s:
            self._logged_at = now
            logger.warning(
                "health service %.2fs behind its heartbeats (no CPU, or a slow database): silence is judged "
                "that much later for %.0fs",
                lag,
                self.window_s,
            )
        # Only the maxima matter: a sample older and smaller than a newer one never decides again.
        while self._samples and self._samples[-1][1] <= lag:
            self._samples.pop()
        self._samples.append((now, lag))

    def recent(self, now: float | None = None) -> float:
        """The largest lag noted within the window."""
        now = self._clock() if now is None else now
        while self._samples and now - self._samples[0][0] > self.window_s:
            self._samples.popleft()
        return self._samples[0][1] if self._samples else 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lag-meter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        last = self._clock()
        while True:
            await asyncio.sleep(TICK_S)
            now = self._clock()
            self.note(max(now - last - TICK_S, self._backlog()), now)
            last = now
