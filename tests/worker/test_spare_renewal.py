"""The spare pool replaces a spare whose certificate expires soon (housekeeping rotates ALLOCATED amphorae only):
real local amphorae, the worker's own pool and drivers, a migrated database."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import Amphora, utcnow
from octavia_mesh.common.lifecycle import AmphoraStatus
from octavia_mesh.worker.flows.spares import READY, SparePool
from octavia_mesh.worker.server import build_providers
from octavia_mesh.worker.settings import WorkerSettings


@pytest.fixture
def state() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="spr-", dir="/tmp"))  # short: the agents' sockets live below it
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _settings(state: Path, **overrides: object) -> WorkerSettings:
    # Everything the worker writes (its CA, the amphorae, the secret key) below the test's own directory.
    return WorkerSettings.from_env(
        {},
        providers=("amphora",),
        state_dir=str(state),
        database_url="unused",
        secret_key_file=str(state / "secret.key"),
        **overrides,
    )


async def test_a_spare_whose_certificate_expires_soon_is_replaced(engine: AsyncEngine, state: Path) -> None:
    settings = _settings(state)
    _, write = session_factories(engine)
    (provider,) = build_providers(settings, write)
    deps = provider.deps  # type: ignore[attr-defined]
    pool = SparePool(deps, 1, renew_before=dt.timedelta(days=14))
    booted: list[str] = []
    try:
        await pool.refill(delay=False)
        async with write() as session:
            (first,) = (await session.execute(select(Amphora).where(Amphora.status == READY))).scalars()
        booted.append(first.id)
        assert first.cert_expiration is not None and first.cert_expiration > utcnow() + dt.timedelta(days=29)
        await pool.refill(delay=False)
        assert pool.booted == 1, "a spare with 30 days left is kept"

        # Sixteen days later: fourteen left, within the renewal window.
        async with write() as session, session.begin():
            await session.execute(
                update(Amphora)
                .where(Amphora.id == first.id)
                .values(cert_expiration=utcnow() + dt.timedelta(days=14) - dt.timedelta(minutes=1))
            )
        await pool.refill(delay=False)
        async with write() as session:
            rows = {a.id: a for a in (await session.execute(select(Amphora))).scalars()}
        assert rows[first.id].status == AmphoraStatus.DELETED
        assert await deps.compute.get_instance(first.compute_id or first.id) is None, "its agent is stopped"
        (fresh,) = [a for a in rows.values() if a.status == READY]
        booted.append(fresh.id)
        assert fresh.id != first.id and pool.booted == 2
        assert fresh.cert_expiration is not None and fresh.cert_expiration > utcnow() + dt.timedelta(days=29)
        assert await deps.compute.get_instance(fresh.compute_id or fresh.id) is not None
    finally:
        for amphora_id in booted:
            await deps.compute.delete_instance(amphora_id)


def test_the_renewal_window_is_never_half_the_certificate_or_more(engine: AsyncEngine, state: Path) -> None:
    settings = _settings(state, amphora_cert_validity_s=3600.0)
    _, write = session_factories(engine)
    (provider,) = build_providers(settings, write)
    pool = SparePool(provider.deps, 1, renew_before=dt.timedelta(days=14))  # type: ignore[attr-defined]
    assert pool.renew_before == dt.timedelta(minutes=30), "else every spare would be retired as it boots"
