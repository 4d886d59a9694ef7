"""The noop provider: like Octavia's no-op drivers, it completes every change at once, with no data plane, and
leaves operating statuses as those drivers do (load balancers, listeners and pools OFFLINE; see ``settle``)."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common.capabilities import ACTIVE_STANDBY, SINGLE, Capabilities, Facts
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import Amphora, utcnow
from octavia_mesh.common.lifecycle import AmphoraStatus
from octavia_mesh.common.lifecycle.transitions import complete_commands, settle
from octavia_mesh.protos.provider.v1 import commands_pb2


class NoopProvider:
    """Applies a command by settling its load balancer (and, for an amphora delete, retiring the amphora)."""

    name = "noop"

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    #: Like Octavia's no-op drivers: no network (a VIP is the address asked for, or TEST-NET-2's), any TLS
    #: reference taken (octavia-tempest-plugin's noop jobs create TLS listeners with made-up references), every
    #: protocol accepted, and Octavia's amphora driver's flavor and zone keys, so that flavors written for it
    #: work unchanged.
    FACTS = Facts(vip_from_network=False, checks_certificates=False)

    def facts(self) -> Facts:
        return self.FACTS

    def capabilities(self) -> Capabilities:
        """Like Octavia's no-op driver, it accepts any topology (and builds nothing)."""
        return Capabilities(frozenset({SINGLE, ACTIVE_STANDBY}))

    async def apply(self, command: commands_pb2.ProviderCommand) -> bool:
        """Settle and stamp the command completed in one transaction (one write, where a flow takes several)."""
        async with self._sessions() as session, session.begin():
            if command.kind == Kind.RESOURCE_KIND_AMPHORA and command.operation == Op.OPERATION_DELETE:
                await session.execute(
                    update(Amphora)
                    .where(Amphora.id == command.resource_id)
                    .values(status=AmphoraStatus.DELETED, updated_at=utcnow())
                )
            if command.load_balancer_id:
                await settle(session, command.load_balancer_id, noop=True)
                await complete_commands(session, command.load_balancer_id, [command.command_id], utcnow())
                return True
        return False
