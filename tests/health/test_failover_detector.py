"""The failover detector on a real database: claims, rate limit, circuit breaker, holds, several replicas.

Rows of ``amphora_health`` are written here directly (as the heartbeat writers would), with ``last_update``
in the past; the detector's monotonic clock is a settable one, so grace periods and holds are stepped
through rather than slept through. ``OCTAVIA_MESH_TEST_DATABASE_URL`` runs it on PostgreSQL or MariaDB.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.engine import make_engine, session_factories
from octavia_mesh.common.db.models import Amphora, AmphoraHealth, LoadBalancer, ProviderCommand, utcnow
from octavia_mesh.health.breaker import BreakerPolicy
from octavia_mesh.health.failover import FAILED_RETRY_S, TIDY_EVERY_S, DetectorPolicy, FailoverDetector
from octavia_mesh.protos.provider.v1 import commands_pb2

TIMEOUT = 4.0
NO_BREAKER = BreakerPolicy(0, 0)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    async with engine.begin() as conn:  # every test starts from empty tables
        for table in ("provider_command", "amphora_health", "amphora", "load_balancer"):
            await conn.execute(text(f"DELETE FROM {table}"))
    try:
        yield engine
    finally:
        await engine.dispose()


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def policy(**overrides: object) -> DetectorPolicy:
    values: dict[str, object] = {
        "heartbeat_timeout_s": TIMEOUT,
        "scan_interval_s": 0.1,
        "max_per_scan": 10,
        "max_in_flight": 10,
        "startup_grace_s": 0.0,
        "breaker": NO_BREAKER,
    }
    values.update(overrides)
    return DetectorPolicy(**values)  # type: ignore[arg-type]


async def plant(engine: AsyncEngine, silent_for: float, lb_status: str = "ACTIVE") -> tuple[str, str]:
    """A load balancer with one ALLOCATED amphora last heard from ``silent_for`` seconds ago."""
    lb_id, amphora_id = str(uuid.uuid4()), str(uuid.uuid4())
    _, write = session_factories(engine)
    async with write() as session, session.begin():
        session.add(
            LoadBalancer(
                id=lb_id, project_id="p", provider="amphora", provisioning_status=lb_status, operating_status="ONLINE"
            )
        )
        await session.flush()
        session.add(
            Amphora(
                id=amphora_id,
                load_balancer_id=lb_id,
                status="ALLOCATED",
                role="STANDALONE",
                updated_at=utcnow() - dt.timedelta(seconds=600),
            )
        )
        await session.flush()
        session.add(
            AmphoraHealth(amphora_id=amphora_id, last_update=utcnow() - dt.timedelta(seconds=silent_for), busy=False)
        )
    return lb_id, amphora_id


async def heard(engine: AsyncEngine, *amphora_ids: str) -> None:
    """Heartbeats arrived for ``amphora_ids`` just now."""
    _, write = session_factories(engine)
    async with write() as session, session.begin():
        await session.execute(
            update(AmphoraHealth).where(AmphoraHealth.amphora_id.in_(amphora_ids)).values(last_update=utcnow())
        )


async def commands_of(engine: AsyncEngine) -> list[commands_pb2.ProviderCommand]:
    read, _ = session_factories(engine)
    async with read() as session:
        payloads = (await session.execute(select(ProviderCommand.payload))).scalars().all()
    return [commands_pb2.ProviderCommand.FromString(p) for p in payloads]


async def lb_status(engine: AsyncEngine, lb_id: str) -> str:
    read, _ = session_factories(engine)
    async with read() as session:
        return str(await session.scalar(select(LoadBalancer.provisioning_status).where(LoadBalancer.id == lb_id)))


async def busy(engine: AsyncEngine, amphora_id: str) -> bool:
    read, _ = session_factories(engine)
    async with read() as session:
        return bool(await session.scalar(select(AmphoraHealth.busy).where(AmphoraHealth.amphora_id == amphora_id)))


async def settle_failover(engine: AsyncEngine, lb_id: str, amphora_id: str, *, succeeded: bool) -> None:
    """What the worker's flow leaves: the old amphora retired (or, failed, still there) and the LB ACTIVE."""
    _, write = session_factories(engine)
    async with write() as session, session.begin():
        if succeeded:
            await session.execute(update(Amphora).where(Amphora.id == amphora_id).values(status="DELETED"))
        await session.execute(update(LoadBalancer).where(LoadBalancer.id == lb_id).values(provisioning_status="ACTIVE"))


