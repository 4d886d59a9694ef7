"""``octavia-mesh-housekeeping``: run the housekeeping service (settings from ``OCTAVIA_MESH_HOUSEKEEPING_*``)."""

from __future__ import annotations

import asyncio
import sys

from octavia_mesh.common.observability.logging import setup_logging
from octavia_mesh.common.observability.tracing import setup_tracing, shutdown_tracing
from octavia_mesh.housekeeping.server import serve
from octavia_mesh.housekeeping.settings import HousekeepingSettings


def main() -> None:
    try:
        settings = HousekeepingSettings.from_env()
        setup_logging("housekeeping", settings.log_format, settings.log_level)
        setup_tracing("housekeeping", settings.otlp_endpoint)
    except (ValueError, TypeError) as exc:
        sys.exit(f"octavia-mesh-housekeeping: bad settings: {exc}")
    try:
        asyncio.run(serve(settings))
    finally:
        shutdown_tracing()  # flush the spans still batched


if __name__ == "__main__":
    main()
