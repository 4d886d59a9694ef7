"""Async engines for SQLite (embedded default), PostgreSQL and MariaDB/MySQL."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from octavia_mesh.common.db import sqlite_inline  # registers sqlite+inline

_ASYNC_DRIVERS = {
    "sqlite": f"sqlite+{sqlite_inline.InlineSQLiteDialect.driver}",
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
    engine = create_async_engine(url, **kwargs)
    # aiosqlite (a URL that asks for it) waits for the lock on its own thread; the inline driver never waits.
    busy_timeout = make_url(url).get_driver_name() != sqlite_inline.InlineSQLiteDialect.driver

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, issue BEGIN, so that `_on_begin` decides its kind.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if busy_timeout:
            cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        kind = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if kind != "NONE":
            conn.exec_driver_sql(f"BEGIN {kind}")

    return engine


def session_factories(engine: AsyncEngine) -> tuple[async_sessionmaker[AsyncSession], async_sessionmaker[AsyncSession]]:
    """Return ``(read, write)`` session factories; ``write`` sessions lock SQLite up front."""
    read = async_sessionmaker(engine.execution_options(**READ), expire_on_commit=False)
    write = async_sessionmaker(engine.execution_options(**WRITE), expire_on_commit=False)
    return read, write


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched (``execute()`` is typed generically; its result for those
    statements is a ``CursorResult``)."""
    return cast("CursorResult[Any]", result).rowcount or 0