async def test_a_stale_amphora_is_claimed_once_in_one_transaction(engine: AsyncEngine) -> None:
    fresh = [await plant(engine, 0.5) for _ in range(2)]
    lb_id, amphora_id = await plant(engine, TIMEOUT + 1)
    detector = FailoverDetector(engine, policy(), clock=Clock())
    woken: list[bool] = []
    detector._wake = lambda: woken.append(True)

    result = await detector.scan()
    assert result.verdict.armed and result.claimed == [amphora_id]
    assert (result.monitored, result.silent) == (3, 1)
    assert await lb_status(engine, lb_id) == "PENDING_UPDATE"
    assert await busy(engine, amphora_id)
    (command,) = await commands_of(engine)
    assert (command.kind, command.operation) == (Kind.RESOURCE_KIND_AMPHORA, Op.OPERATION_FAILOVER)
    assert (command.resource_id, command.load_balancer_id, command.provider) == (amphora_id, lb_id, "amphora")
    assert woken == [True], "the relay is woken after the claim commits"
    for other_lb, other_amphora in fresh:
        assert await lb_status(engine, other_lb) == "ACTIVE" and not await busy(engine, other_amphora)

    again = await detector.scan()
    assert again.claimed == [] and again.in_flight == 1
    assert len(await commands_of(engine)) == 1


async def test_pending_load_balancers_are_left_to_their_change_and_error_ones_are_failed_over(
    engine: AsyncEngine,
) -> None:
    pending = [await plant(engine, TIMEOUT + 1, status) for status in ("PENDING_UPDATE", "PENDING_DELETE")]
    errored_lb, errored_amphora = await plant(engine, TIMEOUT + 1, "ERROR")
    result = await FailoverDetector(engine, policy(), clock=Clock()).scan()
    assert result.claimed == [errored_amphora]
    assert await lb_status(engine, errored_lb) == "PENDING_UPDATE"
    for _, amphora_id in pending:
        assert not await busy(engine, amphora_id)
    assert [c.resource_id for c in await commands_of(engine)] == [errored_amphora]
    # Once the change in flight settles, the stale amphora of that load balancer is claimed.
    await settle_failover(engine, pending[0][0], pending[0][1], succeeded=False)
    assert (await FailoverDetector(engine, policy(), clock=Clock()).scan()).claimed == [pending[0][1]]


async def test_failovers_are_rate_limited_per_scan_and_in_flight(engine: AsyncEngine) -> None:
    for _ in range(6):
        await plant(engine, 0.2)
    stale = [await plant(engine, TIMEOUT + 10 - i) for i in range(4)]  # the oldest silence first
    clock = Clock()
    detector = FailoverDetector(engine, policy(max_per_scan=2, max_in_flight=3), clock=clock)
    first = await detector.scan()
    assert first.claimed == [stale[0][1], stale[1][1]]
    # Scans come early after a loss (loss.py): the per-scan limit holds per scan interval, however many scans.
    early = await detector.scan()
    assert early.claimed == [] and early.in_flight == 2, "two claimed within this scan interval already"
    clock.t += 0.1
    second = await detector.scan()
    assert second.claimed == [stale[2][1]] and second.in_flight == 2
    clock.t += 0.1
    assert (await detector.scan()).claimed == [], "three in flight: nothing more"
    await settle_failover(engine, *stale[0], succeeded=True)
    clock.t += 0.1
    assert (await detector.scan()).claimed == [stale[3][1]], "one finished, so one more may start"
    assert len(await commands_of(engine)) == 4


