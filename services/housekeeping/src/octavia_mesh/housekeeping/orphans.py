"""Orphans: what no live object accounts for any more.

Housekeeping itself gives back VIP allocations whose load balancer is gone (``purge.release_orphaned_vips``),
and asks the worker of each amphora provider, with ``OPERATION_REAP_ORPHANS``, to delete amphora instances
with no live amphora row (running agents and leftover directories) and to retire amphorae whose load
balancer is deleted: only the worker's compute driver sees instances. One sweep per provider is outstanding
at a time, so sweeps do not pile up while no worker takes them.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common import commands
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import ProviderCommand

logger = logging.getLogger(__name__)


async def queue_reaps(sessions: async_sessionmaker[AsyncSession], providers: tuple[str, ...]) -> list[str]:
    """Queue an orphan sweep for every provider that has none outstanding; the providers queued for."""
    queued = []
    for provider in providers:
        subject = commands.subject(provider, Kind.RESOURCE_KIND_AMPHORA, Op.OPERATION_REAP_ORPHANS)
        async with sessions() as session, session.begin():
            waiting = await session.execute(
                select(ProviderCommand.id)
                .where(ProviderCommand.subject == subject, ProviderCommand.completed_at.is_(None))
                .limit(1)
            )
            if waiting.first() is not None:
                continue
            commands.new_command(session, provider, Kind.RESOURCE_KIND_AMPHORA, Op.OPERATION_REAP_ORPHANS, "", "")
        queued.append(provider)
    return queued
