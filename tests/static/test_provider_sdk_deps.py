"""The provider SDK is what a third-party driver installs: it must not pull the mesh's database stack."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

DATABASE = ("sqlalchemy", "alembic", "aiosqlite", "asyncpg", "asyncmy")


def test_the_distribution_requires_no_database_package() -> None:
    requires = [r.split(";")[0].strip().lower() for r in importlib.metadata.requires("octavia-mesh-provider-sdk") or []]
    assert requires, "the SDK's metadata lists its dependencies"
    assert not [r for r in requires if r.startswith(DATABASE)], requires
    assert not [r for r in requires if r.startswith("octavia-mesh-common")], "the SDK must not depend on common"


def test_importing_the_sdk_loads_no_database_module() -> None:
    code = (
        "import sys, octavia_mesh.provider_sdk, octavia_mesh.provider_sdk.commands\n"
        f"print(sorted(m for m in sys.modules\n"
        f"             if m.split('.')[0] in {DATABASE!r} or m.startswith('octavia_mesh.common')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", loaded
