"""``octavia-mesh-amphora-agent``: run the agent (flags, or ``OCTAVIA_MESH_AGENT_*`` variables; see ``--help``)."""

from __future__ import annotations

import asyncio
import logging
import sys

from octavia_mesh.amphora_agent import settings as agent_settings
from octavia_mesh.amphora_agent.server import serve


def main(argv: list[str] | None = None) -> None:
    try:
        settings = agent_settings.load(argv)
    except (ValueError, TypeError, OSError) as exc:
        sys.exit(f"octavia-mesh-amphora-agent: bad settings: {exc}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # grpc's DEBUG output is one line per callback; keep it out of the agent's own debug logs.
    logging.getLogger("grpc").setLevel(max(logging.getLogger().level, logging.INFO))
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
