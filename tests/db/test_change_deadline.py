"""A change past its call's commit deadline is rolled back and refused (503): a client that gets an error finds
nothing of its call left behind (no load balancer, no VIP, no provider command, no quota used), where before a
create the edge had timed out (504) was committed all the same. (A registry-less API allocates no VIP row:
the provider's facts are unknown.)"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from octavia_mesh.api.app import COMMIT_BY, App, Call
from octavia_mesh.api.errors import Unavailable
from octavia_mesh.api.identity import Authenticator
from octavia_mesh.api.policy import Caller
from octavia_mesh.api.resources import loadbalancers
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.common.db.engine import make_engine, session_factories
from octavia_mesh.common.db.models import LoadBalancer, ProviderCommand, Quota

PROJECT = uuid.uuid4().hex
ADMIN = Caller(project_id=PROJECT, roles=frozenset({"admin"}), noauth=True)
SUBNET = str(uuid.uuid4())


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> AsyncIterator[App]:
    settings = ApiSettings(
        database_url=database_url,
        secret_key_file=str(tmp_path / "secret.key"),
    )
    engine = make_engine(database_url)
    read, write = session_factories(engine)
    try:
        yield App(settings=settings, read=read, write=write, auth=Authenticator(settings))
    finally:
        await engine.dispose()


def create_call(name: str) -> Call:
    tree = {
        "name": name,
        "vip_subnet_id": SUBNET,
        "listeners": [{"protocol": "HTTP", "protocol_port": 80, "default_pool": {
            "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN",
            "members": [{"address": "127.0.0.1", "protocol_port": 8080}]}}],
    }  # fmt: skip
    return Call(caller=ADMIN, body=json.dumps({"loadbalancer": tree}).encode())


async def counts(app: App) -> tuple[int, int, int]:
    """Load balancers, provider commands, and load balancers counted against the project's quota."""
    async with app.read() as session:
        lbs = await session.scalar(select(func.count()).select_from(LoadBalancer))
        sent = await session.scalar(select(func.count()).select_from(ProviderCommand))
        used = await session.scalar(select(Quota.in_use_load_balancer).where(Quota.project_id == PROJECT))
    return int(lbs or 0), int(sent or 0), int(used or 0)


async def test_a_create_past_its_deadline_leaves_nothing_behind(app: App) -> None:
    before = await counts(app)
    token = COMMIT_BY.set(time.monotonic() - 0.001)  # the call's time ran out while it worked
    try:
        with pytest.raises(Unavailable):
            await loadbalancers.create(app, create_call("late"))
    finally:
        COMMIT_BY.reset(token)
    assert await counts(app) == before

    token = COMMIT_BY.set(time.monotonic() + 60)
    try:
        reply = await loadbalancers.create(app, create_call("in-time"))
    finally:
        COMMIT_BY.reset(token)
    assert reply.status == 201
    assert await counts(app) == (before[0] + 1, before[1] + 1, before[2] + 1)
