"""The API's unary gRPC calls over HTTP/1.1 (``octavia_mesh.api.bridge``), on the real Envoy and mesh.

Envoy sends every unary call of the edge services, REST (transcoded) and native gRPC, to each API process's
bridge listener; health and reflection keep the gRPC port. The answers are pinned elsewhere (every test through
``envoy_rest``, and ``test_fast_edge.py`` compares them with the gRPC server's); here: which way calls go, the
bridge's gRPC framing and trailers, and what it does with what Envoy would never send.
"""

from __future__ import annotations

import json
import socket
import uuid

import grpc
import httptools
import pytest
import requests
from google.api import httpbody_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import Rest, assert_fault

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.protos.lbaas.v2 import loadbalancers_pb2_grpc, requests_pb2

LBS = "/v2/lbaas/loadbalancers"
GET_LB = "/octavia_mesh.lbaas.v2.LoadBalancers/GetLoadBalancer"


def _envoy_count(mesh: Mesh, cluster: str) -> int:
    admin = mesh.ports.ports["envoy-admin"]
    name = f"cluster.{cluster}.upstream_rq_completed"
    stats = requests.get(f"http://127.0.0.1:{admin}/stats?filter=^{name}$", timeout=10).text
    return int(stats.split(":")[1]) if stats.strip() else 0


def test_rest_and_native_grpc_go_over_the_bridge(envoy_mesh: Mesh, envoy_rest: Rest) -> None:
    bridged, native = _envoy_count(envoy_mesh, "api_bridge"), _envoy_count(envoy_mesh, "api")
    lb = envoy_rest.create_lb(name="bridge-way")
    assert envoy_rest.get(f"{LBS}/{lb['id']}").json()["loadbalancer"]["name"] == "bridge-way"
    assert_fault(envoy_rest.get(f"{LBS}/{uuid.uuid4()}"), 404)  # a fault comes back in Octavia's shape

    host = envoy_rest.base_url.removeprefix("http://")
    with grpc.insecure_channel(host) as channel:
        stub = loadbalancers_pb2_grpc.LoadBalancersStub(channel)
        reply = stub.GetLoadBalancer(requests_pb2.ResourceRequest(id=lb["id"]), timeout=10)
        assert json.loads(reply.data)["loadbalancer"]["id"] == lb["id"]
        missing_id = str(uuid.uuid4())
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetLoadBalancer(requests_pb2.ResourceRequest(id=missing_id), timeout=10)
        # Health (a stream's home) stays on the gRPC server.
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    # A native client gets its gRPC status with Octavia's message, from the bridge's trailers.
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing.value.details() == f"Load Balancer {missing_id} not found."
    assert _envoy_count(envoy_mesh, "api_bridge") >= bridged + 5
    assert _envoy_count(envoy_mesh, "api") == native + 1


class _Responses:
    """httptools' callbacks: each response's status, headers, body and trailers."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.done: list[tuple[int, dict[str, str], bytes, dict[str, str]]] = []
        self._headers: dict[str, str] = {}
        self._trailers: dict[str, str] = {}
        self._body = b""
        self._in_body = False

    def on_message_begin(self) -> None:
        self._headers, self._trailers, self._body, self._in_body = {}, {}, b"", False

    def on_header(self, name: bytes, value: bytes) -> None:
        (self._trailers if self._in_body else self._headers)[name.decode().lower()] = value.decode()

    def on_headers_complete(self) -> None:
        self._in_body = True

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), self._headers, self._body, self._trailers))


def _exchange(port: int, raw: bytes, count: int = 1) -> list[tuple[int, dict[str, str], bytes, dict[str, str]]]:
    """Send ``raw`` to the bridge listener; the responses read back (at most ``count``, until it closes)."""
    responses = _Responses()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        while len(responses.done) < count:
            chunk = sock.recv(65536)
            if not chunk:
                break
            responses.parser.feed_data(chunk)
    return responses.done


def _framed(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def _post(method: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {method} HTTP/1.1\r\nhost: api\r\ncontent-type: application/grpc\r\nte: trailers\r\n"
        f"content-length: {len(body)}\r\nx-octavia-path: /v2/lbaas/loadbalancers\r\n{extra}\r\n"
    ).encode() + body


def _answer(body: bytes) -> object:
    assert body[0] == 0 and int.from_bytes(body[1:5], "big") == len(body) - 5
    reply = httpbody_pb2.HttpBody.FromString(body[5:])
    assert reply.content_type == "application/json"
    return json.loads(reply.data)


def test_bridge_listener_answers_grpc_in_order_and_refuses_what_envoy_never_sends(
    envoy_mesh: Mesh, envoy_rest: Rest
) -> None:
    port = envoy_mesh.ports.ports["api-bridge"]
    lb = envoy_rest.create_lb(name="bridge-direct")
    found = _framed(requests_pb2.ResourceRequest(id=lb["id"]).SerializeToString())
    missing_id = str(uuid.uuid4())
    missing = _framed(requests_pb2.ResourceRequest(id=missing_id).SerializeToString())
    listing = _framed(requests_pb2.CollectionRequest().SerializeToString())
    # Pipelined: a list (slower) then two shows, answered in the order asked.
    answers = _exchange(
        port,
        _post("/octavia_mesh.lbaas.v2.LoadBalancers/ListLoadBalancers", listing)
        + _post(GET_LB, found)
        + _post(GET_LB, missing),
        count=3,
    )
    assert [(status, headers["x-http-code"], trailers) for status, headers, _, trailers in answers] == [
        (200, "200", {"grpc-status": "0"}),
        (200, "200", {"grpc-status": "0"}),
        (200, "404", {"grpc-status": "5", "grpc-message": f"Load Balancer {missing_id} not found."}),
    ]
    assert all(headers["content-type"] == "application/grpc" for _, headers, _, _ in answers)
    listed = _answer(answers[0][2])
    assert isinstance(listed, dict) and lb["id"] in [x["id"] for x in listed["loadbalancers"]]
    shown = _answer(answers[1][2])
    assert isinstance(shown, dict) and shown["loadbalancer"]["id"] == lb["id"]
    assert answers[2][2] == b""  # an error carries no message, only its status

    # An unknown method, and a body that is not one uncompressed message: gRPC's statuses.
    answers = _exchange(
        port,
        _post("/octavia_mesh.lbaas.v2.LoadBalancers/Nothing", _framed(b""))
        + _post(GET_LB, found[:-1])
        + _post(GET_LB, b"\x01" + found[1:]),
        count=3,
    )
    assert [trailers["grpc-status"] for _, _, _, trailers in answers] == ["12", "13", "13"]

    # Not HTTP, and headers beyond the API's metadata limit: a 400, and the connection closed.
    assert [a[0] for a in _exchange(port, b"\x16\x03\x01 not http\r\n\r\n", count=2)] == [400]
    oversized = _post(GET_LB, found, extra=f"x-filler: {'a' * (130 * 1024)}\r\n")
    assert [a[0] for a in _exchange(port, oversized, count=2)] == [400]

    # None of it hurt the listener: the edge still answers through it.
    assert envoy_rest.get(f"{LBS}/{lb['id']}").status_code == 200
