"""``octavia-mesh-api``: run the API service (settings from ``OCTAVIA_MESH_API_*``)."""

from __future__ import annotations

import asyncio
import sys

import uvloop

from octavia_mesh.api.server import serve
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.common.observability.logging import setup_logging
from octavia_mesh.common.observability.tracing import setup_tracing, shutdown_tracing


def main() -> None:
    try:
        settings = ApiSettings.from_env()
        setup_logging("api", settings.log_format, settings.log_level)
        setup_tracing("api", settings.otlp_endpoint)
    except (ValueError, TypeError) as exc:
        sys.exit(f"octavia-mesh-api: bad settings: {exc}")
    try:
        if settings.uvloop:  # grpc.aio and the handlers run on it; its loop costs less per call (bench/api_bench.py)
            uvloop.run(serve(settings))
        else:
            asyncio.run(serve(settings))
    finally:
        shutdown_tracing()  # flush the spans still batched


if __name__ == "__main__":
    main()
