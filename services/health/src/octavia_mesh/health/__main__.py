"""``octavia-mesh-health``: run the health service (settings from ``OCTAVIA_MESH_HEALTH_*``)."""

from __future__ import annotations

import asyncio
import logging
import sys

import uvloop

from octavia_mesh.health.server import serve
from octavia_mesh.health.settings import HealthSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = HealthSettings.from_env()
    except (ValueError, TypeError) as exc:
        sys.exit(f"octavia-mesh-health: bad settings: {exc}")
    if settings.uvloop:
        uvloop.run(serve(settings))  # grpc.aio runs on it; its loop costs less per heartbeat (bench/health_bench.py)
    else:
        asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
