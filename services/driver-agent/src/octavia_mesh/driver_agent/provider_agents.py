"""Provider agents: out-of-tree provider drivers found by entry point and run as child processes.

Octavia's driver agent starts the ``enabled_provider_agents`` registered under
``octavia.driver_agent.provider_agents``, each in a process of its own. Here
the group is ``octavia_mesh.provider_agents`` and every installed agent runs
unless the ``provider_agents`` setting names a subset. Each runs as
``python -m octavia_mesh.driver_agent.provider_runner <name>`` with a
:class:`~octavia_mesh.provider_sdk.ProviderAgentContext` in its
environment; one that exits is started again after a back-off (reset once it
has run for a minute), and all are stopped (SIGTERM, then SIGKILL) when the
driver agent stops. A process of their own keeps a blocking or crashing
driver away from the driver agent's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points

from prometheus_client import Counter

from octavia_mesh.provider_sdk import ENTRY_POINT_GROUP, ProviderAgentContext

logger = logging.getLogger(__name__)

AGENT_EXITS = Counter(
    "octavia_mesh_driver_agent_provider_agent_exits",
    "Provider agents (child processes) that exited unasked and were started again, by provider.",
    ("provider",),
)

#: Back-off before a restart: the first waits the minimum, each further one twice as long, up to the maximum.
RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
#: A child that ran this long is healthy again: its next restart waits the minimum.
STABLE_AFTER_S = 60.0


def discover() -> dict[str, EntryPoint]:
    """Every provider agent installed, by entry-point name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def choose(wanted: Sequence[str], found: Mapping[str, EntryPoint]) -> list[str]:
    """The agents to run: ``*`` is every one found; a wanted agent that is not installed is an error."""
    if "*" in wanted:
        return sorted(found)
    missing = [name for name in wanted if name not in found]
    if missing:
        raise ValueError(
            f"provider agents not installed: {', '.join(missing)} (installed: {', '.join(sorted(found)) or 'none'})"
        )
    return list(dict.fromkeys(wanted))


class ProviderAgents:
    """Runs and supervises one child process per provider agent."""

    def __init__(self, names: Sequence[str], driver_agent_address: str, nats_url: str, stop_timeout_s: float = 10.0):
        self._names = list(names)
        self._address = driver_agent_address
        self._nats_url = nats_url
        self._stop_timeout_s = stop_timeout_s
        self._tasks: list[asyncio.Task[None]] = []
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._stopping = False

    @property
    def pids(self) -> dict[str, int]:
        """The running children's process ids, by agent name."""
        return {name: p.pid for name, p in self._processes.items() if p.returncode is None}

    def start(self) -> None:
        for name in self._names:
            self._tasks.append(asyncio.create_task(self._supervise(name), name=f"provider-agent-{name}"))

    async def _supervise(self, name: str) -> None:
        context = ProviderAgentContext(name, self._address, self._nats_url)
        env = {**os.environ, **context.to_env()}
        delay = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "octavia_mesh.driver_agent.provider_runner", name, env=env
            )
            self._processes[name] = process
            logger.info("provider agent %s started (pid %d)", name, process.pid)
            code = await process.wait()
            if self._stopping:
                return
            AGENT_EXITS.labels(name).inc()
            stable = loop.time() - started >= STABLE_AFTER_S
            delay = RESTART_MIN_S if stable or not delay else min(RESTART_MAX_S, delay * 2)
            logger.warning("provider agent %s exited with %s; starting it again in %.1fs", name, code, delay)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        self._stopping = True
        running = [p for p in self._processes.values() if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in running:
            try:
                await asyncio.wait_for(process.wait(), self._stop_timeout_s)
            except TimeoutError:
                logger.warning("provider agent pid %d did not stop; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
