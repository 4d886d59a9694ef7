"""Prometheus metrics on a real mesh: every service's ``/metrics`` moves with what the mesh does, and a
PROMETHEUS listener serves HAProxy's counters under Octavia's names, moving with real traffic.

One mesh (amphora provider, a spare pool of one) for the module, started as ``octavia-mesh up`` starts it: each
service's metrics on a loopback port of its own, recorded in ``ports.json``.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataplane"))

from dataplane_helpers import Backend, LoadBalancer, get, load_balancer, wait_until  # noqa: E402
from support import Rest, start_mesh  # noqa: E402

from octavia_mesh.cli.mesh import Mesh  # noqa: E402

SERVICES = ("api", "worker", "health", "housekeeping", "driver-agent")
#: The table of docs/metrics.md: every series of ours a service exposes is in it.
DOCS = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
OURS = ("octavia_mesh_", "grpc_server_")
LBS = "/v2/lbaas/loadbalancers"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from start_mesh(
        tmp_path_factory,
        "noauth",
        default_project="metrics",
        default_provider="amphora",
        service_env={"OCTAVIA_MESH_WORKER_SPARE_AMPHORAE": "1"},
    )


@pytest.fixture(scope="module")
def api(mesh: Mesh) -> Rest:
    return Rest(mesh.endpoint)


@pytest.fixture
def backends() -> Iterator[Callable[[int], list[Backend]]]:
    started: list[Backend] = []

    def make(count: int) -> list[Backend]:
        new = [Backend(f"member{i}") for i in range(len(started), len(started) + count)]
        started.extend(new)
        return new

    yield make
    for backend in started:
        backend.close()


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a loopback URL of the mesh
        assert response.status == 200, url
        return response.read().decode()


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """(sample name and labels -> value, family name -> type); parsing fails on a malformed exposition."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, types


def scrape(mesh: Mesh, service: str) -> Samples:
    return parse(fetch(mesh.metrics_urls[service]))[0]


