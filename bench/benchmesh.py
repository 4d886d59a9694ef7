"""A whole mesh on the no-op provider for the benches that compare meshes side by side (auth, metrics, tracing)."""

from __future__ import annotations

from pathlib import Path

from octavia_mesh.cli.mesh import Mesh, MeshOptions
from octavia_mesh.cli.processes import free_port


def start_noop_mesh(state: Path, env: dict[str, str], auth: str = "noauth", project: str = "bench") -> Mesh:
    """Start a mesh in ``state`` (SQLite, its own NATS, a free port) with ``env`` for its services."""
    mesh = Mesh(
        MeshOptions(
            host="127.0.0.1",
            port=free_port(),
            state_dir=state,
            database_url=None,
            nats_url=None,
            auth_strategy=auth,
            start_timeout=120.0,
            default_project=project,
            default_provider="noop",
            service_env=env,
        )
    )
    mesh.start()
    return mesh
