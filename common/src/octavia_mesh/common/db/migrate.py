"""Bring a database to the newest schema: ``python -m octavia_mesh.common.db.migrate URL``."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic configuration for ``url`` that needs no ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every migration up to ``revision``. Runs its own event loop: call it from sync code."""
    command.upgrade(alembic_config(url), revision)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m octavia_mesh.common.db.migrate DATABASE_URL")
    upgrade(sys.argv[1])


if __name__ == "__main__":
    main()
