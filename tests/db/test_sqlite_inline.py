"""The services' SQLite driver runs statements on the event loop's thread, and waits for the write lock off it.

Two engines on one file stand for two processes (the API and the worker): each has its own connections, and
SQLite's lock is all they share.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.db import sqlite_inline
from octavia_mesh.common.db.engine import make_engine, session_factories

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("OCTAVIA_MESH_TEST_DATABASE_URL")), reason="SQLite's driver: run once, in the SQLite tier"
)


async def _longest_stall(done: asyncio.Future[Any], seconds: float) -> float:
    """The longest the loop went without running a 10 ms timer within ``seconds`` (or until ``done``)."""
    loop = asyncio.get_running_loop()
    deadline = last = loop.time()
    deadline += seconds
    longest = 0.0
    while loop.time() < deadline and not done.done():
        await asyncio.sleep(0.01)
        longest, last = max(longest, loop.time() - last), loop.time()
    return longest


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two engines on one file with a table ``item``: the one that holds the lock, the one that waits."""
    url = f"sqlite:///{tmp_path / 'two.db'}"
    holder, waiter = make_engine(url), make_engine(url)
    try:
        async with holder.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE item (name TEXT)")
        yield holder, waiter
    finally:
        await holder.dispose()
        await waiter.dispose()


async def _insert(engine: AsyncEngine, name: str) -> None:
    _, write = session_factories(engine)
    async with write() as session, session.begin():  # BEGIN IMMEDIATE: finds the lock taken, or takes it
        await session.execute(text("INSERT INTO item VALUES (:n)"), {"n": name})


async def _names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT name FROM item ORDER BY rowid"))).scalars())


async def test_a_writer_waits_for_another_processes_lock_without_stopping_the_loop(
    processes: tuple[AsyncEngine, AsyncEngine],
) -> None:
    holder, waiter = processes
    _, hold = session_factories(holder)
    async with hold() as held, held.begin():  # BEGIN IMMEDIATE: takes the lock
        await held.execute(text("INSERT INTO item VALUES ('first')"))
        second = asyncio.ensure_future(_insert(waiter, "second"))
        # A wait on the loop's thread would stop it until the lock is free, and this holder runs on it too.
        stall = await _longest_stall(second, 1.0)
        assert not second.done(), "the second writer did not wait for the lock"
        assert stall < 0.5, f"the event loop stood still for {stall:.2f} s while a writer waited"
    await asyncio.wait_for(second, 5)  # the lock is free: it goes on at once
    assert await _names(waiter) == ["first", "second"]


async def test_a_writer_gives_up_after_the_busy_timeout(
    processes: tuple[AsyncEngine, AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock never released is an error for the waiting call (as SQLite's busy timeout was), not a hang."""
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT_MS", 300)
    holder, waiter = processes
    _, hold = session_factories(holder)
    async with hold() as held, held.begin():
        await held.execute(text("SELECT 1"))
        started = asyncio.get_running_loop().time()
        with pytest.raises(OperationalError, match="locked"):
            await _insert(waiter, "never")
        assert 0.25 < asyncio.get_running_loop().time() - started < 5
    await _insert(waiter, "later")  # the same pool works again once the lock is free
    assert await _names(waiter) == ["later"]


async def test_errors_other_than_a_busy_database_are_raised_at_once(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    try:
        async with engine.connect() as conn:
            with pytest.raises(OperationalError, match="no such table"):
                await conn.execute(text("SELECT * FROM missing"))
    finally:
        await engine.dispose()


async def test_a_cancelled_waiter_leaves_no_lock_behind(processes: tuple[AsyncEngine, AsyncEngine]) -> None:
    """A service stopping cancels a call that waits for the lock: the lock is not taken afterwards by the
    cancelled call's connection (a connection back in the pool holding it would stop every other writer)."""
    holder, waiter = processes
    _, hold = session_factories(holder)
    async with hold() as held, held.begin():
        await held.execute(text("SELECT 1"))
        cancelled = asyncio.ensure_future(_insert(waiter, "cancelled"))
        await asyncio.sleep(0.2)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    await asyncio.sleep(0.1)  # a thread still trying would have the lock by now
    await asyncio.wait_for(_insert(waiter, "after"), 3)
    assert await _names(holder) == ["after"]
