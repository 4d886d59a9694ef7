"""The ingest writes only what changed, on a real database (SQLite; PostgreSQL or MariaDB with
``OCTAVIA_MESH_TEST_DATABASE_URL``): statements are counted as the driver receives them.

Liveness (``amphora_health``) is written for every amphora heard; statistics only when an amphora's counters
changed; a load balancer's tree is read again only for a report that differs from the one last evaluated, or
once that evaluation is ``status_recheck_s`` old; amphora rows are re-checked every ``identity_recheck_s``.
Statuses and statistics still end as the last heartbeats say after a burst of them.
"""

from __future__ import annotations

import asyncio
import random
import re
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.health.events import InMemoryEventPublisher
from octavia_mesh.health.ingest import Ingest, Stream
from octavia_mesh.health.store import HealthStore
from octavia_mesh.protos.health.v1 import health_pb2

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_health_store import SERIAL, Lb, heartbeat, stats  # noqa: E402

_TABLE = re.compile(r"^\s*(INSERT\s+INTO|UPDATE|SELECT\s.*?\sFROM)\s+[`\"]?(\w+)", re.IGNORECASE | re.DOTALL)


class Statements:
    """What reached the database driver: statements by (verb, first table), and rows by table for upserts."""

    def __init__(self) -> None:
        self.statements: Counter[tuple[str, str]] = Counter()
        self.rows: Counter[str] = Counter()

    def note(self, statement: str, parameters: Any, executemany: bool) -> None:
        found = _TABLE.match(statement)
        if found is None:
            return
        verb, table = found.group(1).split()[0].upper(), found.group(2).lower()
        self.statements[(verb, table)] += 1
        if verb == "INSERT":
            self.rows[table] += len(parameters) if executemany else 1

    def selects(self, table: str) -> int:
        return self.statements[("SELECT", table)]


@contextmanager
def counting(engine: AsyncEngine) -> Iterator[Statements]:
    seen = Statements()

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool) -> None:
        seen.note(statement, parameters, executemany)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


def beat(lb: Lb, m1: str = "UP", bytes_in: int = 7, total: int = 1) -> health_pb2.StreamHeartbeatsRequest:
    request = heartbeat(lb, m1)
    counters = request.load_balancers[0].listeners[0].counters
    counters.bytes_in, counters.total_connections = bytes_in, total
    return request


async def opened(ingest: Ingest, store: HealthStore, lbs: list[Lb]) -> list[Stream]:
    """Streams as the servicer opens them: the amphora row checked at the opening."""
    records = await store.amphorae(lb.amphora for lb in lbs)
    return [ingest.open(lb.amphora, SERIAL, "peer", records[lb.amphora]) for lb in lbs]


async def test_a_repeated_report_writes_liveness_only_and_a_change_reads_only_its_own_tree(
    engine: AsyncEngine,
) -> None:
    lbs = [await Lb().plant(engine) for _ in range(4)]
    store = HealthStore(engine, "r")
    ingest = Ingest(store, InMemoryEventPublisher(), flush_interval_s=10, status_recheck_s=60, identity_recheck_s=60)
    streams = await opened(ingest, store, lbs)

    with counting(engine) as first:
        for lb, stream in zip(lbs, streams, strict=True):
            ingest.offer(stream, beat(lb))
        assert await ingest.flush() == 4
    assert first.rows["amphora_health"] == 4 and first.rows["listener_statistics"] == 4
    assert first.selects("load_balancer") == 1  # the four trees, in one read
    assert first.selects("amphora") == 0  # checked when the streams opened

    # The same reports and totals: liveness is written, nothing else is read or written.
    with counting(engine) as same:
        for lb, stream in zip(lbs, streams, strict=True):
            ingest.offer(stream, beat(lb))
        assert await ingest.flush() == 4
    assert same.rows["amphora_health"] == 4
    assert same.rows["listener_statistics"] == 0
    assert same.selects("load_balancer") == same.selects("listener") == same.selects("member") == 0
    assert not any(verb == "UPDATE" for verb, _ in same.statements)

    # One amphora's traffic grew, another's member went down: one statistics row, one tree, its statuses.
    with counting(engine) as changed:
        ingest.offer(streams[0], beat(lbs[0], bytes_in=900, total=3))
        ingest.offer(streams[1], beat(lbs[1], m1="DOWN"))
        ingest.offer(streams[2], beat(lbs[2]))
        assert await ingest.flush() == 3
    assert changed.rows["amphora_health"] == 3 and changed.rows["listener_statistics"] == 1
    assert changed.selects("load_balancer") == 1
    assert (await stats(engine, lbs[0]))[:2] == (900, 3)
    assert (await lbs[1].statuses(engine))[lbs[1].m1] == "ERROR"
    assert set((await lbs[0].statuses(engine)).values()) == {"ONLINE"}

    # A new stream of an amphora (its agent reconnected here after another replica wrote for it): nothing
    # remembered, everything read and written again.
    ingest.close(streams[2])
    (again,) = await opened(ingest, store, [lbs[2]])
    with counting(engine) as reopened:
        ingest.offer(again, beat(lbs[2]))
        assert await ingest.flush() == 1
    assert reopened.rows["listener_statistics"] == 1 and reopened.selects("load_balancer") == 1


