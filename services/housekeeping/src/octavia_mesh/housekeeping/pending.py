"""Nothing stays in ``PENDING_*``: a change that made no progress for too long is re-driven or given up.

Octavia's objects stay ``PENDING_*`` for ever when a worker dies mid-flow without a jobboard or a message is
lost, and operators fix them by hand in the database. Here the outbox, JetStream and durable flows already
make that rare; this is the last resort. For every load balancer that shows ``PENDING_*`` (itself or one
of its children) with no sign of progress for ``timeout`` — no object changed, no command queued, no flow
step stored — housekeeping, under the load balancer's row lock:

* **re-drives** the change when no command for it is left (lost, deleted, or completed while objects were
  still pending): it queues the command that finishes it — create, delete (cascading), or an update of the
  whole load balancer, which re-applies its configuration and settles every pending child;
* **gives up** when commands are outstanding but nobody applied them (no worker for the provider, a worker
  paused or stuck): the commands are marked completed, so a worker that comes back skips them, and the
  objects are left as a failed flow leaves them (``lifecycle.transitions.give_up``, which is ``fail``: a
  load balancer that was being created or deleted goes to ``ERROR`` and can then be deleted, as in Octavia;
  one whose child change failed goes back to ``ACTIVE`` so the child can be fixed or deleted; one whose own
  update failed goes to ``ERROR``, and a failover re-applies its configuration).

Certificate rotations and orphan sweeps are not changes and are ignored here.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common import commands
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import (
    FlowProgress,
    HealthMonitor,
    L7Policy,
    L7Rule,
    Listener,
    LoadBalancer,
    Member,
    Pool,
    ProviderCommand,
)
from octavia_mesh.common.lifecycle import PENDING, Provisioning, is_pending
from octavia_mesh.common.lifecycle.transitions import give_up
from octavia_mesh.common.lifecycle.tree import Tree
from octavia_mesh.protos.provider.v1 import commands_pb2

logger = logging.getLogger(__name__)

#: Commands that change no load balancer (sent by housekeeping itself).
MAINTENANCE = frozenset({Op.OPERATION_ROTATE_CERTIFICATE, Op.OPERATION_REAP_ORPHANS})


@dataclass
class Recovery:
    """What one scan did: load balancers whose change was re-driven (with the operation), or given up."""

    redriven: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def _when(obj: Any) -> dt.datetime:
    return obj.updated_at or obj.created_at


async def _stuck_candidates(session: AsyncSession) -> set[str]:
    """Load balancers that show PENDING_* themselves or through a child."""
    queries = [
        select(LoadBalancer.id).where(LoadBalancer.provisioning_status.in_(PENDING)),
        select(Listener.load_balancer_id).where(Listener.provisioning_status.in_(PENDING)),
        select(Pool.load_balancer_id).where(Pool.provisioning_status.in_(PENDING)),
        select(Pool.load_balancer_id)
        .join(Member, Member.pool_id == Pool.id)
        .where(Member.provisioning_status.in_(PENDING)),
        select(Pool.load_balancer_id)
        .join(HealthMonitor, HealthMonitor.pool_id == Pool.id)
        .where(HealthMonitor.provisioning_status.in_(PENDING)),
        select(Listener.load_balancer_id)
        .join(L7Policy, L7Policy.listener_id == Listener.id)
        .where(L7Policy.provisioning_status.in_(PENDING)),
        select(Listener.load_balancer_id)
        .join(L7Policy, L7Policy.listener_id == Listener.id)
        .join(L7Rule, L7Rule.l7policy_id == L7Policy.id)
        .where(L7Rule.provisioning_status.in_(PENDING)),
    ]
    found: set[str] = set()
    for query in queries:
        found.update((await session.execute(query)).scalars())
    return found


def _is_change(row: ProviderCommand) -> bool:
    try:
        return commands_pb2.ProviderCommand.FromString(row.payload).operation not in MAINTENANCE
    except Exception:  # an unreadable payload is no change anyone can apply
        return False


def _redrive_operation(lb: LoadBalancer) -> int:
    if lb.provisioning_status == Provisioning.PENDING_CREATE:
        return Op.OPERATION_CREATE
    if lb.provisioning_status == Provisioning.PENDING_DELETE:
        return Op.OPERATION_DELETE
    return Op.OPERATION_UPDATE


async def _recover(session: AsyncSession, lb_id: str, cutoff: dt.datetime, now: dt.datetime) -> tuple[str, str] | None:
    """Re-drive or give up one load balancer's change if it is stuck; what was done, or None."""
    tree = await Tree.load(session, lb_id)  # locks the load balancer's row: the worker's settle takes it too
    if tree is None:
        return None
    lb = tree.lb
    pending = [o for o in (lb, *tree.children()) if is_pending(o.provisioning_status)]
    if not pending:
        return None  # settled meanwhile
    outstanding = [
        row
        for row in (
            await session.execute(
                select(ProviderCommand).where(
                    ProviderCommand.load_balancer_id == lb_id, ProviderCommand.completed_at.is_(None)
                )
            )
        ).scalars()
        if _is_change(row)
    ]
    last = max(_when(o) for o in pending)
    if outstanding:
        last = max(last, *(row.created_at for row in outstanding))
        step = (
            await session.execute(
                select(func.max(FlowProgress.updated_at)).where(
                    FlowProgress.command_id.in_([row.id for row in outstanding])
                )
            )
        ).scalar_one_or_none()
        if step is not None:
            last = max(last, step)
    if last >= cutoff:
        return None
    if not outstanding:
        operation = _redrive_operation(lb)
        commands.new_command(
            session,
            lb.provider,
            Kind.RESOURCE_KIND_LOAD_BALANCER,
            operation,
            lb_id,
            lb_id,
            cascade=operation == Op.OPERATION_DELETE,
        )
        name = Op.Name(operation).removeprefix("OPERATION_").lower()
        logger.warning("load balancer %s: PENDING_* since %s with no command left; re-driving (%s)", lb_id, last, name)
        return "redriven", name
    await give_up(session, lb_id, [row.id for row in outstanding], now)
    logger.warning(
        "load balancer %s: PENDING_* since %s and %d command(s) never applied; giving up (objects in ERROR)",
        lb_id,
        last,
        len(outstanding),
    )
    return "failed", ""


async def recover_pending(sessions: async_sessionmaker[AsyncSession], timeout_s: float, now: dt.datetime) -> Recovery:
    """Re-drive or give up every change stuck in PENDING_* for over ``timeout_s`` (see the module docstring)."""
    cutoff = now - dt.timedelta(seconds=timeout_s)
    async with sessions() as session:
        candidates = await _stuck_candidates(session)
    recovery = Recovery()
    for lb_id in sorted(candidates):
        async with sessions() as session, session.begin():
            done = await _recover(session, lb_id, cutoff, now)
        if done is None:
            continue
        if done[0] == "redriven":
            recovery.redriven[lb_id] = done[1]
        else:
            recovery.failed.append(lb_id)
    return recovery
