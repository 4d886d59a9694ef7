"""Purging rows nobody needs any more, so the database does not grow for ever.

* ``DELETED`` load balancers and amphorae, once older than their expiry age (Octavia keeps them a week so
  that operators can still look them up; the API already hides them). A load balancer goes with the
  ``DELETED`` amphora rows that still name it (their foreign key would hold it back); one that still has
  children or live amphorae is left for the worker and the orphan sweep to finish first.
* Completed provider commands (outbox rows) and the flow records of commands that no longer run, once
  older than the record expiry: JetStream's duplicate window (5 minutes) is long past, and a redelivered
  command whose row is gone is skipped by the worker as unknown. Octavia's flows have no such record; ours
  were never removed before.
* ``amphora_health`` rows of amphorae that are gone (no row, or ``DELETED``), and ``listener_statistics``
  rows whose listener is gone. Statistics of a listener's retired amphorae stay while the listener lives:
  its totals are the sum over its amphorae, and must not drop a week after a failover. Statistics rows no
  service ever stamped (no ``updated_at``) are left alone.

Every purge runs in batches, each in its own short transaction, and is safe to run from several replicas at
once (a row deleted twice is deleted once).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common.db.engine import rowcount
from octavia_mesh.common.db.models import (
    Amphora,
    AmphoraHealth,
    FlowProgress,
    Listener,
    ListenerStatistics,
    LoadBalancer,
    Pool,
    ProviderCommand,
    Tag,
    VipAllocation,
)
from octavia_mesh.common.lifecycle import Provisioning

logger = logging.getLogger(__name__)

BATCH = 500
#: The same word for load balancers and amphorae.
DELETED = Provisioning.DELETED


def _age(model: Any) -> Any:
    """When a row last changed: ``updated_at``, or ``created_at`` for one never updated."""
    return func.coalesce(model.updated_at, model.created_at)


async def _drop_amphorae(session: AsyncSession, amphora_ids: Sequence[str]) -> None:
    """Delete amphora rows with their health rows, as Octavia does (statistics: see the module docstring)."""
    if not amphora_ids:
        return
    await session.execute(delete(AmphoraHealth).where(AmphoraHealth.amphora_id.in_(amphora_ids)))
    await session.execute(delete(Amphora).where(Amphora.id.in_(amphora_ids)))


async def purge_load_balancers(sessions: async_sessionmaker[AsyncSession], cutoff: dt.datetime) -> int:
    """Delete ``DELETED`` load balancers last changed before ``cutoff``; returns how many."""
    purged = 0
    while True:
        async with sessions() as session, session.begin():
            ids = list(
                (
                    await session.execute(
                        select(LoadBalancer.id)
                        .where(
                            LoadBalancer.provisioning_status == DELETED,
                            _age(LoadBalancer) < cutoff,
                            ~exists().where(Listener.load_balancer_id == LoadBalancer.id),
                            ~exists().where(Pool.load_balancer_id == LoadBalancer.id),
                            ~exists().where(Amphora.load_balancer_id == LoadBalancer.id, Amphora.status != DELETED),
                        )
                        .limit(BATCH)
                    )
                ).scalars()
            )
            if not ids:
                return purged
            amphorae = (await session.execute(select(Amphora.id).where(Amphora.load_balancer_id.in_(ids)))).scalars()
            await _drop_amphorae(session, list(amphorae))
            # Both are given back when the load balancer is deleted; this only catches what a bug left.
            await session.execute(delete(Tag).where(Tag.resource_id.in_(ids)))
            await session.execute(delete(VipAllocation).where(VipAllocation.load_balancer_id.in_(ids)))
            await session.execute(delete(LoadBalancer).where(LoadBalancer.id.in_(ids)))
        purged += len(ids)


async def purge_amphorae(sessions: async_sessionmaker[AsyncSession], cutoff: dt.datetime) -> int:
    """Delete ``DELETED`` amphorae last changed before ``cutoff``; returns how many."""
    purged = 0
    while True:
        async with sessions() as session, session.begin():
            ids = list(
                (
                    await session.execute(
                        select(Amphora.id).where(Amphora.status == DELETED, _age(Amphora) < cutoff).limit(BATCH)
                    )
                ).scalars()
            )
            if not ids:
                return purged
            await _drop_amphorae(session, ids)
        purged += len(ids)


async def purge_records(sessions: async_sessionmaker[AsyncSession], cutoff: dt.datetime) -> tuple[int, int]:
    """Delete completed commands and the flow records of commands that no longer run, older than ``cutoff``.

    Returns (commands, flows). A flow record stays while its command may still be delivered (its outbox
    row exists and is not completed): the worker resumes or reverts the flow from it.
    """
    async with sessions() as session, session.begin():
        running = exists().where(ProviderCommand.id == FlowProgress.command_id, ProviderCommand.completed_at.is_(None))
        flows = await session.execute(delete(FlowProgress).where(FlowProgress.updated_at < cutoff, ~running))
    async with sessions() as session, session.begin():
        done = await session.execute(delete(ProviderCommand).where(ProviderCommand.completed_at < cutoff))
    return rowcount(done), rowcount(flows)


async def purge_gone_objects(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """Delete health rows of gone amphorae and statistics of gone listeners; returns the counts."""
    async with sessions() as session, session.begin():
        live = exists().where(Amphora.id == AmphoraHealth.amphora_id, Amphora.status != DELETED)
        health = await session.execute(delete(AmphoraHealth).where(~live))
    async with sessions() as session, session.begin():
        listener = exists().where(Listener.id == ListenerStatistics.listener_id)
        stats = await session.execute(
            delete(ListenerStatistics).where(ListenerStatistics.updated_at.is_not(None), ~listener)
        )
    return rowcount(health), rowcount(stats)


async def release_orphaned_vips(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Give back VIP addresses whose load balancer is gone or ``DELETED``; returns how many.

    The API allocates an address in the transaction that creates its load balancer, so an allocation is
    never seen before its load balancer; one left behind (a bug, a restored database) would hold its
    address for ever.
    """
    async with sessions() as session, session.begin():
        live = exists().where(
            LoadBalancer.id == VipAllocation.load_balancer_id, LoadBalancer.provisioning_status != DELETED
        )
        released = await session.execute(delete(VipAllocation).where(~live))
    return rowcount(released)
