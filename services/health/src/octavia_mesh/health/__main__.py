"""``octavia-mesh-health``: run the health service (settings from ``OCTAVIA_MESH_HEALTH_*``)."""

from __future__ import annotations

import asyncio
import sys

import uvloop

from octavia_mesh.common.observability.logging import setup_logging
from octavia_mesh.common.observability.tracing import setup_tracing, shutdown_tracing
from octavia_mesh.health.server import serve
from octavia_mesh.health.settings import HealthSettings


def main() -> None:
    try:
        settings = HealthSettings.from_env()
        setup_logging("health", settings.log_format, settings.log_level)
        setup_tracing("health", settings.otlp_endpoint)
    except (ValueError, TypeError) as exc:
        sys.exit(f"octavia-mesh-health: bad settings: {exc}")
    try:
        if settings.uvloop:  # grpc.aio runs on it; its loop costs less per heartbeat (bench/health_bench.py)
            uvloop.run(serve(settings))
        else:
            asyncio.run(serve(settings))
    finally:
        shutdown_tracing()  # flush the spans still batched


if __name__ == "__main__":
    main()
