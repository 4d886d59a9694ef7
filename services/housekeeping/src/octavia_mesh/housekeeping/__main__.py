"""``octavia-mesh-housekeeping``: run the housekeeping service (settings from ``OCTAVIA_MESH_HOUSEKEEPING_*``)."""

from __future__ import annotations

import asyncio
import logging
import sys

from octavia_mesh.housekeeping.server import serve
from octavia_mesh.housekeeping.settings import HousekeepingSettings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = HousekeepingSettings.from_env()
    except (ValueError, TypeError) as exc:
        sys.exit(f"octavia-mesh-housekeeping: bad settings: {exc}")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
