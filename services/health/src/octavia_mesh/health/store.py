"""The health service's database work, in batches: one transaction writes many amphorae's heartbeats.

Per batch (at most ``flush_max_amphorae`` amphorae), in one transaction:

1. ``amphora_health`` rows are upserted (``last_update``, ``reporter``; ``busy`` is the failover detector's);
2. the load balancers the amphorae serve are read with their listeners, pools and members, the load balancer
   rows share-locked on PostgreSQL and MariaDB (SQLite's write transaction is exclusive anyway), so the API
   cannot start a change on them until the batch commits, and the batch never writes a status into a
   change in flight;
3. ``listener_statistics`` rows are upserted with the amphora's totals (taken as the greater of stored and
   reported: totals never go backwards, even for an amphora that lost its counters);
4. operating statuses that changed are written, one UPDATE per table and status.

Upserts are the dialects' own (``ON CONFLICT`` on SQLite and PostgreSQL, ``ON DUPLICATE KEY`` on MariaDB);
a transaction the database rolled back to break a deadlock runs again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, func, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import (
    Amphora,
    AmphoraHealth,
    Listener,
    ListenerStatistics,
    LoadBalancer,
    Member,
    Pool,
)
from octavia_mesh.common.db.retry import retry_transaction
from octavia_mesh.common.lifecycle import AmphoraStatus
from octavia_mesh.health import status as st

logger = logging.getLogger(__name__)

_MODELS: dict[str, Any] = {st.LOAD_BALANCER: LoadBalancer, st.LISTENER: Listener, st.POOL: Pool, st.MEMBER: Member}


@dataclass(frozen=True, slots=True)
class AmphoraRecord:
    """What the health service needs of an amphora row."""

    id: str
    load_balancer_id: str | None
    status: str
    cert_serial: str | None


def refusal(record: AmphoraRecord | None, serial: str) -> str | None:
    """Why a certificate with ``serial`` may not report for ``record``'s amphora; None when it may."""
    if record is None:
        return "unknown amphora"
    if record.status == AmphoraStatus.DELETED:
        return "the amphora was deleted"
    if not record.cert_serial or record.cert_serial.lower() != serial.lower():
        return "the certificate is not the amphora's current one"
    return None


@dataclass(frozen=True, slots=True)
class Counters:
    bytes_in: int
    bytes_out: int
    active_connections: int
    total_connections: int
    request_errors: int


@dataclass(slots=True)
class Item:
    """One amphora's latest heartbeat, as the batch writes it."""

    amphora_id: str
    load_balancer_id: str | None  # from the amphora row: an amphora reports for its own load balancer only
    allocated: bool
    received_at: dt.datetime
    #: When the agent read what it reports (never later than ``received_at``).
    sampled_at: dt.datetime | None = None
    report: st.Report | None = None
    counters: dict[str, Counters] = field(default_factory=dict)  # frontend name -> totals
    #: Whether to read the load balancer's tree and evaluate ``report`` against it. The ingest clears it for an
    #: amphora whose report is the one it last evaluated, recently: nothing would change.
    evaluate: bool = True
    #: With ``evaluate`` off: the listener ids the tree had when it was last read (statistics of other
    #: frontends are not stored).
    listeners: frozenset[str] | None = None


@dataclass(slots=True)
class BatchResult:
    changes: list[tuple[st.Change, str, str]] = field(default_factory=list)  # (change, project, amphora)
    statistics_rows: int = 0
    #: (amphora, listener) of every statistics row written.
    statistics: list[tuple[str, str]] = field(default_factory=list)
    #: Amphorae whose report was evaluated against a settled tree (the database has what it says).
    evaluated: set[str] = field(default_factory=set)
    #: Listener ids of every load balancer whose tree was read.
    listeners: dict[str, frozenset[str]] = field(default_factory=dict)


_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "mysql": mysql.insert, "mariadb": mysql.insert}


def _insert(dialect: str, table: Table) -> Any:
    return _INSERTS.get(dialect, sqlite.insert)(table)


