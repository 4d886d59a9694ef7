"""Orphaned amphorae: instances no amphora row accounts for, and amphorae whose load balancer is gone.

Housekeeping queues ``OPERATION_REAP_ORPHANS`` now and then; only the worker can do it, as only its compute
driver sees the instances. An orphan is

* an instance (a running agent, or a directory left behind) whose amphora row is missing or ``DELETED``,
  for instance after a worker died between booting and recording, or after a database restore;
* an amphora row that is not ``DELETED`` while its load balancer is: its instance is deleted and the row
  marked ``DELETED`` (housekeeping purges it after its expiry).

Instances are listed *before* the rows are read, and a row always exists before its instance is created,
so an amphora being created right now is never taken for an orphan. Amphorae without a load balancer
(spares) and those of other providers are left alone.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update

from octavia_mesh.common.db.models import Amphora, LoadBalancer, utcnow
from octavia_mesh.common.lifecycle import AmphoraStatus, Provisioning
from octavia_mesh.worker.deps import AmphoraDeps
from octavia_mesh.worker.flows.engine import Flow, FlowContext

logger = logging.getLogger(__name__)


class ReapOrphans:
    """Deletes orphaned instances and retires amphorae whose load balancer is gone."""

    name = "reap-orphans"

    def __init__(self, deps: AmphoraDeps, provider: str = "amphora") -> None:
        self.deps, self.provider = deps, provider

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        instances = await self.deps.compute.list_instances()  # first: see the module docstring
        async with self.deps.sessions() as session:
            rows = (
                await session.execute(
                    select(
                        Amphora.id,
                        Amphora.compute_id,
                        Amphora.status,
                        Amphora.load_balancer_id,
                        LoadBalancer.provisioning_status,
                        LoadBalancer.provider,
                    ).outerjoin(LoadBalancer, LoadBalancer.id == Amphora.load_balancer_id)
                )
            ).all()
        live: set[str] = set()
        homeless = []
        for amphora_id, compute_id, status, lb_id, lb_status, provider in rows:
            if status == AmphoraStatus.DELETED:
                continue
            if lb_id is not None and lb_status == Provisioning.DELETED and provider == self.provider:
                homeless.append((amphora_id, compute_id or amphora_id))
            else:
                live.update((amphora_id, compute_id or amphora_id))
        retiring = {compute_id for _, compute_id in homeless}
        removed = [compute_id for compute_id in instances if compute_id not in live and compute_id not in retiring]
        for compute_id in removed:
            logger.warning("deleting instance %s: no live amphora accounts for it", compute_id)
            await self.deps.compute.delete_instance(compute_id)
        for amphora_id, compute_id in homeless:
            logger.warning("retiring amphora %s: its load balancer is deleted", amphora_id)
            await self.deps.compute.delete_instance(compute_id)
            async with self.deps.sessions() as session, session.begin():
                await session.execute(
                    update(Amphora)
                    .where(Amphora.id == amphora_id, Amphora.status != AmphoraStatus.DELETED)
                    .values(status=AmphoraStatus.DELETED, updated_at=utcnow())
                )
        return {"deleted_instances": removed, "retired_amphorae": [a for a, _ in homeless]}

    async def revert(self, ctx: FlowContext) -> None:
        return None


def reap_flow(deps: AmphoraDeps) -> Flow:
    return Flow("reap-orphans", [ReapOrphans(deps)])
