"""``octavia-mesh-amphora-agent``: run the agent (flags, or ``OCTAVIA_MESH_AGENT_*`` variables; see ``--help``)."""

from __future__ import annotations

import asyncio
import sys

from octavia_mesh.amphora_agent import observability
from octavia_mesh.amphora_agent import settings as agent_settings
from octavia_mesh.amphora_agent.server import serve


def main(argv: list[str] | None = None) -> None:
    try:
        settings = agent_settings.load(argv)
        observability.setup_logging(settings.log_format, settings.log_level, settings.amphora_id)
    except (ValueError, TypeError, OSError) as exc:
        sys.exit(f"octavia-mesh-amphora-agent: bad settings: {exc}")
    observability.setup_tracing(settings.otlp_endpoint, settings.amphora_id)
    try:
        asyncio.run(serve(settings))
    finally:
        observability.shutdown_tracing()  # flush the spans still batched


if __name__ == "__main__":
    main()
