"""A provider command takes effect once, however often JetStream delivers it."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common import commands
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import LoadBalancer, ProviderCommand, Quota
from octavia_mesh.protos.provider.v1 import commands_pb2
from octavia_mesh.worker.consumer import CommandConsumer
from octavia_mesh.worker.providers.noop import NoopProvider


async def test_redelivered_command_applies_once(engine: AsyncEngine) -> None:
    _, write = session_factories(engine)
    lb_id, project = str(uuid.uuid4()), f"p-{uuid.uuid4().hex[:8]}"
    async with write() as session, session.begin():
        session.add(Quota(project_id=project, in_use_load_balancer=1))
        session.add(
            LoadBalancer(
                id=lb_id,
                project_id=project,
                provider="noop",
                provisioning_status="PENDING_DELETE",
                operating_status="ONLINE",
            )
        )
        row = commands.new_command(session, "noop", Kind.RESOURCE_KIND_LOAD_BALANCER, Op.OPERATION_DELETE, lb_id, lb_id)
    command = commands_pb2.ProviderCommand.FromString(row.payload)
    consumer = CommandConsumer(js=None, sessions=write, provider=NoopProvider(write))  # type: ignore[arg-type]

    assert await consumer.apply(command) is True
    assert await consumer.apply(command) is False  # the redelivery is a no-op

    async with write() as session:
        lb = await session.get(LoadBalancer, lb_id)
        quota = await session.get(Quota, project)
        done = (
            await session.execute(select(ProviderCommand.completed_at).where(ProviderCommand.id == command.command_id))
        ).scalar_one()
    assert lb is not None and lb.provisioning_status == "DELETED"
    assert quota is not None and quota.in_use_load_balancer == 0  # released once, not twice
    assert done is not None


def test_subject_names_provider_kind_and_operation() -> None:
    assert (
        commands.subject("noop", Kind.RESOURCE_KIND_L7_RULE, Op.OPERATION_BATCH_UPDATE)
        == "octavia.provider.v1.noop.l7_rule.batch_update"
    )
