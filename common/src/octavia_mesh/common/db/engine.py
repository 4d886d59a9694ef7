"""Async engines for SQLite (embedded default), PostgreSQL and MariaDB/MySQL."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, cast

from sqlalchemy import CursorResult, Result, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
}

#: Execution option that makes a SQLite transaction take the write lock when it
#: begins. Without it two writers that both read first deadlock into
#: ``database is locked``; PostgreSQL and MariaDB use row locks instead.
WRITE = {"sqlite_begin": "IMMEDIATE"}
#: Read sessions on SQLite run each statement in its own implicit transaction:
#: no BEGIN round trip to the driver thread on the hot read path.
READ = {"sqlite_begin": "NONE"}


def async_url(url: str) -> str:
    """Map a plain database URL (``postgresql://…``) onto its asyncio driver."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if "+" in parsed.drivername or backend not in _ASYNC_DRIVERS:
        return url
    return parsed.set(drivername=_ASYNC_DRIVERS[backend]).render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """Create the engine for ``url`` with the per-backend settings the services rely on."""
    url = async_url(url)
    backend = make_url(url).get_backend_name()
    if backend != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 10)
        if backend in ("mysql", "mariadb"):
            # REPEATABLE READ's gap locks turn concurrent inserts under one parent into deadlocks; the
            # services lock the rows they depend on explicitly, so READ COMMITTED is all they need.
            kwargs.setdefault("isolation_level", "READ COMMITTED")
        return create_async_engine(url, **kwargs)
    engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, issue BEGIN, so that `_on_begin` decides its kind.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    gate = _WriteGate()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        kind = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if kind == "IMMEDIATE":
            gate.enter(conn)
        if kind != "NONE":
            try:
                conn.exec_driver_sql(f"BEGIN {kind}")
            except BaseException:
                gate.leave(conn)
                raise

    @event.listens_for(engine.sync_engine, "commit")
    @event.listens_for(engine.sync_engine, "rollback")
    def _on_end(conn: Any) -> None:
        gate.leave(conn)

    # A connection that ends otherwise (invalidated mid-transaction, returned to the pool) opens the gate too.
    @event.listens_for(engine.sync_engine.pool, "checkin")
    @event.listens_for(engine.sync_engine.pool, "invalidate")
    @event.listens_for(engine.sync_engine.pool, "soft_invalidate")
    def _on_release(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        gate.leave(record)

    return engine


class _WriteGate:
    """One SQLite write transaction of this process at a time; the others wait their turn here, in order.

    SQLite has one write lock per database. Write transactions of one process that ask for it together (the
    worker applies its commands side by side) each poll it from their connection's thread with SQLite's busy
    handler, whose sleeps grow from 1 to 100 ms: under load they slept most of the time, and the API's writes,
    polling among them, waited up to half a second. Queued here they wake as the one before them sends its
    COMMIT or ROLLBACK (the events SQLAlchemy has; the next may find the lock held that long, a busy-handler
    sleep of a millisecond), and each process has at most one writer polling the file lock against the others.
    """

    #: How long a transaction waits for its turn (SQLite's own ``busy_timeout``, which then applies as well).
    TIMEOUT_S = 30.0

    def __init__(self) -> None:
        # A lock per event loop: an engine may outlive a loop (a test's asyncio.run), and a lock is bound to one.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    def enter(self, conn: Any) -> None:
        """Wait for this connection's turn (``conn.info`` is its pool record's, which the release events see)."""
        lock = self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        # SQLAlchemy runs this hook in its greenlet on the event loop: await_only suspends it there.
        await_only(self._acquire(lock))
        conn.info["octavia_mesh_write_gate"] = lock

    async def _acquire(self, lock: asyncio.Lock) -> None:
        async with asyncio.timeout(self.TIMEOUT_S):  # unlike wait_for, never leaves the lock taken by nobody
            await lock.acquire()

    def leave(self, holder: Any) -> None:
        """Open the gate if ``holder`` (a connection, or its pool record) holds it."""
        lock = holder.info.pop("octavia_mesh_write_gate", None)
        if lock is not None:
            lock.release()


def session_factories(engine: AsyncEngine) -> tuple[async_sessionmaker[AsyncSession], async_sessionmaker[AsyncSession]]:
    """Return ``(read, write)`` session factories; ``write`` sessions lock SQLite up front."""
    read = async_sessionmaker(engine.execution_options(**READ), expire_on_commit=False)
    write = async_sessionmaker(engine.execution_options(**WRITE), expire_on_commit=False)
    return read, write


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched (``execute()`` is typed generically; its result for those
    statements is a ``CursorResult``)."""
    return cast("CursorResult[Any]", result).rowcount or 0
