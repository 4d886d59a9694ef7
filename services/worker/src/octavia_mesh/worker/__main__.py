"""``octavia-mesh-worker``: run the worker (settings from ``OCTAVIA_MESH_WORKER_*``)."""

from __future__ import annotations

import asyncio
import sys

from octavia_mesh.common.observability.logging import setup_logging
from octavia_mesh.common.observability.tracing import setup_tracing, shutdown_tracing
from octavia_mesh.worker.server import serve
from octavia_mesh.worker.settings import WorkerSettings


def main() -> None:
    try:
        settings = WorkerSettings.from_env()
        setup_logging("worker", settings.log_format, settings.log_level)
        setup_tracing("worker", settings.otlp_endpoint)
    except (ValueError, TypeError) as exc:
        sys.exit(f"octavia-mesh-worker: bad settings: {exc}")
    try:
        asyncio.run(serve(settings))
    finally:
        shutdown_tracing()  # flush the spans still batched


if __name__ == "__main__":
    main()
