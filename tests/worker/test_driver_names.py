"""A worker whose settings name a driver it does not have refuses to start (no silent no-op driver)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from octavia_mesh.worker.settings import WorkerSettings


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("COMPUTE_DRIVER", "locla"),
        ("AMPHORA_DRIVER", "grcp"),
        ("NETWORK_DRIVER", "neutorn"),
        ("CERT_MANAGER", "barbcian"),
        ("PROVIDERS", "noop,amphroa"),
    ],
)
def test_a_misspelt_driver_fails_the_settings(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"OCTAVIA_MESH_WORKER_{variable}.*{value.split(',')[-1]!r} is not one of"):
        WorkerSettings.from_env({f"OCTAVIA_MESH_WORKER_{variable}": value})


def test_the_known_drivers_pass() -> None:
    settings = WorkerSettings.from_env(
        {
            "OCTAVIA_MESH_WORKER_COMPUTE_DRIVER": "noop",
            "OCTAVIA_MESH_WORKER_AMPHORA_DRIVER": "noop",
            "OCTAVIA_MESH_WORKER_NETWORK_DRIVER": "noop",
            "OCTAVIA_MESH_WORKER_PROVIDERS": "amphora,noop",
        }
    )
    assert settings.providers == ("amphora", "noop")
    assert WorkerSettings().compute_driver == "local"


def test_the_worker_exits_at_start_up_saying_which() -> None:
    env = {"OCTAVIA_MESH_WORKER_COMPUTE_DRIVER": "locla", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "octavia_mesh.worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "OCTAVIA_MESH_WORKER_COMPUTE_DRIVER='locla' is not one of local, nova, noop" in done.stderr
