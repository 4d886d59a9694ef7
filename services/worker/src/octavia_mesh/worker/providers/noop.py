"""The noop provider: like Octavia's no-op driver, it completes every change at once, with no data plane."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.protos.provider.v1 import commands_pb2
from octavia_mesh.worker.settle import settle


class NoopProvider:
    """Applies a command by settling its load balancer."""

    name = "noop"

    async def apply(self, session: AsyncSession, command: commands_pb2.ProviderCommand) -> None:
        await settle(session, command.load_balancer_id, cascade=command.cascade)
