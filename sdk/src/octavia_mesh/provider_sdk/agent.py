"""What a provider agent is given when the driver agent starts it.

A provider agent is an ``async`` callable registered under the entry-point
group :data:`ENTRY_POINT_GROUP`; the driver agent runs each in a child process
of its own and calls it with a :class:`ProviderAgentContext`. The callable runs
until it is cancelled (the driver agent stopping), typically consuming its
provider's commands with :func:`octavia_mesh.provider_sdk.consume`::

    [project.entry-points."octavia_mesh.provider_agents"]
    acme = "acme_driver.agent:run"

    async def run(context: ProviderAgentContext) -> None:
        async with DriverLibrary(context.driver_agent_address, provider=context.name) as lib:
            await consume(context.nats_url, context.name, lambda command: apply(lib, command))
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

#: The entry-point group provider agents register under (Octavia: ``octavia.driver_agent.provider_agents``).
ENTRY_POINT_GROUP = "octavia_mesh.provider_agents"
#: Prefix of the variables the driver agent hands its provider agents.
ENV_PREFIX = "OCTAVIA_MESH_PROVIDER_AGENT_"


@dataclass(frozen=True, slots=True)
class ProviderAgentContext:
    """Where a provider agent reports to and takes its commands from."""

    #: The entry point's name; by convention the provider's name (``provider`` in the REST API).
    name: str
    #: ``host:port`` of the driver agent's gRPC service.
    driver_agent_address: str
    #: The NATS URL of the mesh (JetStream stream ``PROVIDER_COMMANDS``).
    nats_url: str

    def to_env(self) -> dict[str, str]:
        """The variables a child process reads back with :meth:`from_env`."""
        return {
            f"{ENV_PREFIX}NAME": self.name,
            f"{ENV_PREFIX}DRIVER_AGENT_ADDRESS": self.driver_agent_address,
            f"{ENV_PREFIX}NATS_URL": self.nats_url,
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProviderAgentContext:
        environ = os.environ if environ is None else environ
        try:
            return cls(
                name=environ[f"{ENV_PREFIX}NAME"],
                driver_agent_address=environ[f"{ENV_PREFIX}DRIVER_AGENT_ADDRESS"],
                nats_url=environ[f"{ENV_PREFIX}NATS_URL"],
            )
        except KeyError as exc:
            raise ValueError(f"missing {exc.args[0]}: provider agents are started by the driver agent") from None


#: The signature of a provider agent's entry point.
ProviderAgent = Callable[[ProviderAgentContext], Awaitable[None]]
