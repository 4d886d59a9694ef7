"""Taking a spare amphora from the pool, on every database: one flow per spare, and a task run again after a
crash finds the spare it took instead of taking a second one (flows/spares.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import Amphora, LoadBalancer, utcnow
from octavia_mesh.worker.drivers.compute import Instance
from octavia_mesh.worker.flows.engine import FlowContext
from octavia_mesh.worker.flows.spares import READY, TakeSpare, spare_flag
from octavia_mesh.worker.providers.amphora import AmphoraDeps


class Compute:
    """Instances that run, or not (a spare that died)."""

    def __init__(self, dead: set[str]) -> None:
        self.dead = dead

    async def get_instance(self, compute_id: str) -> Instance | None:
        return None if compute_id in self.dead else Instance(compute_id, "127.0.0.1:1")


async def test_each_spare_goes_to_one_flow_and_a_rerun_finds_its_own(engine: AsyncEngine) -> None:
    _, write = session_factories(engine)
    async with engine.begin() as conn:
        for table in ("provider_command", "amphora_health", "amphora", "load_balancer"):
            await conn.execute(text(f"DELETE FROM {table}"))
    lbs = [str(uuid.uuid4()) for _ in range(3)]
    spares = [str(uuid.uuid4()) for _ in range(3)]
    async with write() as session, session.begin():
        for lb_id in lbs:
            session.add(
                LoadBalancer(
                    id=lb_id,
                    project_id="p",
                    provider="amphora",
                    provisioning_status="PENDING_CREATE",
                    operating_status="OFFLINE",
                )
            )
        for i, amphora_id in enumerate(spares):
            session.add(Amphora(id=amphora_id, status=READY, cert_serial=f"{i:x}", created_at=utcnow()))
    dead = spares[0]  # the oldest spare's agent died: skipped
    deps = AmphoraDeps(write, Compute({dead}), None, None, None, max_connections=1)  # type: ignore[arg-type]

    def ctx(lb_id: str, command: str) -> FlowContext:
        return FlowContext(command_id=command, load_balancer_id=lb_id, resource_id=lb_id)

    commands = [str(uuid.uuid4()) for _ in lbs]
    first = await TakeSpare(deps).execute(ctx(lbs[0], commands[0]))
    assert first == {"amphora_id": spares[1], spare_flag("amphora_id"): True}
    again = await TakeSpare(deps).execute(ctx(lbs[0], commands[0]))  # the engine never saved the first result
    assert again == first, "a rerun finds the spare it took"
    second = await TakeSpare(deps).execute(ctx(lbs[1], commands[1]))
    assert second["amphora_id"] == spares[2]
    assert await TakeSpare(deps).execute(ctx(lbs[2], commands[2])) == {}, "none left: the flow boots one"

    read, _ = session_factories(engine)
    async with read() as session:
        rows = {r.id: r for r in (await session.execute(select(Amphora))).scalars()}
    assert (rows[spares[1]].load_balancer_id, rows[spares[1]].status) == (lbs[0], "ALLOCATED")
    assert (rows[spares[2]].load_balancer_id, rows[spares[2]].status) == (lbs[1], "ALLOCATED")
    assert rows[spares[1]].cert_serial == "1", "the identity the health service checks is the spare's own"
    assert (rows[dead].load_balancer_id, rows[dead].status) == (None, READY)
