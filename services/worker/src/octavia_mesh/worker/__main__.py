"""``octavia-mesh-worker``: run the worker (settings from ``OCTAVIA_MESH_WORKER_*``)."""

from __future__ import annotations

import asyncio
import logging
import sys

from octavia_mesh.worker.server import serve
from octavia_mesh.worker.settings import WorkerSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = WorkerSettings.from_env()
    except (ValueError, TypeError) as exc:
        sys.exit(f"octavia-mesh-worker: bad settings: {exc}")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
