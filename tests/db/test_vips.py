"""Local VIP addresses are handed out once each, even to concurrent creates, and come back on release."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.db import vips
from octavia_mesh.common.db.engine import session_factories


async def test_lowest_free_then_requested_then_released(engine: AsyncEngine) -> None:
    _, write = session_factories(engine)
    subnet = str(uuid.uuid4())
    async with write() as session, session.begin():
        first = await vips.allocate(session, subnet, "127.99.0.0/29", "lb-1")
        second = await vips.allocate(session, subnet, "127.99.0.0/29", "lb-2")
        chosen = await vips.allocate(session, subnet, "127.99.0.0/29", "lb-3", requested="127.99.0.6")
    assert (first, second, chosen) == ("127.99.0.1", "127.99.0.2", "127.99.0.6")
    async with write() as session, session.begin():
        with pytest.raises(vips.AddressUnavailable):
            await vips.allocate(session, subnet, "127.99.0.0/29", "lb-4", requested="127.99.0.6")
        with pytest.raises(vips.AddressUnavailable):
            await vips.allocate(session, subnet, "127.99.0.0/29", "lb-4", requested="10.0.0.1")
        await vips.release(session, "lb-1")
    async with write() as session, session.begin():
        assert await vips.allocate(session, subnet, "127.99.0.0/29", "lb-5") == "127.99.0.1"


async def test_concurrent_allocations_never_collide(engine: AsyncEngine) -> None:
    _, write = session_factories(engine)
    subnet = str(uuid.uuid4())

    async def one(n: int) -> str:
        async with write() as session, session.begin():
            return await vips.allocate(session, subnet, "127.98.0.0/28", f"lb-{n}")

    got = await asyncio.gather(*(one(n) for n in range(10)))
    assert len(set(got)) == 10
    async with write() as session, session.begin():
        await vips.allocate(session, subnet, "127.98.0.0/28", "lb-x")  # 14 hosts: some left
    with pytest.raises(vips.AddressUnavailable):
        for n in range(20):
            await one(100 + n)
