"""One provider agent's process: ``python -m octavia_mesh.driver_agent.provider_runner <name>``.

Loads the entry point ``<name>`` of ``octavia_mesh.provider_agents`` and runs it
with the :class:`ProviderAgentContext` the driver agent put in the
environment, until SIGTERM or SIGINT cancels it. It also ends when the driver
agent that started it is gone (it is then a child of some other process), so
a driver agent killed outright leaves no provider agent behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from octavia_mesh.driver_agent.provider_agents import discover
from octavia_mesh.provider_sdk import ProviderAgent, ProviderAgentContext

logger = logging.getLogger(__name__)
PARENT_POLL_S = 1.0


async def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_POLL_S)
    logger.warning("the driver agent (pid %d) is gone; stopping", parent)


async def run(agent: ProviderAgent, context: ProviderAgentContext) -> None:
    """Run ``agent`` until a stop signal, or its parent's end; returns when it has finished."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(agent(context))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    watcher = asyncio.create_task(_watch_parent(os.getppid()))
    done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    if watcher in done:
        task.cancel()
    watcher.cancel()
    try:
        await task
    except asyncio.CancelledError:
        logger.info("provider agent %s stopped", context.name)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m octavia_mesh.driver_agent.provider_runner <provider agent name>")
    name = argv[0]
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s provider-agent[{name}] %(name)s: %(message)s"
    )
    found = discover()
    if name not in found:
        sys.exit(f"provider agent {name!r} is not installed (entry-point group octavia_mesh.provider_agents)")
    agent = found[name].load()
    asyncio.run(run(agent, ProviderAgentContext.from_env()))


if __name__ == "__main__":
    main()
