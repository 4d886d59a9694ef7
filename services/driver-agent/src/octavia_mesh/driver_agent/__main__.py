"""``octavia-mesh-driver-agent``: run the driver-agent service (settings from ``OCTAVIA_MESH_DRIVER_AGENT_*``)."""

from __future__ import annotations

import asyncio
import logging
import sys

from octavia_mesh.driver_agent.provider_agents import choose, discover
from octavia_mesh.driver_agent.server import serve
from octavia_mesh.driver_agent.settings import DriverAgentSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = DriverAgentSettings.from_env()
        choose(settings.provider_agents, discover())  # an agent named but not installed fails here, at start-up
    except (ValueError, TypeError) as exc:
        sys.exit(f"octavia-mesh-driver-agent: bad settings: {exc}")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
