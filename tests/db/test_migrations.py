"""The migrations build exactly the schema the models describe, on every backend."""

from __future__ import annotations

from alembic import command

from octavia_mesh.common.db.migrate import alembic_config


def test_models_and_migrations_agree(database_url: str) -> None:
    command.check(alembic_config(database_url))  # raises when autogenerate would add a migration
