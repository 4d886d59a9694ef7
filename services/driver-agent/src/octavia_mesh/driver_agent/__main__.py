"""``octavia-mesh-driver-agent``: run the driver-agent service (settings from ``OCTAVIA_MESH_DRIVER_AGENT_*``)."""

from __future__ import annotations

import asyncio
import sys

from octavia_mesh.common.observability.logging import setup_logging
from octavia_mesh.common.observability.tracing import setup_tracing, shutdown_tracing
from octavia_mesh.driver_agent.provider_agents import choose, discover
from octavia_mesh.driver_agent.server import serve
from octavia_mesh.driver_agent.settings import DriverAgentSettings


def main() -> None:
    try:
        settings = DriverAgentSettings.from_env()
        setup_logging("driver-agent", settings.log_format, settings.log_level)
        setup_tracing("driver-agent", settings.otlp_endpoint)
        choose(settings.provider_agents, discover())  # an agent named but not installed fails here, at start-up
    except (ValueError, TypeError) as exc:
        sys.exit(f"octavia-mesh-driver-agent: bad settings: {exc}")
    try:
        asyncio.run(serve(settings))
    finally:
        shutdown_tracing()  # flush the spans still batched


if __name__ == "__main__":
    main()