async def test_the_breaker_opens_when_too_many_are_silent_and_closes_when_they_report(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = [(await plant(engine, 0.2))[1] for _ in range(4)]
    silent = [await plant(engine, TIMEOUT + 2) for _ in range(4)]
    clock = Clock()
    detector = FailoverDetector(engine, policy(breaker=BreakerPolicy(max_silent=3, max_silent_percent=0)), clock=clock)
    with caplog.at_level(logging.ERROR, "octavia_mesh.health.breaker"):
        opened = await detector.scan()
    assert not opened.verdict.armed and "circuit breaker open" in opened.verdict.reason
    assert opened.claimed == [] and detector.gate.breaker_open
    assert "circuit breaker OPEN: 4 of 8 amphorae are silent" in caplog.text
    clock.t += 30
    assert (await detector.scan()).claimed == [], "still open"
    assert await commands_of(engine) == []
    assert [await lb_status(engine, lb_id) for lb_id, _ in silent] == ["ACTIVE"] * 4

    back = [*healthy, *(amphora_id for _, amphora_id in silent[:3])]
    await heard(engine, *back)  # the health plane is back
    closed = await detector.scan()
    assert not detector.gate.breaker_open
    assert closed.claimed == [], "not heard from since the close: held for a heartbeat timeout, it may be coming back"
    clock.t += TIMEOUT - 0.1
    await heard(engine, *back)
    assert (await detector.scan()).claimed == []
    clock.t += 0.1
    await heard(engine, *back)
    resumed = await detector.scan()
    assert resumed.verdict.armed and resumed.claimed == [silent[3][1]], "the one that stayed silent is replaced"


async def flap(engine: AsyncEngine, clock: Clock) -> tuple[FailoverDetector, list[str], str]:
    """A breaker (more than 3 silent) that opened for 4 late amphorae of 8 and closed when 3 were read at last:
    the detector, the amphorae heard since the close, and the one still unheard."""
    healthy = [(await plant(engine, 0.2))[1] for _ in range(4)]
    late = [(await plant(engine, TIMEOUT + 2))[1] for _ in range(4)]
    detector = FailoverDetector(
        engine, policy(breaker=BreakerPolicy(max_silent=3, max_silent_percent=0), loss_confirm_s=0.1), clock=clock
    )
    assert not (await detector.scan()).verdict.armed and detector.gate.breaker_open
    clock.t += 1
    await heard(engine, *healthy, *late[:3])  # late heartbeats, read at last
    assert (await detector.scan()).claimed == [] and not detector.gate.breaker_open
    return detector, [*healthy, *late[:3]], late[3]


async def test_after_the_breaker_closes_an_amphora_heard_since_is_failed_over_at_once(engine: AsyncEngine) -> None:
    """A starved machine flaps the breaker (heartbeats late by the hundred, then back): an amphora that dies
    after a close must not wait a heartbeat timeout for it, as only amphorae unheard since the close may be
    heartbeats still coming back. Those stay held until the timeout."""
    clock = Clock()
    detector, alive, unheard = await flap(engine, clock)
    lb_id, victim = await plant(engine, 0.0)  # heard after the close...
    await asyncio.sleep(0.05)
    await lose(engine, victim, 0.0)  # ...then its stream broke: a death, not a late heartbeat
    await asyncio.sleep(0.15)  # the loss is confirmed (loss_confirm_s)
    await heard(engine, *alive)
    clock.t += 0.5
    assert (await detector.scan()).claimed == [victim], "failed over at once, not a heartbeat timeout later"
    assert await lb_status(engine, lb_id) == "PENDING_UPDATE"
    await heard(engine, *alive)
    clock.t += TIMEOUT
    assert (await detector.scan()).claimed == [unheard], "the one unheard since the close, after the timeout"


async def test_a_mass_death_right_after_a_close_reopens_the_breaker(engine: AsyncEngine) -> None:
    """The narrower hold after a close lets no mass failure through: the breaker still counts every silent
    amphora, heard since the close or not, and opens before any claim."""
    clock = Clock()
    detector, alive, unheard = await flap(engine, clock)
    dead = [(await plant(engine, 0.0))[1] for _ in range(4)]
    await asyncio.sleep(0.05)
    for amphora_id in dead:
        await lose(engine, amphora_id, 0.0)
    await asyncio.sleep(0.15)
    await heard(engine, *alive, unheard)
    clock.t += 0.5
    result = await detector.scan()
    assert result.claimed == [] and detector.gate.breaker_open and result.silent == 4
    assert await commands_of(engine) == []


@pytest.mark.parametrize(
    ("silent", "monitored", "trips"),
    [(1, 1, False), (2, 2, True), (2, 4, False), (3, 5, True), (11, 100, True), (10, 100, False)],
)
def test_breaker_thresholds(silent: int, monitored: int, trips: bool) -> None:
    """Defaults: more than 10 silent, or at least two and more than half; one alone never trips it."""
    assert BreakerPolicy().trips(silent, monitored) is trips


async def test_the_silent_count_sees_a_health_plane_outage_whole(engine: AsyncEngine) -> None:
    """When heartbeats stop everywhere, rows go stale one by one (their last heartbeats were spread over an
    interval); the breaker counts every amphora silent for half the timeout, so the first stale one does not
    slip through before the others."""
    await plant(engine, TIMEOUT + 0.1)
    for _ in range(3):
        await plant(engine, TIMEOUT * 0.6)  # silent, not stale yet
    result = await FailoverDetector(engine, policy(breaker=BreakerPolicy(10, 50)), clock=Clock()).scan()
    assert (result.silent, result.monitored) == (4, 4)
    assert result.claimed == [] and "circuit breaker open" in result.verdict.reason


async def test_nothing_is_claimed_during_the_start_up_grace(engine: AsyncEngine) -> None:
    _, amphora_id = await plant(engine, TIMEOUT + 1)
    clock = Clock()
    detector = FailoverDetector(engine, policy(startup_grace_s=10.0), clock=clock)
    held = await detector.scan()
    assert not held.verdict.armed and "grace" in held.verdict.reason
    clock.t += 9.9
    assert (await detector.scan()).claimed == []
    clock.t += 0.1
    assert (await detector.scan()).claimed == [amphora_id]


async def test_a_database_outage_holds_failover_until_heartbeats_are_written_again(engine: AsyncEngine) -> None:
    _, amphora_id = await plant(engine, TIMEOUT + 1)
    clock = Clock()
    detector = FailoverDetector(engine, policy(), clock=clock)
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE amphora_health RENAME TO amphora_health_away"))
    try:
        down = await detector.scan()
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE amphora_health_away RENAME TO amphora_health"))
    assert not down.verdict.armed and "database" in down.verdict.reason
    back = await detector.scan()
    assert not back.verdict.armed and back.claimed == [] and "database" in back.verdict.reason
    clock.t += TIMEOUT
    assert (await detector.scan()).claimed == [amphora_id]


async def test_failing_heartbeat_writes_hold_failover(engine: AsyncEngine) -> None:
    _, amphora_id = await plant(engine, TIMEOUT + 1)
    clock, writes = Clock(), {"ok": False}
    detector = FailoverDetector(engine, policy(), clock=clock, writes_ok=lambda: writes["ok"])
    assert (await detector.scan()).verdict.reason == "heartbeat writes are failing"
    writes["ok"] = True
    assert (await detector.scan()).claimed == []
    clock.t += TIMEOUT
    assert (await detector.scan()).claimed == [amphora_id]


async def test_disabled_detects_but_never_claims(engine: AsyncEngine) -> None:
    await plant(engine, TIMEOUT + 1)
    result = await FailoverDetector(engine, policy(enabled=False), clock=Clock()).scan()
    assert result.claimed == [] and "disabled" in result.verdict.reason and result.silent == 1


async def test_replicas_racing_claim_each_amphora_once(engine: AsyncEngine, database_url: str) -> None:
    stale = {(await plant(engine, TIMEOUT + 1))[1] for _ in range(8)}
    engines = [make_engine(database_url) for _ in range(3)]
    try:
        replicas = [FailoverDetector(e, policy(max_per_scan=3, max_in_flight=100), clock=Clock()) for e in engines]
        claimed: list[str] = []
        for _ in range(4):
            for result in await asyncio.gather(*(r.scan() for r in replicas)):
                claimed += result.claimed
    finally:
        for e in engines:
            await e.dispose()
    assert sorted(claimed) == sorted(stale), "every stale amphora claimed, by exactly one replica"
    assert sorted(c.resource_id for c in await commands_of(engine)) == sorted(stale)


async def test_a_failed_failover_is_released_for_another_attempt(engine: AsyncEngine) -> None:
    lb_id, amphora_id = await plant(engine, TIMEOUT + 1)
    clock = Clock()
    detector = FailoverDetector(engine, policy(), clock=clock)
    assert (await detector.scan()).claimed == [amphora_id]
    await settle_failover(engine, lb_id, amphora_id, succeeded=False)
    clock.t += TIDY_EVERY_S
    assert (await detector.scan()).claimed == [], "not retried at once"
    clock.t += FAILED_RETRY_S
    assert (await detector.scan()).claimed == [amphora_id], "released by the tidy pass, then claimed again"
    assert await lb_status(engine, lb_id) == "PENDING_UPDATE"
    assert len(await commands_of(engine)) == 2


async def test_rows_of_retired_amphorae_are_forgotten_and_unheard_ones_are_reported(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    lb_id, amphora_id = await plant(engine, TIMEOUT + 1)
    clock = Clock()
    detector = FailoverDetector(engine, policy(), clock=clock)
    assert (await detector.scan()).claimed == [amphora_id]
    await settle_failover(engine, lb_id, amphora_id, succeeded=True)
    _, write = session_factories(engine)
    unheard = str(uuid.uuid4())
    async with write() as session, session.begin():
        session.add(
            Amphora(
                id=unheard,
                load_balancer_id=lb_id,
                status="ALLOCATED",
                updated_at=utcnow() - dt.timedelta(seconds=TIMEOUT + 1),
            )
        )
    clock.t += TIMEOUT + TIDY_EVERY_S
    with caplog.at_level(logging.ERROR, "octavia_mesh.health.failover"):
        await detector.scan()
    read, _ = session_factories(engine)
    async with read() as session:
        assert (await session.execute(select(AmphoraHealth.amphora_id))).scalars().all() == []
    assert f"amphorae ['{unheard}'] never reported a heartbeat" in caplog.text


# -- losses: streams seen breaking or going quiet (loss.py) ---------------------------------------------------


async def lose(engine: AsyncEngine, amphora_id: str, ago: float) -> None:
    """A replica saw ``amphora_id``'s stream break ``ago`` seconds ago."""
    _, write = session_factories(engine)
    async with write() as session, session.begin():
        await session.execute(
            update(AmphoraHealth)
            .where(AmphoraHealth.amphora_id == amphora_id)
            .values(lost_at=utcnow() - dt.timedelta(seconds=ago))
        )


async def test_a_lost_amphora_is_claimed_once_the_loss_is_confirmed_not_after_the_timeout(engine: AsyncEngine) -> None:
    for _ in range(3):
        await plant(engine, 0.2)
    # Heard 1.6 s ago: before the loss (a heartbeat after it would undo it) and far from the 4 s timeout. The
    # margins are wall-clock seconds (the database's timestamps), so they leave room for a slow machine: the
    # first scan must come within 0.9 s of the loss being recorded.
    lb_id, amphora_id = await plant(engine, 1.6)
    detector = FailoverDetector(engine, policy(loss_confirm_s=1.0), clock=Clock())
    await lose(engine, amphora_id, 0.1)
    young = await detector.scan()
    assert young.claimed == [] and young.silent == 1, "silent at once (the breaker counts it), not yet claimed"
    await lose(engine, amphora_id, 1.2)
    assert (await detector.scan()).claimed == [amphora_id]
    assert await lb_status(engine, lb_id) == "PENDING_UPDATE"


async def test_a_heartbeat_after_the_loss_undoes_it(engine: AsyncEngine) -> None:
    others = [await plant(engine, 0.2) for _ in range(3)]
    _, amphora_id = await plant(engine, 1.0)
    await lose(engine, amphora_id, 0.9)  # seen lost 0.9 s ago...
    await heard(engine, amphora_id)  # ...and heard from since (it reconnected: a reset connection, a rotation)
    # The others heard now too: on a loaded database the steps above took longer than their 2 s of silence (a
    # MariaDB run counted one of them silent).
    await heard(engine, *(a for _, a in others))
    result = await FailoverDetector(engine, policy(loss_confirm_s=0.1), clock=Clock()).scan()
    assert result.claimed == [] and result.silent == 0


async def test_many_losses_at_once_open_the_breaker_before_any_claim(engine: AsyncEngine) -> None:
    fresh = [await plant(engine, 0.2) for _ in range(2)]
    lost = [await plant(engine, 1.0) for _ in range(4)]
    for _, amphora_id in lost:
        await lose(engine, amphora_id, 0.5)
    await heard(engine, *(a for _, a in fresh))  # fresh at the scan, however long the steps above took (loaded runs)
    detector = FailoverDetector(
        engine, policy(breaker=BreakerPolicy(max_silent=3, max_silent_percent=0), loss_confirm_s=0.1), clock=Clock()
    )
    result = await detector.scan()
    assert not result.verdict.armed and result.silent == 4 and result.claimed == []
    assert await commands_of(engine) == []
    assert fresh


def test_the_breaker_counts_a_mass_hang_before_its_first_claim() -> None:
    """Amphorae hung together went quiet up to one heartbeat apart: by the first quiet loss's claim
    (stream_silence_s + loss_confirm_s after its last heartbeat) every other one must already count as silent."""
    from types import SimpleNamespace

    from octavia_mesh.health.failover import breaker_silence

    settings = SimpleNamespace(
        heartbeat_timeout_s=5.0, heartbeat_interval_s=0.5, stream_silence_s=1.5, loss_confirm_s=0.2
    )
    silence = breaker_silence(settings)
    first_claim = settings.stream_silence_s + settings.loss_confirm_s
    assert silence <= first_claim - settings.heartbeat_interval_s  # the last of the others is counted by then
    assert silence > settings.heartbeat_interval_s  # a healthy amphora is heard from more often than that
    assert breaker_silence(SimpleNamespace(**{**vars(settings), "stream_silence_s": 0.0})) == 2.5  # timeout only
