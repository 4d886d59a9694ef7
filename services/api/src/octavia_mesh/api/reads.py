"""Reads without the ORM: Core rows straight from the database, for the hot GET paths.

Profiling ``GET /v2/lbaas/loadbalancers`` (issue 12) put most of the API's time in two places the answer does
not need: the ORM building an instance with its identity-map state for every row it then only reads, and, on
SQLite, the hops to aiosqlite's driver thread and back (several per statement: cursor, execute, fetch, close;
each one a queue put, a thread wake-up, a GIL hand-over and a self-pipe write to wake the event loop). A
:class:`Reader` runs Core statements and hands back ``Row`` objects, which the views read by attribute like
the ORM's instances (the models map every attribute to a column of the same name).

* SQLite (a file): statements run on the event loop's thread through the standard library's driver, on one
  connection kept open. A read in WAL mode never waits for a writer, so it costs what the statement costs,
  with no hop; the connection is ``query_only``, so nothing can write through it.
* PostgreSQL and MariaDB: Core over the service's async driver, in autocommit (no BEGIN/ROLLBACK round trips
  around a read; each statement of a list sees committed data, as under READ COMMITTED before), on a pool of
  its own without the per-checkout ping: a connection the server dropped is replaced and the read run again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, Executable, Result, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from octavia_mesh.common.db.engine import async_url

T = TypeVar("T")


class ReadConnection(Protocol):
    """What the views need of a database connection: run a statement, get its (buffered) result."""

    async def execute(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> Result[Any]: ...


class _SyncConnection:
    """A SQLite connection used on the event loop's thread (see the module's docstring)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> Result[Any]:
        return self._conn.execute(statement, parameters)


class _AsyncConnection:
    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def execute(self, statement: Executable, parameters: Mapping[str, Any] | None = None) -> Result[Any]:
        return await self._conn.execute(statement, parameters)


class Reader:
    """Read-only Core connections to the service's database, one per call (SQLite: one shared; else kept ones)."""

    #: PostgreSQL and MariaDB: connections kept open between calls, in autocommit, so nothing is left to reset.
    #: Taken from a list of this reader's rather than checked out of the engine's pool and returned with its
    #: events and reset on every call (a tenth of the API's time on a show). A connection the server dropped
    #: fails its next statement, is closed, and :meth:`run` runs the call again on a new one.
    KEEP = 10

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self._sync: Engine | None = None
        self._async: AsyncEngine | None = None
        self._shared: tuple[Connection, _SyncConnection] | None = None
        self._idle: list[AsyncConnection] = []
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._sync = create_engine(
                url.set(drivername="sqlite"), pool_size=8, max_overflow=8, json_deserializer=_json_loads
            )
            event.listen(self._sync, "connect", _read_only_sqlite)
        else:
            # An in-memory SQLite database exists only in its own connections: read it through the async driver.
            is_sqlite = url.get_backend_name() == "sqlite"
            options: dict[str, Any] = {"json_deserializer": _json_loads}
            if not is_sqlite:
                options.update(pool_size=self.KEEP, isolation_level="AUTOCOMMIT")
            self._async = create_async_engine(async_url(database_url), **options)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[ReadConnection]:
        """A connection for one call's reads.

        SQLite: one connection for every call, kept open. Its statements run on the event loop's thread and each
        is whole (run and fetched) before anything else runs, so calls never share a cursor; in autocommit each
        statement reads its own snapshot, as a connection of its own would. A pool's checkout and return (with
        its reset) cost a quarter of a GET of one load balancer.
        """
        if self._sync is not None:
            if self._shared is None:
                conn = self._sync.connect()
                self._shared = (conn, _SyncConnection(conn))
            try:
                yield self._shared[1]
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    self._close_shared()
                raise
            return
        assert self._async is not None
        conn = self._idle.pop() if self._idle else await self._async.connect()
        try:
            yield _AsyncConnection(conn)
        except BaseException as exc:  # an error, or a call cancelled mid-statement: the connection's state is unknown
            stale = [conn]
            if isinstance(exc, DBAPIError) and exc.connection_invalidated:  # the server went away: all opened before
                stale, self._idle = stale + self._idle, []
            for old in stale:
                await asyncio.shield(old.close())
            raise
        if len(self._idle) < self.KEEP:
            self._idle.append(conn)
        else:
            await conn.close()

    def _close_shared(self) -> None:
        if self._shared is not None:
            conn, self._shared = self._shared[0], None
            conn.close()

    async def run(self, work: Callable[[ReadConnection], Awaitable[T]]) -> T:
        """``work(connection)``, once more on a fresh connection if the server had dropped the pooled one."""
        for attempt in range(2):
            try:
                async with self.connect() as conn:
                    return await work(conn)
            except DBAPIError as exc:
                if attempt or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    async def dispose(self) -> None:
        self._close_shared()
        while self._idle:
            await self._idle.pop().close()
        if self._sync is not None:
            self._sync.dispose()
        if self._async is not None:
            await self._async.dispose()


def records(result: Result[Any]) -> list[Any]:
    """A result's rows as named tuples: read by attribute, as the views read the ORM's instances, at the cost
    of a tuple index (a ``Row``'s attribute access costs microseconds, and a view reads 25 of them)."""
    make = record_type(tuple(result.keys()))
    return [make(*row) for row in result.all()]


@functools.lru_cache(maxsize=256)
def record_type(keys: tuple[str, ...]) -> Any:
    """The named-tuple type of rows with these columns (built once per set of columns)."""
    return collections.namedtuple("Record", keys, rename=True)  # noqa: PYI024 - its fields are a result's columns


#: What JSON columns mostly hold (``vip_sg_ids``, ``additional_vips``, ...): an empty list.
_EMPTY_LIST = "[]"


def _json_loads(text: str) -> Any:
    """``json.loads`` without its parser for the value most JSON columns hold."""
    return [] if text == _EMPTY_LIST else json.loads(text)


def _read_only_sqlite(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # autocommit: every SELECT is its own snapshot, no BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()
