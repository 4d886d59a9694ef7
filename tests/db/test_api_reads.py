"""The API's Core reads (``octavia_mesh.api.reads``) answer exactly what the ORM path answered, cannot write, and
survive a connection the server dropped. On SQLite by default; on PostgreSQL or MariaDB with
OCTAVIA_MESH_TEST_DATABASE_URL."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.api.reads import ReadConnection, Reader, records
from octavia_mesh.api.resources import loadbalancers
from octavia_mesh.api.store import _columns
from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import Listener, LoadBalancer, Pool, Tag


def _lb(**values: Any) -> LoadBalancer:
    defaults: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "project_id": "p1",
        "name": "",
        "description": "",
        "provisioning_status": "ACTIVE",
        "operating_status": "ONLINE",
        "admin_state_up": True,
        "provider": "noop",
        "created_at": dt.datetime(2026, 1, 2, 3, 4, 5, 678901),
        "updated_at": None,
        "vip_address": "198.51.100.1",
        "vip_sg_ids": [],
        "additional_vips": [],
    }
    return LoadBalancer(**{**defaults, **values})


async def test_core_rows_give_the_documents_the_orm_gave(engine: AsyncEngine, database_url: str) -> None:
    """Every column (JSON lists, timestamps with and without microseconds, NULLs, booleans) and the children
    and tags come out of the Core path as the ORM's instances gave them, byte for byte once encoded."""
    read, write = session_factories(engine)
    lbs = [
        _lb(name="a", vip_sg_ids=[str(uuid.uuid4()), str(uuid.uuid4())], admin_state_up=False),
        _lb(name="b", additional_vips=[{"subnet_id": "s", "ip_address": "10.0.0.2"}], flavor_id=None),
        _lb(description="ü", created_at=dt.datetime(2026, 1, 2, 3, 4, 5), updated_at=dt.datetime(2026, 2, 1)),
    ]
    ids = [lb.id for lb in lbs]
    async with write() as session, session.begin():
        session.add_all(lbs)
        await session.flush()
        for n, protocol in enumerate(("HTTP", "TCP")):
            session.add(
                Listener(
                    id=str(uuid.uuid4()),
                    load_balancer_id=ids[0],
                    project_id="p1",
                    provisioning_status="ACTIVE",
                    operating_status="ONLINE",
                    protocol=protocol,
                    protocol_port=80 + n,
                    created_at=dt.datetime(2026, 1, 3, 0, 0, n),
                )
            )
        session.add(
            Pool(
                id=str(uuid.uuid4()),
                load_balancer_id=ids[1],
                project_id="p1",
                provisioning_status="ACTIVE",
                operating_status="ONLINE",
                protocol="HTTP",
                lb_algorithm="ROUND_ROBIN",
            )
        )
        session.add_all([Tag(resource_id=ids[2], tag="z"), Tag(resource_id=ids[2], tag="a")])
    async with read() as session:
        orm_rows = [await session.get(LoadBalancer, i) for i in ids]
        expected = await loadbalancers.views(session, orm_rows)
    reader = Reader(database_url)
    try:

        async def core(conn: ReadConnection) -> list[dict[str, Any]]:
            result = await conn.execute(_columns(LoadBalancer).where(LoadBalancer.id.in_(ids)))
            found = {row.id: row for row in records(result)}
            return await loadbalancers.views(conn, [found[i] for i in ids])

        async def shown(conn: ReadConnection) -> list[dict[str, Any] | None]:  # a show: row and children at once
            return [
                found[1] if (found := await loadbalancers.show_one(conn, i)) else None
                for i in [*ids, str(uuid.uuid4())]
            ]

        got = await reader.run(core)
        shows = await reader.run(shown)
    finally:
        await reader.dispose()
    assert got == expected
    assert shows == [*expected, None]  # each with its own children only; an unknown id has no row
    assert [d["listeners"] for d in got][0] and got[1]["pools"] and got[2]["tags"] == ["a", "z"]
    assert got[2]["created_at"] == "2026-01-02T03:04:05" and got[0]["created_at"] == "2026-01-02T03:04:05.678901"


async def test_sqlite_reads_cannot_write(database_url: str) -> None:
    if make_url(database_url).get_backend_name() != "sqlite":
        pytest.skip("query_only is SQLite's; the other backends' reader runs plain SELECTs in autocommit")
    reader = Reader(database_url)
    try:
        with pytest.raises(OperationalError, match="readonly"):
            await reader.run(lambda conn: conn.execute(text("DELETE FROM load_balancer")))
    finally:
        await reader.dispose()


async def test_a_connection_the_server_dropped_is_replaced(engine: AsyncEngine, database_url: str) -> None:
    """PostgreSQL: the server ends the reader's kept connections (as a restart or an idle timeout would); the
    next read opens a new one and answers, not a 500, however many dead ones the reader kept."""
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("needs a server that can end a session: PostgreSQL")
    reader = Reader(database_url)
    try:
        slow = "SELECT pg_backend_pid() FROM pg_sleep(0.2)"  # side by side: two connections, both kept
        backend_pids = await asyncio.gather(*(reader.run(lambda conn: _scalar(conn, slow)) for _ in range(2)))
        assert len(set(backend_pids)) == 2
        async with engine.connect() as admin:
            for pid in backend_pids:
                await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await admin.commit()
        assert await reader.run(lambda conn: _scalar(conn, "SELECT 1")) == 1
    finally:
        await reader.dispose()


async def _scalar(conn: ReadConnection, sql: str) -> Any:
    return (await conn.execute(text(sql))).scalar_one()
