"""Certificate rotation, as Octavia's housekeeping does it: find amphorae whose certificate expires soon and
have them rotated before it does.

Housekeeping holds no CA and talks to no agent: it marks each due amphora ``cert_busy`` and queues
``OPERATION_ROTATE_CERTIFICATE`` in the same transaction; the worker issues the certificate, has the agent
present it, records the new ``cert_serial`` and ``cert_expiration`` and clears ``cert_busy``
(``services/worker/.../flows/rotation.py``). The claim is a conditional update, so two housekeeping
replicas never queue the same rotation twice. A ``cert_busy`` flag with no rotation command outstanding is
stale (the command was lost) and is claimed again; the claim then also checks ``updated_at``, which it
moves, so it still happens once.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common import commands
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.engine import rowcount
from octavia_mesh.common.db.models import Amphora, LoadBalancer, ProviderCommand
from octavia_mesh.common.lifecycle import AmphoraStatus, Provisioning
from octavia_mesh.protos.provider.v1 import commands_pb2

logger = logging.getLogger(__name__)


async def outstanding_resources(session: AsyncSession, providers: tuple[str, ...], operation: int) -> set[str]:
    """Resource ids of the ``operation`` commands (of amphorae) not completed yet."""
    subjects = [commands.subject(p, Kind.RESOURCE_KIND_AMPHORA, operation) for p in providers]
    payloads = (
        await session.execute(
            select(ProviderCommand.payload).where(
                ProviderCommand.subject.in_(subjects), ProviderCommand.completed_at.is_(None)
            )
        )
    ).scalars()
    return {commands_pb2.ProviderCommand.FromString(p).resource_id for p in payloads}


async def queue_rotations(
    sessions: async_sessionmaker[AsyncSession], providers: tuple[str, ...], buffer_s: float, now: dt.datetime
) -> list[str]:
    """Queue a rotation for every allocated amphora whose certificate expires within ``buffer_s``; their ids."""
    due_before = now + dt.timedelta(seconds=buffer_s)
    async with sessions() as session:
        due = (
            await session.execute(
                select(
                    Amphora.id, Amphora.load_balancer_id, Amphora.cert_busy, Amphora.updated_at, LoadBalancer.provider
                )
                .join(LoadBalancer, LoadBalancer.id == Amphora.load_balancer_id)
                .where(
                    Amphora.status == AmphoraStatus.ALLOCATED,
                    Amphora.cert_expiration.is_not(None),
                    Amphora.cert_expiration < due_before,
                    LoadBalancer.provider.in_(providers),
                    LoadBalancer.provisioning_status != Provisioning.DELETED,  # its amphorae are the orphan sweep's
                )
            )
        ).all()
        in_flight = await outstanding_resources(session, providers, Op.OPERATION_ROTATE_CERTIFICATE) if due else set()
    queued = []
    for amphora_id, lb_id, busy, updated_at, provider in due:
        if amphora_id in in_flight or lb_id is None:  # (joined on its load balancer: never without one)
            continue
        claim = update(Amphora).where(
            Amphora.id == amphora_id, Amphora.status == AmphoraStatus.ALLOCATED, Amphora.cert_busy == busy
        )
        if busy:  # stale: see the module docstring
            claim = claim.where(Amphora.updated_at == updated_at if updated_at else Amphora.updated_at.is_(None))
        async with sessions() as session, session.begin():
            claimed = await session.execute(claim.values(cert_busy=True, updated_at=now))
            if rowcount(claimed) != 1:
                continue
            commands.new_command(
                session, provider, Kind.RESOURCE_KIND_AMPHORA, Op.OPERATION_ROTATE_CERTIFICATE, amphora_id, lb_id
            )
        queued.append(amphora_id)
    if queued:
        logger.info("queued certificate rotations for %d amphorae: %s", len(queued), queued)
    return queued