def value(samples: Samples, name: str, **labels: str) -> float:
    """One series' value (0 when it does not exist yet: a counter not yet incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def health_check(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)  # pyright: ignore[reportAttributeAccessIssue]
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING


CHECK_OK = {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Check", "grpc_type": "unary", "grpc_code": "OK"}


def test_every_service_serves_metrics_where_up_says(mesh: Mesh) -> None:
    ports = json.loads((mesh.state / "ports.json").read_text())
    for service in SERVICES:
        port = ports[f"{service}-metrics"]
        assert mesh.metrics_urls[service] == f"http://127.0.0.1:{port}/metrics"
        samples, types = parse(fetch(mesh.metrics_urls[service]))
        assert types["grpc_server_handled"] == "counter" and types["grpc_server_handling_seconds"] == "histogram"
        assert "process_cpu_seconds" in types, service  # prometheus-client's process collector
        undocumented = [n for n in types if n.startswith(OURS) and f"`{n}" not in DOCS]
        assert not undocumented, (service, undocumented)
    assert mesh.metrics_urls["edge"] == f"http://127.0.0.1:{ports['edge-metrics']}/stats/prometheus"


def test_the_edge_serves_envoys_metrics_and_nothing_else_of_its_admin(mesh: Mesh, api: Rest) -> None:
    def downstream_requests() -> float:
        samples, _ = parse(fetch(mesh.metrics_urls["edge"]))
        return total(samples, "envoy_http_downstream_rq_total", envoy_http_conn_manager_prefix="octavia_rest")

    before = downstream_requests()
    for _ in range(3):
        api.ok("GET", LBS)
    assert downstream_requests() - before == 3
    base = mesh.metrics_urls["edge"].removesuffix("/stats/prometheus")
    for path in ("/stats", "/config_dump", "/quitquitquit"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(base + path, method="POST"), timeout=5)  # noqa: S310
        assert refused.value.code == 404, path


def test_grpc_calls_are_counted_by_method_and_code(mesh: Mesh, api: Rest) -> None:
    before = {service: scrape(mesh, service) for service in SERVICES}
    for service in SERVICES:
        health_check(mesh.grpc_targets[service])
    got = {"grpc_service": "octavia_mesh.lbaas.v2.LoadBalancers", "grpc_method": "GetLoadBalancer"}
    for _ in range(3):
        api.ok("GET", f"{LBS}?limit=1")
        assert api.get(f"{LBS}/00000000-0000-0000-0000-000000000000").status_code == 404
    after = {service: scrape(mesh, service) for service in SERVICES}
    for service in SERVICES:
        # Exactly one more: the probe above (up's supervisor does not probe once the mesh is up).
        assert (
            value(after[service], "grpc_server_handled_total", **CHECK_OK)
            - value(before[service], "grpc_server_handled_total", **CHECK_OK)
            == 1
        ), service
    moved = {
        code: value(after["api"], "grpc_server_handled_total", **got, grpc_type="unary", grpc_code=code)
        - value(before["api"], "grpc_server_handled_total", **got, grpc_type="unary", grpc_code=code)
        for code in ("OK", "NOT_FOUND")
    }
    assert moved == {"OK": 0, "NOT_FOUND": 3}
    listing = {"grpc_service": "octavia_mesh.lbaas.v2.LoadBalancers", "grpc_method": "ListLoadBalancers"}
    ok = value(after["api"], "grpc_server_handled_total", **listing, grpc_type="unary", grpc_code="OK") - value(
        before["api"], "grpc_server_handled_total", **listing, grpc_type="unary", grpc_code="OK"
    )
    assert ok == 3
    latency = value(
        after["api"], "grpc_server_handling_seconds_count", **listing, grpc_type="unary", grpc_code="OK"
    ) - value(before["api"], "grpc_server_handling_seconds_count", **listing, grpc_type="unary", grpc_code="OK")
    assert latency == 3
    assert value(after["api"], "grpc_server_handling_seconds_sum", **listing, grpc_type="unary", grpc_code="OK") > 0


@pytest.fixture(scope="module")
def lb(api: Rest) -> Iterator[LoadBalancer]:
    with load_balancer(api, "metrics") as handle:
        yield handle


def test_a_create_moves_the_flows_commands_and_outbox(mesh: Mesh, api: Rest) -> None:
    flow = {"flow": "create-load-balancer", "outcome": "success"}
    before_worker, before_api = scrape(mesh, "worker"), scrape(mesh, "api")
    created = {"provider": "amphora", "kind": "RESOURCE_KIND_LOAD_BALANCER", "operation": "OPERATION_CREATE"}
    with load_balancer(api, "metrics-create"):
        # ACTIVE is written by the flow's last task; the flow's and the command's counters move after it, when
        # the worker has recorded the flow done and completed the command (a loaded machine shows the gap).
        wait_until(
            lambda: (
                value(scrape(mesh, "worker"), "octavia_mesh_worker_commands_total", **created, outcome="applied")
                > value(before_worker, "octavia_mesh_worker_commands_total", **created, outcome="applied")
            ),
            30,
            "the worker to count the create's command applied",
            interval=0.2,
        )
        worker, api_samples = scrape(mesh, "worker"), scrape(mesh, "api")
    assert (
        value(worker, "octavia_mesh_worker_flows_total", **flow)
        - value(before_worker, "octavia_mesh_worker_flows_total", **flow)
        == 1
    )
    assert (
        value(worker, "octavia_mesh_worker_flow_duration_seconds_count", **flow)
        - value(before_worker, "octavia_mesh_worker_flow_duration_seconds_count", **flow)
        == 1
    )
    configure = {"flow": "create-load-balancer", "task": "configure", "outcome": "success"}
    assert (
        value(worker, "octavia_mesh_worker_task_duration_seconds_count", **configure)
        - value(before_worker, "octavia_mesh_worker_task_duration_seconds_count", **configure)
        == 1
    )
    assert (
        value(worker, "octavia_mesh_worker_commands_total", **created, outcome="applied")
        - value(before_worker, "octavia_mesh_worker_commands_total", **created, outcome="applied")
        == 1
    )
    assert value(worker, "octavia_mesh_worker_commands_in_flight", provider="amphora") == 0
    assert value(api_samples, "octavia_mesh_outbox_published_total") > value(
        before_api, "octavia_mesh_outbox_published_total"
    )
    # The spare pool: the create took the spare (or booted when none was ready), and the pool refills to one.
    wait_until(
        lambda: value(scrape(mesh, "worker"), "octavia_mesh_worker_spare_amphorae", state="ready") == 1,
        60,
        "the spare pool to show one READY spare",
        interval=0.5,
    )
    assert value(scrape(mesh, "worker"), "octavia_mesh_worker_spare_amphorae_target") == 1


def test_heartbeats_ingested_increase(mesh: Mesh, lb: LoadBalancer) -> None:
    first = scrape(mesh, "health")
    assert value(first, "octavia_mesh_health_heartbeat_streams") >= 1  # the load balancer's amphora, the spare
    assert value(first, "octavia_mesh_health_failover_breaker_open") == 0
    time.sleep(2.0)  # four heartbeat intervals
    second = scrape(mesh, "health")
    for name in ("octavia_mesh_health_heartbeats_received_total", "octavia_mesh_health_heartbeats_written_total"):
        assert value(second, name) > value(first, name), name
    assert value(second, "octavia_mesh_health_amphorae_monitored") >= 1
    assert value(second, "octavia_mesh_health_failover_armed") in (0, 1)


def test_housekeeping_counts_its_job_runs(mesh: Mesh) -> None:
    samples = scrape(mesh, "housekeeping")
    for job in ("cleanup", "pending", "certificates", "orphans"):  # each runs once at start
        assert value(samples, "octavia_mesh_housekeeping_job_runs_total", job=job, outcome="success") >= 1, job
        assert value(samples, "octavia_mesh_housekeeping_job_duration_seconds_count", job=job) >= 1, job


# --------------------------------------------------------------------------------- the PROMETHEUS listener


def test_prometheus_listener_serves_octavia_names_that_move_with_traffic(
    lb: LoadBalancer, backends: Callable[[int], list[Backend]]
) -> None:
    http = lb.listener(8080)
    pool = lb.pool(http)
    members = lb.members(pool, backends(2))
    metrics_port = 9100
    prometheus = lb.listener(metrics_port, protocol="PROMETHEUS")
    backend_name = f"{pool['id']}:{http['id']}"  # HAProxy's backend, named as Octavia names it

    def scrape_vip() -> tuple[Samples, dict[str, str], str]:
        response = get(lb.vip, metrics_port, "/metrics")
        assert response.status == 200, response
        assert response.headers["content-type"].startswith("text/plain")
        return (*parse(response.body), response.body)

    before, types, text = scrape_vip()
    assert "haproxy_" not in text and "prometheus-exporter" not in text  # renamed, internal series left out
    assert types["octavia_listener_bytes_in"] == "counter"
    assert types["octavia_member_status"] == "gauge"
    assert types["octavia_loadbalancer_cpu"] == "gauge" and types["octavia_loadbalancer_memory"] == "gauge"
    assert "# HELP octavia_listener_status Current status of the listener." in text  # Octavia's help text
    assert value(before, "octavia_listener_status", listener=http["id"], state="UP") == 1
    assert value(before, "octavia_listener_status", listener=prometheus["id"], state="UP") == 1
    assert value(before, "octavia_pool_status", pool=backend_name, state="UP") == 1
    for member in members.values():
        assert total(before, "octavia_member_status", pool=backend_name, member=member["id"]) == 1  # one state

    requests = 20
    for _ in range(requests):
        assert get(lb.vip, 8080).status == 200
    after, _, _ = scrape_vip()

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("octavia_listener_http_requests_total", listener=http["id"]) == requests
    assert moved("octavia_listener_http_responses_total", listener=http["id"], code="2xx") == requests
    assert moved("octavia_listener_bytes_out_total", listener=http["id"]) > 0
    assert moved("octavia_pool_http_responses_total", pool=backend_name, code="2xx") == requests
    served = [moved("octavia_member_http_responses_total", pool=backend_name, member=m["id"]) for m in members.values()]
    assert sum(served) == requests and all(n > 0 for n in served)  # round robin: both members served
    assert moved("octavia_loadbalancer_requests_total") >= requests

    assert get(lb.vip, metrics_port, "/other").status == 404
