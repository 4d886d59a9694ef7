"""SQLite for the services' async engines, run on the event loop's thread (``sqlite+inline://``).

aiosqlite runs every call on a thread of its own: a cursor, an execute, a fetch and a close are each a queue
put, a thread wake-up, a GIL hand-over and a self-pipe write to wake the event loop. On this project's
machines that is ~100 µs of CPU per hop and ~500 µs per statement, for statements SQLite runs in 10 to 50 µs:
a noop create's settle (seven statements) cost the worker ~9 ms of CPU, and held SQLite's one write lock all
that time, which is what limited creates on SQLite (issue 12). This dialect is the standard library's driver
called directly from SQLAlchemy's greenlet, as the API's read path already does.

**Nothing waits on the event loop.** Connections run with no busy timeout, so a statement that finds the
database locked fails at once instead of sleeping on the loop; :class:`Cursor` then runs that one statement
again and again on a thread until the lock is free (for :data:`BUSY_TIMEOUT_MS` at most), and the greenlet
awaits it, so the loop serves other calls meanwhile. Only the statements that would have waited go to a
thread: a write transaction's ``BEGIN IMMEDIATE`` while another process writes, mostly. A failed (busy)
statement has no effect, so running it again is what SQLite's busy handler does too.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.util.concurrency import await_, in_greenlet

T = TypeVar("T")

#: How long a statement that found the database locked waits for it, on its thread (the services' former
#: ``busy_timeout``).
BUSY_TIMEOUT_MS = 30_000
#: The first pause between two tries of a statement that found the database locked, and the longest.
RETRY_S, MAX_RETRY_S = 0.0002, 0.005


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY ("database is locked") and its extended codes, which waiting can clear; not
    SQLITE_BUSY_SNAPSHOT (a read transaction that may not write any more: only a new transaction can)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "locked" in str(exc)
    return code & 0xFF == sqlite3.SQLITE_BUSY and code != sqlite3.SQLITE_BUSY_SNAPSHOT


def _waiting(call: Callable[..., T], args: tuple[Any, ...], stop: threading.Event | None = None) -> T:
    """Run ``call`` until it finds the database free, for at most :data:`BUSY_TIMEOUT_MS` (or until ``stop``).

    Not SQLite's busy timeout: its handler sleeps 1, 2, 5, 10, 15, 20, 25 ms… between tries, so a writer that
    finds the lock taken for a millisecond sleeps for several, while the transactions it waits for now take
    one or two. Trying again every :data:`RETRY_S` costs a failed lock attempt (microseconds) each time.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = RETRY_S
    while True:
        try:
            return call(*args)
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                raise
        time.sleep(delay)
        delay = min(delay * 1.1, MAX_RETRY_S)  # a long wait (a migration, a checkpoint) polls less often


def _retry_off_loop(call: Callable[..., T], *args: Any) -> T:
    """``call`` found the database locked: run it again where waiting blocks no event loop.

    On a thread of its own, a daemon: a process that stops does not wait for it. A caller cancelled meanwhile
    (a service stopping its tasks) stops the tries and waits for the one under way before it goes on: the
    connection must not roll back while its thread may still be taking the lock, or it would go back to the
    pool holding it.
    """
    if not in_greenlet():  # a plain synchronous caller: it may wait where it is
        return _waiting(call, args)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    stop = threading.Event()

    def run() -> None:
        try:
            result: Any = _waiting(call, args, stop)
            outcome = future.set_result
        except BaseException as exc:  # handed to the caller
            result, outcome = exc, future.set_exception
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
            loop.call_soon_threadsafe(lambda: future.done() or outcome(result))

    threading.Thread(target=run, name="sqlite-lock-wait", daemon=True).start()
    try:
        return await_(asyncio.shield(future))
    except BaseException:
        stop.set()
        with contextlib.suppress(BaseException):
            await_(future)  # within one pause
        raise


async def _done() -> None:
    """An awaitable that never suspends."""


def _awaited() -> None:
    """Pass through SQLAlchemy's greenlet once: ``AsyncConnection.execute`` refuses a driver that never awaits
    (it takes one for a sync driver by mistake). A coroutine that does not suspend costs a greenlet switch,
    not a turn of the loop."""
    if in_greenlet():
        await_(_done())


class Cursor(sqlite3.Cursor):
    """A cursor whose statements run inline, and off the loop only when they have to wait for the lock."""

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:  # type: ignore[override]
        return self._run(super().execute, sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Cursor:  # type: ignore[override]
        return self._run(super().executemany, sql, list(seq_of_parameters))  # a list: it may run twice

    def _run(self, call: Callable[[str, Any], object], sql: str, parameters: Any) -> Cursor:
        try:
            call(sql, parameters)
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            _retry_off_loop(call, sql, parameters)
            return self
        _awaited()
        return self

    async def _async_soft_close(self) -> None:
        """What SQLAlchemy's async layer asks of an async driver's cursor before handing a result to sync code
        (aiosqlite's must buffer its rows then); this one is read on the same thread, as it is."""


class Connection(sqlite3.Connection):
    """A connection handing out :class:`Cursor` s (SQLAlchemy makes every statement through ``cursor()``)."""

    def cursor(self, factory: Any = Cursor) -> Any:  # type: ignore[override]
        return super().cursor(factory)

    def commit(self) -> None:
        try:
            super().commit()
        except sqlite3.OperationalError as exc:  # not in WAL mode, with readers: wait for them off the loop
            if not _busy(exc):
                raise
            _retry_off_loop(super().commit)


class InlineSQLiteDialect(SQLiteDialect_pysqlite):
    """pysqlite, declared async: SQLAlchemy's async engine runs it in its greenlet, on the loop's thread."""

    driver = "inline"
    supports_statement_cache = True
    is_async = True

    def create_connect_args(self, url: URL) -> Any:
        args, kwargs = super().create_connect_args(url)
        # No busy timeout on the loop (see the module's docstring); a connection may serve a waiting thread for
        # one statement, never two threads at once.
        kwargs.update(timeout=0, check_same_thread=False, factory=Connection)
        return args, kwargs

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        return pool.AsyncAdaptedQueuePool if cls._is_url_file_db(url) else pool.StaticPool


registry.register("sqlite.inline", __name__, "InlineSQLiteDialect")
dialect = InlineSQLiteDialect