async def test_a_status_written_by_someone_else_is_corrected_once_the_evaluation_is_old(engine: AsyncEngine) -> None:
    lb = await Lb().plant(engine)
    store = HealthStore(engine, "r")
    recheck_s = 3.0  # long enough for a flush and an UPDATE on a loaded machine
    ingest = Ingest(store, InMemoryEventPublisher(), status_recheck_s=recheck_s, identity_recheck_s=60)
    (stream,) = await opened(ingest, store, [lb])
    ingest.offer(stream, beat(lb))
    await ingest.flush()
    _, write = session_factories(engine)
    async with write() as session, session.begin():  # not by a change the worker makes (that alters the report)
        await session.execute(text("UPDATE member SET operating_status = 'OFFLINE' WHERE id = :i"), {"i": lb.m2})
    ingest.offer(stream, beat(lb))
    await ingest.flush()
    assert (await lb.statuses(engine))[lb.m2] == "OFFLINE"  # within the recheck: the same report, not evaluated
    await asyncio.sleep(recheck_s + 0.1)
    ingest.offer(stream, beat(lb))
    await ingest.flush()
    assert (await lb.statuses(engine))[lb.m2] == "ONLINE"


async def test_a_flush_rechecks_at_most_a_transaction_of_unchanged_reports_the_oldest_first(
    engine: AsyncEngine,
) -> None:
    lbs = [await Lb().plant(engine) for _ in range(5)]
    store = HealthStore(engine, "r")
    recheck_s = 1.0
    ingest = Ingest(
        store, InMemoryEventPublisher(), flush_max_amphorae=2, status_recheck_s=recheck_s, identity_recheck_s=60
    )
    streams = await opened(ingest, store, lbs)
    for stream, lb in zip(streams, lbs, strict=True):
        ingest.offer(stream, beat(lb))
    await ingest.flush()  # every report evaluated once (first seen): no budget for those
    _, write = session_factories(engine)
    async with write() as session, session.begin():  # statuses someone else wrote, the reports unchanged
        for lb in lbs:
            await session.execute(text("UPDATE member SET operating_status = 'OFFLINE' WHERE id = :i"), {"i": lb.m2})
    await asyncio.sleep(recheck_s + 0.1)

    async def corrected() -> int:
        return sum([(await lb.statuses(engine))[lb.m2] == "ONLINE" for lb in lbs])

    seen = []
    for _ in range(3):
        for stream, lb in zip(streams, lbs, strict=True):
            ingest.offer(stream, beat(lb))
        await ingest.flush()
        seen.append(await corrected())
    # Two re-checks per flush (a transaction's worth); the ones left over are the oldest at the next flush.
    assert seen == [2, 4, 5]


async def test_a_rotated_certificate_is_found_by_the_next_identity_recheck(engine: AsyncEngine) -> None:
    lb = await Lb().plant(engine)
    store = HealthStore(engine, "r")
    recheck_s = 3.0  # long enough for a flush and an UPDATE on a loaded machine
    ingest = Ingest(store, InMemoryEventPublisher(), identity_recheck_s=recheck_s)
    (stream,) = await opened(ingest, store, [lb])
    _, write = session_factories(engine)
    async with write() as session, session.begin():
        await session.execute(text("UPDATE amphora SET cert_serial = 'feedface' WHERE id = :i"), {"i": lb.amphora})
    with counting(engine) as soon:
        ingest.offer(stream, beat(lb))
        assert await ingest.flush() == 1
    assert stream.revoked is None and soon.selects("amphora") == 0
    await asyncio.sleep(recheck_s + 0.1)
    with counting(engine) as later:
        ingest.offer(stream, beat(lb))
        assert await ingest.flush() == 0
    assert later.selects("amphora") == 1
    assert stream.revoked == "the certificate is not the amphora's current one"


async def test_statuses_and_statistics_are_the_last_heartbeats_after_a_burst(engine: AsyncEngine) -> None:
    lbs = [await Lb().plant(engine) for _ in range(30)]
    store = HealthStore(engine, "r")
    # Small transactions and an evaluation that is never rechecked: only the changes found drive the writes.
    ingest = Ingest(store, InMemoryEventPublisher(), flush_max_amphorae=7, status_recheck_s=600)
    streams = await opened(ingest, store, lbs)
    rng = random.Random(12)
    last: dict[str, tuple[str, int]] = {}
    for round_ in range(40):
        for lb, stream in zip(lbs, streams, strict=True):
            if rng.random() < 0.5:
                continue
            m1 = rng.choice(["UP", "DOWN", "UP", "MAINT", "DRAIN"])
            total = round_ * 10 + rng.randrange(10)  # totals grow
            ingest.offer(stream, beat(lb, m1=m1, bytes_in=total * 100, total=total))
            last[lb.id] = (m1, total)
        if rng.random() < 0.4:  # a flush now and then: most amphorae are coalesced over several rounds
            await ingest.flush()
    await ingest.flush()
    member = {"UP": "ONLINE", "DOWN": "ERROR", "MAINT": "OFFLINE", "DRAIN": "DRAINING"}
    for lb in lbs:
        m1, total = last[lb.id]
        statuses = await lb.statuses(engine)
        assert statuses[lb.m1] == member[m1], (lb.id, m1, statuses)
        assert statuses[lb.pool] == ("DEGRADED" if m1 == "DOWN" else "ONLINE")
        assert statuses[lb.id] == ("DEGRADED" if m1 == "DOWN" else "ONLINE")
        assert (await stats(engine, lb))[:2] == (total * 100, total)
