"""The health service's lag meter: how far behind its heartbeats a starved service is (health/lag.py)."""

from __future__ import annotations

import asyncio
import time

from octavia_mesh.health.lag import LagMeter


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def test_a_starved_event_loop_is_measured_and_forgotten_after_the_window() -> None:
    meter = LagMeter(window_s=60.0)
    meter.start()
    try:
        await asyncio.sleep(0.3)
        assert meter.recent() < 0.5, "a loop that kept up has no lag worth the name"
        time.sleep(0.8)  # noqa: ASYNC251 - the starvation under test: nothing else runs meanwhile
        await asyncio.sleep(0.3)
        assert meter.recent() >= 0.6
    finally:
        await meter.stop()
    assert meter.recent(time.monotonic() + 61.0) == 0.0, "only the window counts"


async def test_an_unwritten_backlog_counts_as_lag() -> None:
    backlog = {"s": 0.0}
    meter = LagMeter(window_s=60.0, backlog=lambda: backlog["s"])
    meter.start()
    try:
        backlog["s"] = 2.5  # the flusher is stuck on a slow database: rows look older than they are
        await asyncio.sleep(0.3)
        assert meter.recent() >= 2.5
    finally:
        await meter.stop()


def test_the_largest_lag_of_the_window_decides() -> None:
    clock = Clock()
    meter = LagMeter(window_s=10.0, clock=clock)
    meter.note(0.01)
    assert meter.recent() == 0.0, "jitter is not lag"
    meter.note(3.0)
    clock.t += 4
    meter.note(1.0)
    assert meter.recent() == 3.0
    clock.t += 6.5
    assert meter.recent() == 1.0, "the 3 s lag left the window; the later, smaller one still counts"
    clock.t += 4
    assert meter.recent() == 0.0
