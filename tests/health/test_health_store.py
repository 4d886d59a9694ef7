"""Batched heartbeat writes on a real database (SQLite; PostgreSQL or MariaDB with
``OCTAVIA_MESH_TEST_DATABASE_URL``): the upserts, never-backwards statistics, status changes only on change
and never into a change in flight, revocation found by a flush, and events for what was written."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import (
    Amphora,
    AmphoraHealth,
    Listener,
    ListenerStatistics,
    LoadBalancer,
    Member,
    Pool,
    utcnow,
)
from octavia_mesh.health.events import InMemoryEventPublisher
from octavia_mesh.health.ingest import AmphoraDirectory, Ingest
from octavia_mesh.health.status import Report
from octavia_mesh.health.store import Counters, HealthStore, Item
from octavia_mesh.protos.events.v1 import events_pb2
from octavia_mesh.protos.health.v1 import health_pb2

SERIAL = "abc123"


class Lb:
    """One load balancer planted in the database: listener l, pool p (its default), members m1 and m2,
    served by one ALLOCATED amphora whose certificate serial is :data:`SERIAL`."""

    def __init__(self) -> None:
        self.id, self.listener, self.pool, self.amphora = (str(uuid.uuid4()) for _ in range(4))
        self.m1, self.m2 = str(uuid.uuid4()), str(uuid.uuid4())

    async def plant(self, engine: AsyncEngine, status: str = "ACTIVE") -> Lb:
        _, write = session_factories(engine)
        common = {"project_id": "p", "provisioning_status": "ACTIVE", "operating_status": "ONLINE"}
        past = utcnow() - dt.timedelta(minutes=1)
        async with write() as session, session.begin():
            session.add(
                LoadBalancer(
                    id=self.id, provider="amphora", updated_at=past, **{**common, "provisioning_status": status}
                )
            )
            await session.flush()
            session.add(
                Pool(id=self.pool, load_balancer_id=self.id, protocol="HTTP", lb_algorithm="ROUND_ROBIN", **common)
            )
            await session.flush()
            session.add(
                Listener(
                    id=self.listener,
                    load_balancer_id=self.id,
                    protocol="HTTP",
                    protocol_port=80,
                    default_pool_id=self.pool,
                    **common,
                )
            )
            for n, member in enumerate((self.m1, self.m2)):
                session.add(Member(id=member, pool_id=self.pool, address="10.0.0.1", protocol_port=80 + n, **common))
            session.add(
                Amphora(
                    id=self.amphora, load_balancer_id=self.id, status="ALLOCATED", cert_serial=SERIAL, role="STANDALONE"
                )
            )
        return self

    def report(self, m1: str = "UP", m2: str = "UP") -> Report:
        return Report.of(
            True, [(self.listener, "OPEN")], [(f"{self.pool}:{self.listener}", "UP", {self.m1: m1, self.m2: m2})]
        )

    def item(self, m1: str = "UP", totals: int = 100, active: int = 1) -> Item:
        return Item(
            amphora_id=self.amphora,
            load_balancer_id=self.id,
            allocated=True,
            received_at=utcnow(),
            report=self.report(m1),
            counters={self.listener: Counters(totals, 2 * totals, active, totals // 10, 0)},
        )

    async def statuses(self, engine: AsyncEngine) -> dict[str, str]:
        read, _ = session_factories(engine)
        out = {}
        async with read() as session:
            for model, ids in (
                (LoadBalancer, [self.id]),
                (Listener, [self.listener]),
                (Pool, [self.pool]),
                (Member, [self.m1, self.m2]),
            ):
                for row in await session.execute(select(model.id, model.operating_status).where(model.id.in_(ids))):
                    out[row.id] = row.operating_status
        return out


async def stats(engine: AsyncEngine, lb: Lb) -> tuple[int, int, int]:
    read, _ = session_factories(engine)
    async with read() as session:
        row = (
            await session.execute(
                select(
                    ListenerStatistics.bytes_in,
                    ListenerStatistics.total_connections,
                    ListenerStatistics.active_connections,
                ).where(ListenerStatistics.amphora_id == lb.amphora)
            )
        ).one()
    return tuple(row)


async def test_health_rows_are_upserted_and_keep_the_detectors_busy_flag(engine: AsyncEngine) -> None:
    lb = await Lb().plant(engine)
    store = HealthStore(engine, "replica-a")
    await store.write([lb.item()])
    _, write = session_factories(engine)
    async with write() as session, session.begin():
        await session.execute(update(AmphoraHealth).where(AmphoraHealth.amphora_id == lb.amphora).values(busy=True))
    first = utcnow()
    await HealthStore(engine, "replica-b").write([lb.item()])
    async with write() as session:
        row = await session.get(AmphoraHealth, lb.amphora)
    assert row is not None and row.busy is True and row.reporter == "replica-b" and row.last_update >= first


async def test_statistics_never_go_backwards_and_active_connections_follow(engine: AsyncEngine) -> None:
    lb = await Lb().plant(engine)
    store = HealthStore(engine, "r")
    await store.write([lb.item(totals=1000, active=5)])
    assert await stats(engine, lb) == (1000, 100, 5)
    await store.write([lb.item(totals=3000, active=2)])
    assert await stats(engine, lb) == (3000, 300, 2)
    # An amphora that lost its counters reports less: the stored totals stay, the open connections follow.
    await store.write([lb.item(totals=10, active=0)])
    assert await stats(engine, lb) == (3000, 300, 0)


async def test_statuses_change_only_on_change(engine: AsyncEngine) -> None:
    lb = await Lb().plant(engine)
    store = HealthStore(engine, "r")
    result = await store.write([lb.item(m1="DOWN")])
    assert {(c.id, c.previous, c.status) for c, _, _ in result.changes} == {
        (lb.m1, "ONLINE", "ERROR"),
        (lb.pool, "ONLINE", "DEGRADED"),
        (lb.id, "ONLINE", "DEGRADED"),
    }
    assert await lb.statuses(engine) == {
        lb.id: "DEGRADED",
        lb.listener: "ONLINE",
        lb.pool: "DEGRADED",
        lb.m1: "ERROR",
        lb.m2: "ONLINE",
    }
    assert (await store.write([lb.item(m1="DOWN")])).changes == []
    result = await store.write([lb.item(m1="UP")])
    assert {c.id for c, _, _ in result.changes} == {lb.m1, lb.pool, lb.id}
    assert set((await lb.statuses(engine)).values()) == {"ONLINE"}


async def test_pending_load_balancers_and_stale_reports_keep_their_statuses(engine: AsyncEngine) -> None:
    pending = await Lb().plant(engine, status="PENDING_UPDATE")
    store = HealthStore(engine, "r")
    result = await store.write([pending.item(m1="DOWN")])
    assert result.changes == [] and set((await pending.statuses(engine)).values()) == {"ONLINE"}
    assert result.statistics_rows == 1  # counters and liveness are written all the same

    settled = await Lb().plant(engine)
    stale = settled.item(m1="DOWN")
    _, write = session_factories(engine)
    async with write() as session, session.begin():  # the worker settled a change after the agent read this
        await session.execute(update(LoadBalancer).where(LoadBalancer.id == settled.id).values(updated_at=utcnow()))
    stale.sampled_at = stale.received_at - dt.timedelta(milliseconds=1)
    assert (await store.write([stale])).changes == []
    assert len((await store.write([settled.item(m1="DOWN")])).changes) == 3


async def test_counters_of_unknown_listeners_are_not_stored(engine: AsyncEngine) -> None:
    lb = await Lb().plant(engine)
    item = lb.item()
    item.counters["deleted-listener"] = Counters(1, 1, 1, 1, 1)
    assert (await HealthStore(engine, "r").write([item])).statistics_rows == 1


def heartbeat(lb: Lb, m1: str = "UP") -> health_pb2.StreamHeartbeatsRequest:
    return health_pb2.StreamHeartbeatsRequest(
        amphora_id=lb.amphora,
        sequence=1,
        load_balancers=[
            health_pb2.LoadBalancerReport(
                load_balancer_id=lb.id,
                running=True,
                listeners=[
                    health_pb2.ListenerReport(
                        name=lb.listener,
                        status="OPEN",
                        counters=health_pb2.ListenerCounters(bytes_in=7, total_connections=1),
                    )
                ],
                pools=[
                    health_pb2.PoolReport(
                        name=f"{lb.pool}:{lb.listener}",
                        status="UP",
                        members=[
                            health_pb2.MemberReport(name=lb.m1, status=m1),
                            health_pb2.MemberReport(name=lb.m2, status="UP"),
                        ],
                    )
                ],
            ),
            # Another load balancer's files left on the amphora: never its to report.
            health_pb2.LoadBalancerReport(load_balancer_id=str(uuid.uuid4()), running=False),
        ],
    )


async def test_flushes_batch_many_amphorae_revoke_stale_certificates_and_publish_events(engine: AsyncEngine) -> None:
    lbs = [await Lb().plant(engine) for _ in range(12)]
    publisher = InMemoryEventPublisher()
    store = HealthStore(engine, "replica-x")
    ingest = Ingest(store, publisher, flush_interval_s=10, flush_max_amphorae=5)
    streams = [ingest.open(lb.amphora, SERIAL, "peer") for lb in lbs]
    for lb, stream in zip(lbs, streams, strict=True):
        ingest.offer(stream, heartbeat(lb, m1="UP"))
        ingest.offer(stream, heartbeat(lb, m1="DOWN"))  # the newer heartbeat replaces the older
    rotated = ingest.open(lbs[0].amphora, "0ld5e41", "peer")  # a rotated-out certificate reconnects
    ingest.offer(rotated, heartbeat(lbs[0], m1="UP"))
    assert await ingest.flush() == 11  # in three transactions of at most five
    assert rotated.revoked == "the certificate is not the amphora's current one"
    for lb in lbs[1:]:
        assert (await lb.statuses(engine))[lb.m1] == "ERROR"
        assert (await stats(engine, lb))[:2] == (7, 1)
    assert (await lbs[0].statuses(engine))[lbs[0].m1] == "ONLINE"
    events = [events_pb2.OperatingStatusChanged.FromString(e.payload) for e in publisher.events]
    assert len(events) == 33
    member_events = [e for e in events if e.kind == events_pb2.RESOURCE_KIND_MEMBER]
    assert {e.id for e in member_events} == {lb.m1 for lb in lbs[1:]}
    event = member_events[0]
    assert (event.previous_status, event.status) == (
        events_pb2.OPERATING_STATUS_ONLINE,
        events_pb2.OPERATING_STATUS_ERROR,
    )
    assert event.reporter == "replica-x" and event.project_id == "p"
    subject = next(e.subject for e in publisher.events if e.event_id == event.event_id)
    assert subject == f"octavia.events.v1.operating_status.{event.load_balancer_id}.member.{event.id}"
    # Nothing pending: nothing written.
    assert await ingest.flush() == 0


async def test_a_deleted_amphora_is_revoked(engine: AsyncEngine) -> None:
    lb = await Lb().plant(engine)
    _, write = session_factories(engine)
    async with write() as session, session.begin():
        await session.execute(text("UPDATE amphora SET status = 'DELETED' WHERE id = :i"), {"i": lb.amphora})
    ingest = Ingest(HealthStore(engine, "r"), InMemoryEventPublisher())
    stream = ingest.open(lb.amphora, SERIAL, "peer")
    ingest.offer(stream, heartbeat(lb))
    assert await ingest.flush() == 0
    assert stream.revoked == "the amphora was deleted"


async def test_concurrent_stream_openings_share_lookups_and_all_get_an_answer(engine: AsyncEngine) -> None:
    lbs = [await Lb().plant(engine) for _ in range(6)]
    directory = AmphoraDirectory(HealthStore(engine, "r"))

    async def opening(lb: Lb, delay: float) -> str | None:
        await asyncio.sleep(delay)
        record = await directory.get(lb.amphora)
        return record.cert_serial if record else None

    # Staggered: some arrive while an earlier lookup's query runs.
    delays = [0.0, 0.002, 0.004, 0.008, 0.015, 0.03]
    got = await asyncio.wait_for(asyncio.gather(*(opening(lb, d) for lb, d in zip(lbs, delays, strict=True))), 10)
    assert got == [SERIAL] * 6
    assert await directory.get(str(uuid.uuid4())) is None
