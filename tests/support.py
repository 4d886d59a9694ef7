"""Test helpers: a small REST client for the mesh, and per-test databases on PostgreSQL and MariaDB."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from octavia_mesh.cli.mesh import Mesh, MeshOptions, grpc_serving
from octavia_mesh.cli.processes import free_port
from octavia_mesh.worker.server import CONSUMING

PROJECT = "e3cd678b11784734bc366148aa37580e"
#: The shared secret that names the authenticating proxy to a trusted_headers mesh (``secure_mesh``).
PROXY_SECRET = "test-proxy-secret-0123456789"
SUBNET = "11111111-1111-1111-1111-111111111111"


class Rest:
    """``requests`` against the edge, with Octavia-aware helpers."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers or {})

    def as_(self, project: str, *roles: str) -> Rest:
        """The same edge, called as ``project`` with ``roles`` (trusted-headers mode, as the proxy)."""
        headers = {"X-Project-Id": project, "X-Roles": ",".join(roles), "X-Octavia-Mesh-Proxy-Secret": PROXY_SECRET}
        return Rest(self.base_url, headers)

    def call(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None, **kwargs: Any
    ) -> requests.Response:
        data = raw if raw is not None else (None if body is None else requests.compat.json.dumps(body))
        headers = {"Content-Type": "application/json"} if data is not None else {}
        return self.session.request(method, self.base_url + path, data=data, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("PUT", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("DELETE", path, **kwargs)

    def ok(self, method: str, path: str, body: Any = None, status: int | None = None) -> Any:
        """Call and assert success (or ``status``); returns the decoded body."""
        response = self.call(method, path, body)
        expected = status or {"POST": 201, "DELETE": 204}.get(method, 200)
        assert response.status_code == expected, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def wait_status(self, path: str, key: str, status: str = "ACTIVE", timeout: float = 15.0) -> dict[str, Any]:
        """Poll ``path`` until ``provisioning_status`` is ``status`` (404 counts as DELETED)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            response = self.get(path)
            if response.status_code == 404 and status == "DELETED":
                return {}
            if response.status_code == 200:
                last = response.json()[key]
                if last["provisioning_status"] == status:
                    return last
            time.sleep(0.02)
        raise AssertionError(f"{path} did not reach {status}: {last}")

    def create_lb(self, **fields: Any) -> dict[str, Any]:
        """Create a load balancer and wait until it is ACTIVE."""
        body = {"vip_subnet_id": SUBNET, "project_id": PROJECT, **fields}
        lb = self.ok("POST", "/v2/lbaas/loadbalancers", {"loadbalancer": body})["loadbalancer"]
        return self.wait_status(f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer")

    def wait_lb_active(self, lb_id: str) -> dict[str, Any]:
        return self.wait_status(f"/v2/lbaas/loadbalancers/{lb_id}", "loadbalancer")


def new_listener(rest: Rest, lb_id: str, port: int, protocol: str = "HTTP", **fields: Any) -> dict[str, Any]:
    """Create a listener and wait until it and its load balancer are ACTIVE."""
    body = {"protocol": protocol, "protocol_port": port, "loadbalancer_id": lb_id, **fields}
    created = rest.ok("POST", "/v2/lbaas/listeners", {"listener": body})["listener"]
    rest.wait_lb_active(lb_id)
    return rest.wait_status(f"/v2/lbaas/listeners/{created['id']}", "listener")


def new_pool(rest: Rest, lb_id: str, protocol: str = "HTTP", **fields: Any) -> dict[str, Any]:
    """Create a pool (on the load balancer unless a listener is named) and wait until it is ACTIVE."""
    body = {"protocol": protocol, "lb_algorithm": "ROUND_ROBIN", **fields}
    if "listener_id" not in fields:
        body["loadbalancer_id"] = lb_id
    created = rest.ok("POST", "/v2/lbaas/pools", {"pool": body})["pool"]
    rest.wait_lb_active(lb_id)
    return rest.wait_status(f"/v2/lbaas/pools/{created['id']}", "pool")


def assert_fault(response: requests.Response, status: int, message: str | None = None) -> None:
    """Octavia's fault body with ``status`` (and ``message`` as faultstring, when given)."""
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    body = response.json()
    assert set(body) == {"faultcode", "faultstring", "debuginfo"}, body
    assert body["faultcode"] == ("Server" if status >= 500 else "Client")
    assert body["debuginfo"] is None
    if message is not None:
        assert body["faultstring"] == message, body["faultstring"]


SYNC_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}


def sync_url(url: str) -> Any:
    """``url`` with a synchronous driver, for tests that read or plant rows directly."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    return parsed.set(drivername=SYNC_DRIVERS.get(backend, "sqlite" if backend == "sqlite" else parsed.drivername))


def mesh_engine(mesh: Any) -> Any:
    """A synchronous engine on a running mesh's own database.

    Only for what the API cannot do yet: planting rows no provider creates (amphorae, statistics) and
    counting outbox rows. Everything else goes through the API.
    """
    url = mesh.options.database_url or f"sqlite:///{mesh.state / 'octavia-mesh.db'}"
    parsed = sync_url(url)
    return create_engine(parsed, connect_args={"timeout": 30} if parsed.get_backend_name() == "sqlite" else {})


def fresh_database(url: str) -> tuple[str, callable]:
    """A new empty database on the server of ``url`` (PostgreSQL/MariaDB), and its dropper.

    SQLite URLs are returned as they are: the caller gives each mesh its own file.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return url, lambda: None
    name = f"om_test_{uuid.uuid4().hex[:10]}"
    engine = create_engine(sync_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))

    def drop() -> None:
        with engine.connect() as conn:
            if parsed.get_backend_name() == "postgresql":
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()

    return parsed.set(database=name).render_as_string(hide_password=False), drop


