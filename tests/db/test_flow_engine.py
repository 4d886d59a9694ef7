"""The flow engine resumes after a crash and reverts what completed, on every database."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.worker.flows.engine import Flow, FlowContext, FlowEngine, FlowFailed


class Recorder:
    def __init__(self, name: str, log: list[str], fail: bool = False, crash: bool = False) -> None:
        self.name, self.log, self.fail, self.crash = name, log, fail, crash

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        self.log.append(f"do {self.name}")
        if self.crash:
            raise KeyboardInterrupt  # stands for the worker dying mid-task: nothing after runs
        if self.fail:
            raise RuntimeError(f"{self.name} broke")
        return {self.name: len(self.log)}

    async def revert(self, ctx: FlowContext) -> None:
        self.log.append(f"undo {self.name}")


def _ctx() -> FlowContext:
    return FlowContext(command_id=str(uuid.uuid4()), load_balancer_id="lb", resource_id="lb")


async def test_runs_in_order_and_only_once(engine: AsyncEngine) -> None:
    _, write = session_factories(engine)
    log: list[str] = []
    flow = Flow("demo", [Recorder("a", log), Recorder("b", log)])
    ctx = _ctx()
    await FlowEngine(write).run(flow, ctx)
    assert log == ["do a", "do b"] and ctx.store == {"a": 1, "b": 2}
    await FlowEngine(write).run(flow, _replay(ctx))  # redelivered after completion: nothing runs again
    assert log == ["do a", "do b"]


def _replay(ctx: FlowContext) -> FlowContext:
    return FlowContext(command_id=ctx.command_id, load_balancer_id=ctx.load_balancer_id, resource_id=ctx.resource_id)


async def test_resumes_after_a_crash(engine: AsyncEngine) -> None:
    _, write = session_factories(engine)
    log: list[str] = []
    ctx = _ctx()
    crashing = Flow("demo", [Recorder("a", log), Recorder("b", log, crash=True), Recorder("c", log)])
    with pytest.raises(KeyboardInterrupt):
        await FlowEngine(write).run(crashing, ctx)
    healthy = Flow("demo", [Recorder("a", log), Recorder("b", log), Recorder("c", log)])
    resumed = _replay(ctx)
    await FlowEngine(write).run(healthy, resumed)  # a new worker picks the command up again
    assert log == ["do a", "do b", "do b", "do c"]  # a is not repeated; b, in flight at the crash, is
    assert resumed.store["a"] == 1  # what a produced before the crash is there for later tasks


async def test_failure_reverts_completed_tasks_in_reverse(engine: AsyncEngine) -> None:
    _, write = session_factories(engine)
    log: list[str] = []
    ctx = _ctx()
    flow = Flow("demo", [Recorder("a", log), Recorder("b", log), Recorder("c", log, fail=True), Recorder("d", log)])
    with pytest.raises(FlowFailed):
        await FlowEngine(write).run(flow, ctx)
    assert log == ["do a", "do b", "do c", "undo c", "undo b", "undo a"]
    with pytest.raises(FlowFailed):  # redelivered: it stays reverted and does not run again
        await FlowEngine(write).run(flow, _replay(ctx))
    assert log[-1] == "undo a"


class Effect(Recorder):
    """A task whose effect can vanish while the worker is down (an instance that stopped with the machine)."""

    def __init__(self, name: str, log: list[str], world: set[str]) -> None:
        super().__init__(name, log)
        self.world = world

    async def execute(self, ctx: FlowContext) -> dict[str, Any]:
        self.world.add(self.name)
        return await super().execute(ctx)

    async def holds(self, ctx: FlowContext) -> bool:
        return self.name in self.world


async def test_a_resumed_flow_redoes_what_the_crash_took_away(engine: AsyncEngine) -> None:
    _, write = session_factories(engine)
    log: list[str] = []
    world: set[str] = set()
    ctx = _ctx()
    crashing = Flow("demo", [Recorder("a", log), Effect("boot", log, world), Recorder("c", log, crash=True)])
    with pytest.raises(KeyboardInterrupt):
        await FlowEngine(write).run(crashing, ctx)
    world.clear()  # the restart stopped the instance the flow had booted
    healthy = Flow("demo", [Recorder("a", log), Effect("boot", log, world), Recorder("c", log)])
    await FlowEngine(write).run(healthy, _replay(ctx))
    assert log == ["do a", "do boot", "do c", "do boot", "do c"]  # boot again, not wait for what is gone
    assert world == {"boot"}
    log.clear()
    ctx2 = _ctx()
    with pytest.raises(KeyboardInterrupt):
        await FlowEngine(write).run(crashing, ctx2)
    await FlowEngine(write).run(healthy, _replay(ctx2))  # the effect is still there: nothing is redone
    assert log == ["do a", "do boot", "do c", "do c"]
