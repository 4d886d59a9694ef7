"""Test helpers: a small REST client for the mesh, per-test databases on PostgreSQL and MariaDB, and a local VIP
subnet of its own for every mesh a test starts."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import random
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fastedge import EDGES, EdgeAdapter
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from octavia_mesh.cli.mesh import Mesh, MeshOptions, grpc_serving
from octavia_mesh.cli.processes import listen_port
from octavia_mesh.worker.server import CONSUMING

PROJECT = "e3cd678b11784734bc366148aa37580e"
#: The shared secret that names the authenticating proxy to a trusted_headers mesh (``secure_mesh``).
PROXY_SECRET = "test-proxy-secret-0123456789"
SUBNET = "11111111-1111-1111-1111-111111111111"


class Rest:
    """``requests`` against the edge (Envoy's, or a light mesh's in-process: ``fastedge.py``), with Octavia-aware
    helpers."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        edge = EDGES.get(self.base_url)
        if edge is not None:  # a light mesh's edge (the fast tier): called in-process, without HTTP
            self.session.mount(self.base_url + "/", EdgeAdapter(edge))

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


#: keystonemiddleware's body for a request it cannot authenticate (the mesh answers 401 with it in every mode).
NEEDS_AUTH = {
    "error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}
}


def assert_unauthenticated(response: requests.Response) -> None:
    """401 with keystonemiddleware's body, as a real Octavia behind keystonemiddleware answers."""
    assert response.status_code == 401, f"expected 401, got {response.status_code}: {response.text}"
    assert response.json() == NEEDS_AUTH


def uv_command() -> list[str]:
    """How to run uv from a test: ``uv run`` names its own binary in ``UV``; else uv on PATH; else the module of
    the interpreter ``make`` installed it into (not this virtualenv's python, which has no uv)."""
    found = os.environ.get("UV") or shutil.which("uv")
    return [found] if found else [os.environ.get("PYTHON", "python3"), "-m", "uv"]


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


#: The API's setting that places a mesh's local VIP subnet.
VIP_CIDR_VAR = "OCTAVIA_MESH_API_LOCAL_VIP_CIDR"
#: Where the claims on test VIP subnets live: one lock file per second octet, machine-wide.
VIP_LOCKS = Path(tempfile.gettempdir()) / "octavia-mesh-test-vips"
#: The second octets test meshes take their /16 from: away from 127.0.x (127.0.0.1, resolvers) and from
#: 127.226.x, the default of ``octavia-mesh up`` (and of any suite on this machine that does not claim one).
VIP_OCTETS = range(100, 200)


def claim_vip_cidr() -> tuple[str, Callable[[], None]]:
    """A /16 of 127.0.0.0/8 that no other mesh started by a test on this machine uses while it is held, and its
    release. HAProxy binds with SO_REUSEPORT, so two meshes' load balancers on one address and port would share
    their traffic (and an ACTIVE_STANDBY VIP is routed to a bridge host-wide): each mesh gets its own range.
    The claim is a ``flock`` on a file of :data:`VIP_LOCKS`, so the kernel drops it when the holder dies."""
    VIP_LOCKS.mkdir(mode=0o777, exist_ok=True)
    octets = list(VIP_OCTETS)
    random.shuffle(octets)  # concurrent sessions rarely try the same octet first
    for octet in octets:
        fd = os.open(VIP_LOCKS / f"{octet}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return f"127.{octet}.0.0/16", lambda fd=fd: os.close(fd)
    raise AssertionError(f"every test VIP subnet 127.{VIP_OCTETS[0]}-{VIP_OCTETS[-1]}.0.0/16 is taken")


def vip_network(where: Mesh | Rest) -> ipaddress.IPv4Network:
    """The local VIP subnet of a mesh (its settings), or of the mesh behind an edge (its Neutron-style listing)."""
    if isinstance(where, Rest):
        (subnet,) = where.ok("GET", "/v2.0/subnets")["subnets"]
        return ipaddress.IPv4Network(subnet["cidr"])
    return ipaddress.IPv4Network(where.options.service_env[VIP_CIDR_VAR])


def vip_at(where: Mesh | Rest, third: int, fourth: int) -> str:
    """The address ``<third>.<fourth>`` of the mesh's local VIP subnet (a /16 for every test mesh)."""
    network = vip_network(where)
    return str(network.network_address + third * 256 + fourth)


def random_vip_in(where: Mesh | Rest, third: range = range(64, 251), fourth: range = range(2, 251)) -> str:
    """A random address of the mesh's local VIP subnet, so that load balancers of one module rarely reuse an
    address a deleted one may still hold."""
    return vip_at(where, random.choice(third), random.choice(fourth))


def stop_mesh(mesh: Mesh) -> None:
    """Stop a mesh: SIGTERM to every service at once, so that their graceful stops (seconds each on a loaded
    machine) overlap instead of adding up; then the mesh's own stop (reverse order, NATS last, amphorae)."""
    for child in mesh.supervisor.children:
        if child.name != "nats" and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    mesh.stop()


def start_mesh(
    tmp_path_factory: pytest.TempPathFactory,
    auth: str,
    default_project: str = "",
    default_provider: str = "noop",
    service_env: dict[str, str] | None = None,
    health_replicas: int = 1,
    kind: type[Mesh] = Mesh,
) -> Iterator[Mesh]:
    """Start the whole mesh (or another ``kind`` of it: the fast tier's ``LightMesh``) on a local VIP subnet of
    its own (:func:`claim_vip_cidr`, unless ``service_env`` names one); stop it after.
    ``OCTAVIA_MESH_TEST_DATABASE_URL`` picks the database server."""
    state = tmp_path_factory.mktemp(f"{'mesh' if kind is Mesh else kind.__name__.lower()}-{auth}")
    service_env = dict(service_env or {})
    release_vips = None
    if VIP_CIDR_VAR not in service_env:
        service_env[VIP_CIDR_VAR], release_vips = claim_vip_cidr()
    url = os.environ.get("OCTAVIA_MESH_TEST_DATABASE_URL")
    drop = None
    if url:
        url, drop = fresh_database(url)
    mesh = kind(
        MeshOptions(
            host="127.0.0.1",
            port=listen_port(),  # outside the ephemeral range: a restarted Envoy finds it free again
            state_dir=state,
            database_url=url,
            nats_url=None,
            auth_strategy=auth,
            start_timeout=60.0,
            default_project=default_project,
            default_provider=default_provider,
            service_env=service_env,
            health_replicas=health_replicas,
        )
    )
    try:
        mesh.start()
        yield mesh
    finally:
        stop_mesh(mesh)
        if drop is not None:
            drop()
        if release_vips is not None:
            release_vips()


#: Where Debian puts keepalived (root's sbin directories are not always on PATH).
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def ensure_keepalived() -> str:
    """keepalived's path. ``make test`` (scripts/test.sh) installs it from the distribution's packages when it
    is missing and the suite runs as root; a test never installs anything itself."""
    found = shutil.which("keepalived", path=SBIN_PATH)
    assert found is not None, "keepalived is not installed: run `make test` (it installs it as root) or apt-get it"
    return found