@contextlib.contextmanager
def paused(mesh: Any, timeout: float = 10.0) -> Iterator[None]:
    """Pause the worker (SIGUSR1), so that changes stay PENDING_* while the block runs; resume after (SIGUSR2).

    The noop provider settles a change in milliseconds; pausing the worker is how a test observes the pending
    window, as a slow data plane would show it. The worker reports NOT_SERVING on its ``Consuming`` health
    service only once the commands in hand are applied, so no transaction of its is open inside the block.
    """
    worker = mesh.supervisor.child("worker")
    target = mesh.grpc_targets["worker"]
    os.kill(worker.process.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while grpc_serving(target, CONSUMING):
        assert time.monotonic() < deadline, "the worker did not pause"
        time.sleep(0.01)
    try:
        yield
    finally:
        os.kill(worker.process.pid, signal.SIGUSR2)


def start_mesh(
    tmp_path_factory: pytest.TempPathFactory,
    auth: str,
    default_project: str = "",
    default_provider: str = "noop",
    service_env: dict[str, str] | None = None,
    health_replicas: int = 1,
) -> Iterator[Mesh]:
    """Start the whole mesh (``OCTAVIA_MESH_TEST_DATABASE_URL`` picks the database server); stop it after."""
    state = tmp_path_factory.mktemp(f"mesh-{auth}")
    url = os.environ.get("OCTAVIA_MESH_TEST_DATABASE_URL")
    drop = None
    if url:
        url, drop = fresh_database(url)
    mesh = Mesh(
        MeshOptions(
            host="127.0.0.1",
            port=free_port(),
            state_dir=state,
            database_url=url,
            nats_url=None,
            auth_strategy=auth,
            start_timeout=60.0,
            default_project=default_project,
            default_provider=default_provider,
            service_env=service_env or {},
            health_replicas=health_replicas,
        )
    )
    mesh.start()
    try:
        yield mesh
    finally:
        mesh.stop()
        if drop is not None:
            drop()


#: Where Debian puts keepalived (root's sbin directories are not always on PATH).
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def ensure_keepalived() -> str:
    """keepalived's path, installed from the distribution's packages when missing (root only), so that the suite
    sets up what it uses on a fresh machine."""
    found = shutil.which("keepalived", path=SBIN_PATH)
    if found is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "keepalived"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
            result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
            assert result.returncode == 0, f"apt-get install keepalived failed:\n{result.stderr[-2000:]}"
        found = shutil.which("keepalived", path=SBIN_PATH)
    assert found is not None, "keepalived is not installed"
    return found
