"""After a restart of the whole mesh, amphorae that no longer run are rebuilt.

``octavia-mesh up`` stops the local amphorae when it stops, like powering off the hypervisor; the database
still says their load balancers are ACTIVE. On start, the worker finds every ALLOCATED amphora without a
running instance and queues a failover of its load balancer (the outbox row is published by the outbox
relay like any other command), so load balancers come back serving, with the same VIP and configuration,
without anyone asking. The health service's failover detector does the same for amphorae that die while
the mesh runs; both claim the load balancer by the same rule (``lifecycle.transitions.claim_for_failover``:
from ACTIVE or ERROR, as Octavia's health manager).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common import commands
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import Amphora, LoadBalancer
from octavia_mesh.common.lifecycle import AmphoraStatus
from octavia_mesh.common.lifecycle.transitions import claim_for_failover
from octavia_mesh.worker.drivers.compute import ComputeDriver

logger = logging.getLogger(__name__)


async def rebuild_lost_amphorae(
    sessions: async_sessionmaker[AsyncSession], compute: ComputeDriver, provider: str = "amphora"
) -> list[str]:
    """Queue a failover for every load balancer with an allocated amphora that is not running; returns their ids."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Amphora.id, Amphora.compute_id, Amphora.load_balancer_id)
                .join(LoadBalancer, LoadBalancer.id == Amphora.load_balancer_id)
                .where(Amphora.status == AmphoraStatus.ALLOCATED, LoadBalancer.provider == provider)
            )
        ).all()
    lost = sorted(
        {
            lb_id
            for amphora_id, compute_id, lb_id in rows
            if lb_id is not None and await compute.get_instance(compute_id or amphora_id) is None
        }
    )
    queued = []
    for lb_id in lost:
        async with sessions() as session, session.begin():
            # A pending load balancer is already being changed, and its flow settles it.
            if await claim_for_failover(session, lb_id):
                commands.new_command(
                    session, provider, Kind.RESOURCE_KIND_LOAD_BALANCER, Op.OPERATION_FAILOVER, lb_id, lb_id
                )
                queued.append(lb_id)
    if queued:
        logger.warning("rebuilding the amphorae of %d load balancers that lost them: %s", len(queued), queued)
    return queued