def _greatest(dialect: str, a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[Any]:
    # SQLite's two-argument max() is its GREATEST.
    return func.max(a, b) if dialect == "sqlite" else func.greatest(a, b)


def upsert(dialect: str, table: Table, keys: Sequence[str], updates: dict[str, Any]) -> Any:
    """An INSERT that updates the existing row instead; ``updates`` maps columns to a function of the proposed
    row's column (``excluded``/``VALUES()``) and the table's column. Executed with a list of rows (an
    executemany): one statement, compiled once, whatever the batch size."""
    stmt = _insert(dialect, table)
    if dialect in ("mysql", "mariadb"):
        return stmt.on_duplicate_key_update({c: f(stmt.inserted[c], table.c[c]) for c, f in updates.items()})
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: f(stmt.excluded[c], table.c[c]) for c, f in updates.items()}
    )


class HealthStore:
    """Reads amphorae and writes heartbeat batches (see the module docstring)."""

    def __init__(self, engine: AsyncEngine, reporter: str) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.reporter = reporter
        self._read: async_sessionmaker[AsyncSession]
        self._read, self._write = session_factories(engine)
        d = self.dialect

        def never_less(new: Any, old: Any) -> Any:
            return _greatest(d, old, new)

        def take(new: Any, _old: Any) -> Any:
            return new

        self._health_upsert = upsert(
            d, cast(Table, AmphoraHealth.__table__), ["amphora_id"], {"last_update": take, "reporter": take}
        )
        self._statistics_upsert = upsert(
            d,
            cast(Table, ListenerStatistics.__table__),
            ["listener_id", "amphora_id"],
            {
                "bytes_in": never_less,
                "bytes_out": never_less,
                "total_connections": never_less,
                "request_errors": never_less,
                "active_connections": take,
                "updated_at": take,
            },
        )

    async def amphorae(self, ids: Iterable[str]) -> dict[str, AmphoraRecord]:
        wanted = sorted(set(ids))
        out: dict[str, AmphoraRecord] = {}
        async with self._read() as session:
            for start in range(0, len(wanted), 500):
                rows = await session.execute(
                    select(Amphora.id, Amphora.load_balancer_id, Amphora.status, Amphora.cert_serial).where(
                        Amphora.id.in_(wanted[start : start + 500])
                    )
                )
                out.update({r.id: AmphoraRecord(r.id, r.load_balancer_id, r.status, r.cert_serial) for r in rows})
        return out

    async def write(self, items: Sequence[Item]) -> BatchResult:
        """Write one batch in one transaction, retried when the database broke a deadlock."""

        async def work() -> BatchResult:
            async with self._write() as session, session.begin():
                return await self._write_batch(session, items)

        return await retry_transaction(work)

    async def _write_batch(self, session: AsyncSession, items: Sequence[Item]) -> BatchResult:
        result = BatchResult()
        if not items:
            return result
        await session.execute(
            self._health_upsert,
            [
                {"amphora_id": i.amphora_id, "last_update": i.received_at, "busy": False, "reporter": self.reporter}
                for i in items
            ],
        )
        # Trees only for the reports to evaluate: a report the ingest evaluated a moment ago changes nothing.
        lb_ids = sorted({i.load_balancer_id for i in items if i.load_balancer_id and i.evaluate})
        trees = await self._trees(session, lb_ids) if lb_ids else {}
        result.listeners = {lb_id: frozenset(tree.listeners) for lb_id, tree in trees.items()}
        await self._statistics(session, items, trees, result)
        # Keyed by object: two amphorae of one load balancer in a batch give one change (the later wins).
        changes: dict[tuple[str, str], tuple[st.Change, str, str]] = {}
        for item in items:
            tree = trees.get(item.load_balancer_id or "")
            if tree is None or item.report is None or not item.allocated:
                continue
            if tree.changed_at is not None and (item.sampled_at or item.received_at) <= tree.changed_at:
                # Read before the last change was settled: HAProxy may not have had its configuration yet.
                continue
            if tree.settled:
                result.evaluated.add(item.amphora_id)
            found = st.evaluate(tree, item.report)
            _apply(tree, found)
            for change in found:
                key = (change.kind, change.id)
                first = changes[key][0].previous if key in changes else change.previous
                changes[key] = (
                    st.Change(change.kind, change.id, change.load_balancer_id, first, change.status),
                    tree.project_id,
                    item.amphora_id,
                )
        kept = [entry for entry in changes.values() if entry[0].previous != entry[0].status]
        await self._write_statuses(session, [c for c, _, _ in kept])
        result.changes = kept
        return result

    async def _trees(self, session: AsyncSession, lb_ids: list[str]) -> dict[str, st.Tree]:
        lbs = select(
            LoadBalancer.id,
            LoadBalancer.project_id,
            LoadBalancer.operating_status,
            LoadBalancer.admin_state_up,
            LoadBalancer.provisioning_status,
            LoadBalancer.updated_at,
        ).where(LoadBalancer.id.in_(lb_ids))
        if self.dialect != "sqlite":
            # Sorted ids, so two batches lock in the same order; a share lock lets other batches read on.
            lbs = lbs.order_by(LoadBalancer.id).with_for_update(read=True)
        trees = {
            r.id: st.Tree(
                st.Node(r.id, r.operating_status, r.admin_state_up, r.provisioning_status),
                r.project_id or "",
                changed_at=r.updated_at,
            )
            for r in await session.execute(lbs)
        }
        for model, attr in ((Listener, "listeners"), (Pool, "pools")):
            rows = await session.execute(
                select(
                    model.id,
                    model.load_balancer_id,
                    model.operating_status,
                    model.admin_state_up,
                    model.provisioning_status,
                ).where(model.load_balancer_id.in_(lb_ids))
            )
            for r in rows:
                getattr(trees[r.load_balancer_id], attr)[r.id] = st.Node(
                    r.id, r.operating_status, r.admin_state_up, r.provisioning_status
                )
        members = await session.execute(
            select(
                Member.id,
                Member.pool_id,
                Pool.load_balancer_id,
                Member.operating_status,
                Member.admin_state_up,
                Member.provisioning_status,
            )
            .join(Pool, Pool.id == Member.pool_id)
            .where(Pool.load_balancer_id.in_(lb_ids))
        )
        for r in members:
            trees[r.load_balancer_id].members.setdefault(r.pool_id, {})[r.id] = st.Node(
                r.id, r.operating_status, r.admin_state_up, r.provisioning_status
            )
        return trees

    async def _statistics(
        self, session: AsyncSession, items: Sequence[Item], trees: dict[str, st.Tree], result: BatchResult
    ) -> None:
        rows = []
        for item in items:
            tree = trees.get(item.load_balancer_id or "")
            known = tree.listeners.keys() if tree is not None else item.listeners
            if known is None:
                continue
            for name, c in item.counters.items():
                if name in known:  # a frontend the database knows (not a deleted listener's)
                    result.statistics.append((item.amphora_id, name))
                    rows.append(
                        {
                            "listener_id": name,
                            "amphora_id": item.amphora_id,
                            "bytes_in": c.bytes_in,
                            "bytes_out": c.bytes_out,
                            "active_connections": c.active_connections,
                            "total_connections": c.total_connections,
                            "request_errors": c.request_errors,
                            "updated_at": item.received_at,
                        }
                    )
        if rows:
            await session.execute(self._statistics_upsert, rows)
        result.statistics_rows = len(rows)

    async def _write_statuses(self, session: AsyncSession, changes: list[st.Change]) -> None:
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for change in changes:
            groups[(change.kind, change.status)].append(change.id)
        for (kind, new_status), ids in sorted(groups.items()):
            model = _MODELS[kind]
            await session.execute(
                update(model).where(model.id.in_(sorted(ids))).values(operating_status=new_status),
                execution_options={"synchronize_session": False},
            )


def _apply(tree: st.Tree, changes: list[st.Change]) -> None:
    # Two amphorae of one load balancer in a batch: the second is evaluated against the first's result.
    nodes: dict[str, st.Node] = {tree.lb.id: tree.lb, **tree.listeners, **tree.pools}
    for members in tree.members.values():
        nodes.update(members)
    for change in changes:
        node = nodes.get(change.id)
        if node is not None:
            node.operating_status = change.status
