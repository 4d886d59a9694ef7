"""SQLite's write transactions of one process take turns (``common.db.engine._WriteGate``).

A process's write transactions asked for together (the worker applies its commands side by side) queue in the
process instead of polling SQLite's one write lock from as many driver threads, with sleeps that grow to 100 ms.
Pinned here on a real SQLite file whose connections wait for a lock 0.1 s at most (``busy_timeout``) while each
writer holds it 0.3 s: writers of one process asked for together all commit, because none asks SQLite for the
lock before the one ahead of it has ended its transaction (the gate opens as its COMMIT is sent: the next may
wait that long, well under 0.1 s); a rolled-back one lets the next through; reads never wait; an engine kept
across event loops (a test's ``asyncio.run``) still works. Without the gate the second writer gets "database
is locked" after 0.1 s.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import PendingRollbackError
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.db.engine import make_engine, session_factories


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gate.db'}"


def _impatient(url: str) -> AsyncEngine:
    """The services' engine, except that a lock held by another connection fails a statement after 0.1 s."""
    engine = make_engine(url)

    @event.listens_for(engine.sync_engine, "connect")
    def _no_waiting(dbapi_connection: object, _record: object) -> None:  # after the engine's own (30 s)
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute("PRAGMA busy_timeout=100")
        cursor.close()

    return engine


async def _table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS t (n INTEGER)"))


async def test_write_transactions_take_turns(sqlite_url: str) -> None:
    engine = _impatient(sqlite_url)
    await _table(engine)
    read, write = session_factories(engine)
    open_now, most_open = 0, 0

    async def writer(n: int) -> None:
        nonlocal open_now, most_open
        async with write() as session, session.begin():
            await session.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
            open_now += 1
            most_open = max(most_open, open_now)
            await asyncio.sleep(0.3)  # hold the write lock while the others ask for it
            open_now -= 1

    async def failing() -> None:
        with pytest.raises(RuntimeError):
            async with write() as session, session.begin():
                await session.execute(text("INSERT INTO t (n) VALUES (-1)"))
                raise RuntimeError("rolled back")

    tasks = [asyncio.create_task(writer(n)) for n in range(3)]
    tasks.insert(2, asyncio.create_task(failing()))
    await asyncio.sleep(0)  # every writer asked
    # A read does not queue behind the writers.
    async with read() as session:
        assert (await session.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
    await asyncio.gather(*tasks)
    assert most_open == 1
    async with read() as session:
        rows = (await session.execute(text("SELECT n FROM t ORDER BY n"))).scalars().all()
    assert rows == [0, 1, 2]  # the rolled-back insert is not there, and it did not hold up the rest
    await engine.dispose()


def test_an_engine_outlives_its_event_loop(sqlite_url: str) -> None:
    engine = _impatient(sqlite_url)
    _, write = session_factories(engine)

    async def two_writers(base: int) -> None:
        async def one(n: int) -> None:
            async with write() as session, session.begin():
                await session.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
                await asyncio.sleep(0.3)

        await asyncio.gather(one(base), one(base + 1))  # the second waits: the gate's lock is used

    asyncio.run(_table(engine))
    asyncio.run(two_writers(0))
    asyncio.run(two_writers(2))  # a new loop: a lock bound to the first would raise here

    async def count() -> int:
        async with engine.connect() as conn:
            found = (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()
        await engine.dispose()
        return found

    assert asyncio.run(count()) == 4


async def test_a_connection_invalidated_mid_transaction_opens_the_gate(sqlite_url: str) -> None:
    """No COMMIT or ROLLBACK event comes for a connection that dies inside its transaction (a cancelled
    statement invalidates it): the pool's invalidate event opens the gate, or every later writer of the
    process would wait its 30 s and fail."""
    engine = _impatient(sqlite_url)
    await _table(engine)
    _, write = session_factories(engine)
    with pytest.raises((RuntimeError, PendingRollbackError)):  # SQLAlchemy's, as it cannot roll back
        async with write() as session, session.begin():
            await session.execute(text("INSERT INTO t (n) VALUES (1)"))
            await (await session.connection()).invalidate()
            raise RuntimeError("the transaction's connection is gone")
    async with asyncio.timeout(5):  # the gate waits 30 s before it gives up
        async with write() as session, session.begin():
            await session.execute(text("INSERT INTO t (n) VALUES (2)"))
    async with write() as session:
        assert (await session.execute(text("SELECT n FROM t"))).scalars().all() == [2]
    await engine.dispose()
