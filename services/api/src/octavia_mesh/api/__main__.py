"""``octavia-mesh-api``: run the API service (settings from ``OCTAVIA_MESH_API_*``)."""

from __future__ import annotations

import asyncio
import logging
import sys

from octavia_mesh.api.server import serve
from octavia_mesh.api.settings import ApiSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ApiSettings.from_env()
    except (ValueError, TypeError) as exc:
        sys.exit(f"octavia-mesh-api: bad settings: {exc}")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
