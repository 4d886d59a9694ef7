"""When automatic failover may run: the circuit breaker, and the holds that keep it from acting on bad data.

A failover is the right answer to one dead amphora and the wrong answer to a dead health plane: when the
health service, its database or the network between amphorae and controllers fails, every amphora looks
silent at once, and rebuilding them all is Octavia's failover storm (a rebuild storm that overloads the
cloud, while the amphorae were serving all along). Octavia added a circuit breaker in 2022, off by default;
ours is on by default, and three holds cover the cases where silence is certainly ours, not the amphorae's:

* start-up grace: heartbeat streams reconnect after a health service restart;
* database trouble: while this replica cannot read or write, and for a heartbeat timeout after it can again
  (so that heartbeats are written before anything is judged stale);
* breaker recovery: for a heartbeat timeout after the breaker closes, amphorae not heard from since it
  closed are not failed over, so that those whose heartbeats are still coming back are not taken for dead
  ones. Only those: an amphora heard after the close that goes silent again is judged as usual. (Holding
  every failover after each close made a breaker that flapped open and shut on a starved machine, heartbeats
  late by the hundred, hold the failover of one really dead amphora for 30 s at a thousand amphorae.)

What counts as silent is judged against heartbeats the health service had the CPU to read
(:mod:`octavia_mesh.health.lag`): a starved service sees every amphora late at once.

This module is pure logic on a monotonic clock; :mod:`octavia_mesh.health.failover` feeds it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: While the breaker stays open, the error is logged again this often.
REMIND_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When too many amphorae are silent at once to be individual failures.

    The breaker opens when more than ``max_silent`` amphorae are silent, or when at least two are and they are
    more than ``max_silent_percent`` % of the amphorae monitored. A single silent amphora never opens it. Zero
    turns a rule off; both zero turns the breaker off.
    """

    max_silent: int = 10
    max_silent_percent: float = 50.0

    def trips(self, silent: int, monitored: int) -> bool:
        if self.max_silent > 0 and silent > self.max_silent:
            return True
        return self.max_silent_percent > 0 and silent >= 2 and silent * 100.0 > self.max_silent_percent * monitored


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether automatic failover may claim amphorae now, and if not, why."""

    armed: bool
    reason: str = ""


class Gate:
    """Decides, scan by scan, whether automatic failover is armed.

    ``hold_s`` is the heartbeat timeout: how long after a start, a database recovery or a breaker close the
    gate stays shut, so that every live amphora has had time to be heard from again.
    """

    def __init__(self, policy: BreakerPolicy, hold_s: float, startup_grace_s: float, started_at: float) -> None:
        self.policy = policy
        self.hold_s = hold_s
        self.breaker_open = False
        self._hold_until = started_at + startup_grace_s
        self._hold_reason = "start-up grace: heartbeat streams are reconnecting"
        #: When (monotonic) the breaker last closed; None: never.
        self.closed_at: float | None = None
        self._database_down = False
        self._writes_failing = False
        self._reminded_at = 0.0

    def _hold(self, now: float, reason: str) -> None:
        if now + self.hold_s > self._hold_until:
            self._hold_until, self._hold_reason = now + self.hold_s, reason

    def database_failed(self, error: BaseException) -> Verdict:
        """A scan could not read or write the database: nothing is judged until it can again."""
        if not self._database_down:
            logger.warning("failover held: the database is unavailable (%s)", error)
        self._database_down = True
        return Verdict(False, "the database is unavailable")

    def assess(self, now: float, silent: int, monitored: int, writes_ok: bool = True) -> Verdict:
        """The verdict for one scan that saw ``silent`` of ``monitored`` amphorae silent."""
        if self._database_down:
            self._database_down = False
            logger.warning("database reachable again: failover held %.1fs while heartbeats are written", self.hold_s)
            self._hold(now, "the database just came back")
        if not writes_ok:
            if not self._writes_failing:
                logger.warning("failover held: this replica cannot write heartbeats")
            self._writes_failing = True
            return Verdict(False, "heartbeat writes are failing")
        if self._writes_failing:
            self._writes_failing = False
            self._hold(now, "heartbeat writes just recovered")
        if self.policy.trips(silent, monitored):
            if not self.breaker_open or now - self._reminded_at >= REMIND_EVERY_S:
                logger.error(
                    "failover circuit breaker OPEN: %d of %d amphorae are silent at once (limits: more than %d, "
                    "or more than %g%%); no automatic failover until their heartbeats return. This is what a "
                    "failure of the health service, its database or the management network looks like; an "
                    "operator may still fail over single load balancers through the API.",
                    silent,
                    monitored,
                    self.policy.max_silent,
                    self.policy.max_silent_percent,
                )
                self._reminded_at = now
            self.breaker_open = True
            return Verdict(False, f"circuit breaker open: {silent} of {monitored} amphorae silent")
        if self.breaker_open:
            self.breaker_open = False
            self.closed_at = now
            logger.warning(
                "failover circuit breaker closed: %d of %d amphorae silent; automatic failover resumes, except "
                "for amphorae not heard from since, which get %.1fs to be heard again",
                silent,
                monitored,
                self.hold_s,
            )
        if now < self._hold_until:
            return Verdict(False, self._hold_reason)
        return Verdict(True)

    def unheard_held_since(self, now: float) -> float | None:
        """Within a heartbeat timeout of the breaker's close, the (monotonic) time it closed: amphorae not heard
        from since then are not failed over yet. None otherwise."""
        if self.closed_at is not None and not self.breaker_open and now < self.closed_at + self.hold_s:
            return self.closed_at
        return None
