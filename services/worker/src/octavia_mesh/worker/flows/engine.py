"""A small flow engine whose progress survives the worker.

Why not TaskFlow: Octavia's engine keeps progress durable only with a
jobboard (Redis or ZooKeeper, off by default), which is exactly why a worker
crash leaves Octavia objects stuck in PENDING_*. Our commands already live in
JetStream until acknowledged, so all a flow needs is its position: this engine
stores, in the same database as the objects, how many tasks of a command's
flow have completed and what they produced. A redelivered command resumes
after the last completed task (every task is idempotent, so re-running the one
that was in flight is safe), and a failed task reverts the completed ones in
reverse order, also durably.

A resumed flow does not trust what it did before the crash: the world may have
changed meanwhile (an amphora's instance stopped with the machine, a VIP
unplugged). Before it goes on, it asks each completed task that can tell
(``holds``) whether its effect is still there, and resumes from the first one
whose effect is gone, so that a create the API accepted is rebuilt rather than
failed for what a restart took away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common.db.engine import rowcount
from octavia_mesh.common.db.models import FlowProgress, utcnow
from octavia_mesh.common.observability import tracing
from octavia_mesh.worker import metrics

logger = logging.getLogger(__name__)
_tracer = tracing.tracer(__name__)

RUNNING, REVERTING, DONE, REVERTED = "RUNNING", "REVERTING", "DONE", "REVERTED"


@dataclass(slots=True)
class FlowContext:
    """What tasks share: the command's identifiers and the values earlier tasks produced."""

    command_id: str
    load_balancer_id: str
    resource_id: str
    store: dict[str, Any] = field(default_factory=dict)


class Task(Protocol):
    """One idempotent step: ``execute`` may run again after a crash; ``revert`` undoes it (also idempotent)."""

    name: str

    async def execute(self, ctx: FlowContext) -> dict[str, Any] | None:
        """Do the step; the returned values are merged into ``ctx.store`` and persisted."""
        ...

    async def revert(self, ctx: FlowContext) -> None:
        """Undo the step as far as it got."""
        ...


async def _holds(task: Task, ctx: FlowContext) -> bool:
    """Whether a completed task's effect is still there (tasks may define ``holds``; without it: yes)."""
    check = getattr(task, "holds", None)
    return True if check is None else bool(await check(ctx))


class FlowFailed(Exception):
    """A task failed and the flow was reverted; ``__cause__`` is the task's error."""


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    tasks: Sequence[Task]


class FlowEngine:
    """Runs flows, persisting progress after every task in ``flow_progress``."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def run(self, flow: Flow, ctx: FlowContext) -> None:
        """Run (or resume) ``flow`` for ``ctx.command_id``; on failure revert it and raise :class:`FlowFailed`."""
        with _tracer.start_as_current_span(f"flow {flow.name}", attributes={"octavia.command_id": ctx.command_id}):
            await self._run(flow, ctx)

    async def _run(self, flow: Flow, ctx: FlowContext) -> None:
        progress = await self._load(flow, ctx)
        if progress.state == DONE:
            return
        ctx.store.update(progress.store)
        if progress.state == REVERTING:  # the worker died while reverting: finish the job
            await self._revert(flow, ctx, progress.done_steps)
            raise FlowFailed(f"{flow.name} was reverted after a restart")
        if progress.state == REVERTED:
            raise FlowFailed(f"{flow.name} was reverted before")
        done = progress.done_steps
        for index in range(done):  # resumed: re-check the world before going on
            if not await _holds(flow.tasks[index], ctx):
                logger.warning(
                    "%s %s resumed: the effect of %s is gone; going on from there",
                    flow.name,
                    ctx.command_id,
                    flow.tasks[index].name,
                )
                done = index
                await self._save(ctx, state=RUNNING, done_steps=done)
                break
        began, timings = time.monotonic(), []
        for index in range(done, len(flow.tasks)):
            task = flow.tasks[index]
            step = time.monotonic()
            try:
                with _tracer.start_as_current_span(f"task {task.name}"):
                    produced = await task.execute(ctx)
            except Exception as exc:
                metrics.TASK_SECONDS.labels(flow.name, task.name, "failure").observe(time.monotonic() - step)
                logger.warning("%s: %s failed (%s); reverting", flow.name, task.name, exc)
                await self._save(ctx, state=REVERTING, done_steps=index + 1)
                await self._revert(flow, ctx, index + 1)
                metrics.FLOWS.labels(flow.name, "reverted").inc()
                metrics.FLOW_SECONDS.labels(flow.name, "reverted").observe(time.monotonic() - began)
                raise FlowFailed(f"{flow.name}: {task.name} failed: {exc}") from exc
            metrics.TASK_SECONDS.labels(flow.name, task.name, "success").observe(time.monotonic() - step)
            if produced:
                ctx.store.update(produced)
            await self._save(ctx, state=RUNNING if index + 1 < len(flow.tasks) else DONE, done_steps=index + 1)
            timings.append(f"{task.name} {time.monotonic() - step:.3f}")
        metrics.FLOWS.labels(flow.name, "success").inc()
        metrics.FLOW_SECONDS.labels(flow.name, "success").observe(time.monotonic() - began)
        # Where a flow's time goes (a create or a failover is meant to take a fraction of a second).
        logger.info("%s %s done in %.3fs: %s", flow.name, ctx.command_id, time.monotonic() - began, ", ".join(timings))

    async def _revert(self, flow: Flow, ctx: FlowContext, upto: int) -> None:
        for index in range(upto - 1, -1, -1):
            task = flow.tasks[index]
            try:
                await task.revert(ctx)
            except Exception:  # a revert must not stop the others; the object ends in ERROR either way
                logger.exception("%s: revert of %s failed", flow.name, task.name)
            await self._save(ctx, state=REVERTING if index else REVERTED, done_steps=index)

    async def _load(self, flow: Flow, ctx: FlowContext) -> FlowProgress:
        async with self._sessions() as session, session.begin():
            row = await session.get(FlowProgress, ctx.command_id)
            if row is None:
                row = FlowProgress(
                    command_id=ctx.command_id,
                    flow=flow.name,
                    state=RUNNING,
                    done_steps=0,
                    store={},
                    updated_at=utcnow(),
                )
                session.add(row)
            return FlowProgress(
                command_id=row.command_id,
                flow=row.flow,
                state=row.state,
                done_steps=row.done_steps,
                store=dict(row.store or {}),
            )

    async def _save(self, ctx: FlowContext, *, state: str, done_steps: int) -> None:
        # One UPDATE, not a read then a write: it runs after every task of every flow, and on a busy machine
        # each round trip to the database is what a create's time is made of.
        async with self._sessions() as session, session.begin():
            saved = await session.execute(
                update(FlowProgress)
                .where(FlowProgress.command_id == ctx.command_id)
                .values(state=state, done_steps=done_steps, store=dict(ctx.store), updated_at=utcnow())
            )
            assert rowcount(saved) == 1, f"no progress row for {ctx.command_id}"
