"""One create followed across the mesh by its request id: in the logs and in one trace (issue 13, item 4).

The mesh runs with JSON logs and exports its traces to a real OTLP/gRPC receiver (``otlp_receiver.py``:
opentelemetry-proto's ``TraceService`` on a free loopback port, a stand-in for a collector, not a mock of our
parts).
A load balancer created with a listener in one call goes edge → API → NATS → worker → amphora agent; the
``x-openstack-request-id`` its client got must be on the Envoy access line, the API's access line, the worker's
flow lines and the agent's lines, and the trace must hold spans of the edge, the API, the worker and the agent,
each linked to its parent across the process boundaries.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from support import PROJECT, Rest, random_vip_in, start_mesh

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.protos.lbaas.v2 import loadbalancers_pb2_grpc, requests_pb2

pytestmark = pytest.mark.timeout(240)


class Receiver:
    """The spans the OTLP receiver process (``otlp_receiver.py``) got, read from its file."""

    def __init__(self, path: Path, port: int) -> None:
        self.path, self.port = path, port

    def spans(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.endswith("}")]


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    path = tmp_path_factory.mktemp("otlp") / "spans.jsonl"
    script = Path(__file__).with_name("otlp_receiver.py")
    process = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield Receiver(path, int(process.stdout.readline()))
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def traced_mesh(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Mesh]:
    env = {
        "OCTAVIA_MESH_LOG_FORMAT": "json",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # spans reach the receiver within a fraction of a second
        "OCTAVIA_MESH_WORKER_SPARE_AMPHORAE": "0",  # the create boots its own amphora: its agent is on the trace
    }
    yield from start_mesh(tmp_path_factory, "noauth", PROJECT, "amphora", service_env=env)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a log (the supervisor's own plain lines are left out)."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def agent_logs(mesh: Mesh) -> list[Path]:
    base = mesh.state / "worker" / "amphorae"
    pointer = base.parent / f"{base.name}.location"
    if pointer.exists():
        base = Path(pointer.read_text().strip())
    return sorted(base.glob("*/agent.log"))


def wait_for(what: str, found: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = found()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_one_create_is_followed_from_the_edge_to_the_agent(traced_mesh: Mesh, receiver: Receiver) -> None:
    # A request id the client makes up is not the one it gets, nor the one the mesh logs.
    rest = Rest(traced_mesh.endpoint, {"x-openstack-request-id": "req-made-up"})
    body = {
        "loadbalancer": {
            "vip_subnet_id": rest.ok("GET", "/v2.0/subnets")["subnets"][0]["id"],  # the local VIP subnet
            "vip_address": random_vip_in(traced_mesh),
            "project_id": PROJECT,
            "listeners": [{"protocol": "HTTP", "protocol_port": 8080}],
        }
    }
    response = rest.post("/v2/lbaas/loadbalancers", body)
    assert response.status_code == 201, response.text
    request_id = response.headers["x-openstack-request-id"]
    assert request_id.startswith("req-") and request_id != "req-made-up"
    lb_id = response.json()["loadbalancer"]["id"]
    rest.wait_status(f"/v2/lbaas/loadbalancers/{lb_id}", "loadbalancer", timeout=90)
    logs = traced_mesh.logs

    # The edge: Envoy's JSON access line of the POST.
    def edge_line() -> list[dict[str, Any]]:
        return [e for e in json_lines(logs / "envoy-access.log") if e.get("request_id") == request_id]

    (edge,) = wait_for("the edge's access line", edge_line)
    assert edge["method"] == "POST" and edge["path"] == "/v2/lbaas/loadbalancers", edge
    assert int(edge["status"]) == 201 and int(edge["duration_ms"]) >= 0 and "upstream_ms" in edge, edge
    # The REST method, not the transcoder's POST: the status polls are GETs, each with a request id of its own.
    polls = [e for e in json_lines(logs / "envoy-access.log") if e["path"] == f"/v2/lbaas/loadbalancers/{lb_id}"]
    assert polls and {e["method"] for e in polls} == {"GET"}, polls
    assert len({e["request_id"] for e in polls}) == len(polls) and request_id not in {e["request_id"] for e in polls}

    # The API: its access line (method, path, status, duration, project) carries the same id.
    api = [e for e in json_lines(logs / "api.log") if e.get("request_id") == request_id]
    access = [e for e in api if e["logger"] == "octavia_mesh.api.access"]
    assert len(access) == 1, api
    assert access[0]["status"] == 201 and access[0]["path"] == "/v2/lbaas/loadbalancers", access
    assert access[0]["method"] == "POST" and access[0]["rpc"].endswith("LoadBalancers/CreateLoadBalancer")
    assert access[0]["duration_ms"] > 0
    assert access[0]["service"] == "api" and access[0]["level"] == "INFO"

    # The worker: the command's flow and its completion, and nothing of it without the id.
    # ACTIVE is written by the flow's last task; the worker logs the command applied after it has completed the
    # command (a loaded machine shows the gap).
    def worker_lines() -> list[dict[str, Any]]:
        lines = [e for e in json_lines(logs / "worker.log") if e.get("request_id") == request_id]
        done = any(e["message"].startswith("applied RESOURCE_KIND_LOAD_BALANCER OPERATION_CREATE") for e in lines)
        return lines if done else []

    worker = wait_for("the worker's line of the command applied", worker_lines)
    messages = " | ".join(e["message"] for e in worker)
    assert any(e["message"].startswith("create-load-balancer ") for e in worker), messages
    assert any(e["message"].startswith("applied RESOURCE_KIND_LOAD_BALANCER OPERATION_CREATE") for e in worker)

    # The agent: the configuration the worker pushed, in the agent's own log.
    def agent_lines() -> list[dict[str, Any]]:
        return [e for path in agent_logs(traced_mesh) for e in json_lines(path) if e.get("request_id") == request_id]

    agent = wait_for("the agent's lines", agent_lines)
    assert any("configuration" in e["message"] and lb_id in e["message"] for e in agent), agent
    assert {e["service"] for e in agent} == {"amphora-agent"}

    # The trace: the API's server span carries the request id; its trace holds the edge, the API, the worker and
    # the agent, each process's first span a child of a span of the process before it.
    def api_span() -> list[dict[str, Any]]:
        return [
            span
            for span in receiver.spans()
            if span["service"] == "octavia-mesh-api" and span["attributes"].get("octavia.request_id") == request_id
        ]

    (root,) = wait_for("the API's span", api_span)

    def whole_trace() -> list[dict[str, Any]] | None:
        spans = [span for span in receiver.spans() if span["trace_id"] == root["trace_id"]]
        services = {span["service"] for span in spans}
        wanted = {"octavia-mesh-edge", "octavia-mesh-api", "octavia-mesh-worker", "octavia-mesh-amphora-agent"}
        # The worker's consumer span ends last (after the flow and the command's completion): wait for it too.
        applied = any(s["service"] == "octavia-mesh-worker" and s["name"].startswith("apply ") for s in spans)
        return spans if wanted <= services and applied else None

    spans = wait_for("spans of the edge, the API, the worker and the agent in one trace", whole_trace)
    by_id = {span["span_id"]: span for span in spans}

    def parent_service(span: dict[str, Any]) -> str | None:
        parent = by_id.get(span["parent_span_id"])
        return parent["service"] if parent else None

    def of(service: str) -> list[dict[str, Any]]:
        return [span for span in spans if span["service"] == f"octavia-mesh-{service}"]

    assert any(not span["parent_span_id"] for span in of("edge")), "the edge's span starts the trace"
    assert parent_service(root) == "octavia-mesh-edge", "the API's span is a child of the edge's"
    consumer = [span for span in of("worker") if span["name"].startswith("apply ")]
    assert parent_service(consumer[0]) == "octavia-mesh-api", "the worker continues the API's trace"
    assert {parent_service(span) for span in of("amphora-agent")} == {"octavia-mesh-worker"}, (
        "agent spans are the worker's"
    )
    assert any(span["name"].endswith("AmphoraAgent/PutConfig") for span in of("amphora-agent")), of("amphora-agent")


def test_a_native_grpc_call_gets_its_request_id_and_is_logged_with_it(traced_mesh: Mesh) -> None:
    with grpc.insecure_channel(traced_mesh.endpoint.removeprefix("http://")) as channel:
        stub = loadbalancers_pb2_grpc.LoadBalancersStub(channel)
        _, call = stub.ListLoadBalancers.with_call(requests_pb2.CollectionRequest(), timeout=30)
    request_id = dict(call.initial_metadata())["x-openstack-request-id"]
    assert request_id.startswith("req-")

    def logged() -> list[dict[str, Any]]:
        return [e for e in json_lines(traced_mesh.logs / "api.log") if e.get("request_id") == request_id]

    (line,) = wait_for("the API's access line", logged)
    assert (
        line["method"] == "gRPC"
        and line["path"] == line["rpc"] == "/octavia_mesh.lbaas.v2.LoadBalancers/ListLoadBalancers"
    )
    assert line["status"] == 200

    def edge_line() -> list[dict[str, Any]]:
        return [e for e in json_lines(traced_mesh.logs / "envoy-access.log") if e.get("request_id") == request_id]

    (edge,) = wait_for("the edge's access line", edge_line)
    assert edge["grpc_method"] == line["rpc"] and int(edge["grpc_status"]) == 0
