"""The driver agent's start-up: a provider agent named but not installed stops it with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys

from acme_helpers import SITE


def run_driver_agent(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "octavia_mesh.driver_agent"],
        env={
            **os.environ,
            "PYTHONPATH": str(SITE),
            "OCTAVIA_MESH_DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_agent_that_is_not_installed_fails_start_up(tmp_path) -> None:
    result = run_driver_agent(tmp_path, OCTAVIA_MESH_DRIVER_AGENT_PROVIDER_AGENTS="acme,globex")
    assert result.returncode != 0
    assert "provider agents not installed: globex (installed: acme)" in result.stderr


def test_unknown_settings_fail_start_up(tmp_path) -> None:
    result = run_driver_agent(tmp_path, OCTAVIA_MESH_DRIVER_AGENT_PROVIDER_AGENT="acme")
    assert result.returncode != 0
    assert "unknown settings: OCTAVIA_MESH_DRIVER_AGENT_PROVIDER_AGENT" in result.stderr
