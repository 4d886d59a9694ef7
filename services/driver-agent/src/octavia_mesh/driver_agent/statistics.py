"""Recording a provider's listener counters (octavia-lib's ``update_listener_statistics``).

Each entry replaces the counters one instance keeps for one listener (the
``listener_statistics`` row keyed by listener and amphora id); the API sums a
listener's rows for ``/stats``. Providers without amphorae leave the instance
empty and the listener's own id stands in for it, as in Octavia's driver
agent.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.common.db.models import Listener, ListenerStatistics, LoadBalancer, utcnow
from octavia_mesh.driver_agent.errors import InvalidArgument, NotFound, PermissionDenied
from octavia_mesh.driver_agent.owners import check_id

COUNTERS = ("active_connections", "bytes_in", "bytes_out", "request_errors", "total_connections")
_INSTANCE = re.compile(r"[A-Za-z0-9_.-]{1,36}")
#: ``active_connections`` is a 32-bit column (as in Octavia); the totals are 64-bit.
_LIMITS = {"active_connections": 2**31 - 1}
KIND = "listeners"


@dataclass(frozen=True, slots=True)
class Counters:
    """One entry: a listener's counters as one instance counted them."""

    index: int
    listener_id: str
    amphora_id: str
    active_connections: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    request_errors: int = 0
    total_connections: int = 0


def validate(entries: Sequence[Counters]) -> list[Counters]:
    """The entries with canonical ids and their instance filled in, or :class:`InvalidArgument`."""
    seen: set[tuple[str, str]] = set()
    out = []
    for entry in entries:
        field = f"listeners[{entry.index}]"
        listener_id = check_id(entry.listener_id, KIND, f"{field}.id")
        instance = entry.amphora_id or listener_id
        if not _INSTANCE.fullmatch(instance):
            raise InvalidArgument(
                f"{field}.amphora_id: {instance!r} is not 1 to 36 characters of [A-Za-z0-9_.-]",
                KIND,
                listener_id,
                f"{field}.amphora_id",
            )
        for name in COUNTERS:
            value = getattr(entry, name)
            if not 0 <= value <= _LIMITS.get(name, 2**63 - 1):
                raise InvalidArgument(f"{field}.{name}: {value} is out of range", KIND, listener_id, f"{field}.{name}")
        if (listener_id, instance) in seen:
            raise InvalidArgument(f"{field}: listener {listener_id} is reported twice", KIND, listener_id, field)
        seen.add((listener_id, instance))
        out.append(
            Counters(entry.index, listener_id, instance, *(getattr(entry, name) for name in COUNTERS))  # type: ignore[arg-type]
        )
    return out


async def record(session: AsyncSession, raw: Sequence[Counters], provider: str = "") -> None:
    """Write the counters in the caller's transaction (refusing unknown or foreign listeners first)."""
    entries = validate(raw)
    ids = sorted({e.listener_id for e in entries})
    owners = {
        row.id: row.provider
        for row in await session.execute(
            select(Listener.id, LoadBalancer.provider)
            .join(LoadBalancer, Listener.load_balancer_id == LoadBalancer.id)
            .where(Listener.id.in_(ids))
        )
    }
    for entry in entries:
        if entry.listener_id not in owners:
            raise NotFound(KIND, entry.listener_id)
        if provider and owners[entry.listener_id] != provider:
            raise PermissionDenied(
                f"listeners {entry.listener_id} belongs to a load balancer of provider "
                f"{owners[entry.listener_id]!r}, not {provider!r}",
                KIND,
                entry.listener_id,
            )
    now = utcnow()
    for entry in entries:
        values = {name: getattr(entry, name) for name in COUNTERS}
        await _upsert(session, entry.listener_id, entry.amphora_id, values, now)


async def _upsert(
    session: AsyncSession, listener_id: str, instance: str, values: dict[str, int], now: dt.datetime
) -> None:
    key = {"listener_id": listener_id, "amphora_id": instance}
    row = await session.get(ListenerStatistics, (listener_id, instance))
    if row is None:
        try:
            async with session.begin_nested():  # another report may insert the same pair at the same time
                session.add(ListenerStatistics(**key, **values, updated_at=now))
            return
        except IntegrityError:
            row = await session.get(ListenerStatistics, (listener_id, instance), populate_existing=True)
            if row is None:
                raise
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = now
