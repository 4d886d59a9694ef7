"""The REST edge's HTTP/1.1 bridge to the API (``octavia_mesh.api.bridge``), on the real Envoy and mesh.

Envoy carries transcoded REST calls to each API process's bridge listener; native gRPC calls and the secret
store keep the gRPC port. The answers are pinned elsewhere (every test through ``envoy_rest``, and
``test_fast_edge.py`` compares them with the gRPC path's); here: which way each call goes, and what the bridge
listener does with what Envoy would never send.
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
from support import PROJECT, Rest, assert_fault

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.protos.lbaas.v2 import loadbalancers_pb2_grpc, requests_pb2

LBS = "/v2/lbaas/loadbalancers"
GET_LB = "/octavia_mesh.lbaas.v2.LoadBalancers/GetLoadBalancer"


def _envoy_count(mesh: Mesh, cluster: str) -> int:
    admin = mesh.ports.ports["envoy-admin"]
    name = f"cluster.{cluster}.upstream_rq_completed"
    stats = requests.get(f"http://127.0.0.1:{admin}/stats?filter=^{name}$", timeout=10).text
    return int(stats.split(":")[1]) if stats.strip() else 0


def test_rest_goes_over_the_bridge_and_native_grpc_keeps_its_port(envoy_mesh: Mesh, envoy_rest: Rest) -> None:
    bridged, native = _envoy_count(envoy_mesh, "api_bridge"), _envoy_count(envoy_mesh, "api")
    lb = envoy_rest.create_lb(name="bridge-way")
    assert envoy_rest.get(f"{LBS}/{lb['id']}").json()["loadbalancer"]["name"] == "bridge-way"
    assert_fault(envoy_rest.get(f"{LBS}/{uuid.uuid4()}"), 404)  # a fault comes back in Octavia's shape
    assert _envoy_count(envoy_mesh, "api_bridge") >= bridged + 3
    assert _envoy_count(envoy_mesh, "api") == native

    host = envoy_rest.base_url.removeprefix("http://")
    with grpc.insecure_channel(host) as channel:
        stub = loadbalancers_pb2_grpc.LoadBalancersStub(channel)
        reply = stub.GetLoadBalancer(requests_pb2.ResourceRequest(id=lb["id"]), timeout=10)
        assert json.loads(reply.data)["loadbalancer"]["id"] == lb["id"]
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetLoadBalancer(requests_pb2.ResourceRequest(id=str(uuid.uuid4())), timeout=10)
    # A native client still gets a gRPC status with Octavia's message, which the bridge could not carry.
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND and missing.value.details().endswith(" not found.")
    assert _envoy_count(envoy_mesh, "api") == native + 2


def test_secret_store_keeps_the_grpc_port_for_accept(envoy_mesh: Mesh, envoy_rest: Rest) -> None:
    """The reverse bridge overwrites ``Accept``, by which a secret's payload is chosen: those calls stay on gRPC."""
    native = _envoy_count(envoy_mesh, "api")
    store = Rest(envoy_rest.base_url, {"X-Project-Id": PROJECT})
    created = store.post(
        "/v1/secrets",
        {
            "name": "bridge-accept",
            "payload": "AAFiaW5hcnk=",
            "payload_content_type": "application/octet-stream",
            "payload_content_encoding": "base64",
        },
    )
    assert created.status_code == 201, created.text
    ref = created.json()["secret_ref"]
    payload = store.session.get(ref + "/payload", headers={"Accept": "application/octet-stream"}, timeout=10)
    assert payload.status_code == 200 and payload.content == b"\x00\x01binary"
    assert payload.headers["content-type"] == "application/octet-stream"
    assert _envoy_count(envoy_mesh, "api") >= native + 2


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


def _post(method: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {method} HTTP/1.1\r\nhost: api\r\ncontent-type: application/x-protobuf\r\n"
        f"content-length: {len(body)}\r\nx-octavia-path: /v2/lbaas/loadbalancers\r\n{extra}\r\n"
    ).encode() + body


def _answer(body: bytes) -> object:
    reply = httpbody_pb2.HttpBody.FromString(body)
    assert reply.content_type == "application/json"
    return json.loads(reply.data)


def test_bridge_listener_answers_statuses_in_order_and_refuses_what_envoy_never_sends(
    envoy_mesh: Mesh, envoy_rest: Rest
) -> None:
    port = envoy_mesh.ports.ports["api-bridge"]
    lb = envoy_rest.create_lb(name="bridge-direct")
    found = requests_pb2.ResourceRequest(id=lb["id"]).SerializeToString()
    missing_id = str(uuid.uuid4())
    missing = requests_pb2.ResourceRequest(id=missing_id).SerializeToString()
    # Pipelined: a list (slower) then a show, answered in the order asked, each with its REST status.
    listing = requests_pb2.CollectionRequest().SerializeToString()
    answers = _exchange(
        port,
        _post("/octavia_mesh.lbaas.v2.LoadBalancers/ListLoadBalancers", listing)
        + _post(GET_LB, found)
        + _post(GET_LB, missing),
        count=3,
    )
    assert [(status, headers["x-http-code"]) for status, headers, _, _ in answers] == [
        (200, "200"),
        (200, "200"),
        (200, "404"),
    ]
    # The reply's size for the reverse bridge's framing, and gRPC's status as a trailer for the transcoder.
    for _, headers, body, trailers in answers:
        assert headers["content-type"] == "application/x-protobuf" and int(headers["x-message-size"]) == len(body)
        assert trailers == {"grpc-status": "0"}
    listed = _answer(answers[0][2])
    assert isinstance(listed, dict) and lb["id"] in [x["id"] for x in listed["loadbalancers"]]
    shown = _answer(answers[1][2])
    assert isinstance(shown, dict) and shown["loadbalancer"]["id"] == lb["id"]
    # An error is the body the transcoder makes of a gRPC status, which the edge's Lua turns into a fault.
    fault = _answer(answers[2][2])
    assert isinstance(fault, dict) and fault["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert fault["message"] == f"Load Balancer {missing_id} not found."

    [(status, headers, body, _)] = _exchange(port, _post("/octavia_mesh.lbaas.v2.LoadBalancers/Nothing", b""))
    assert (status, headers["x-http-code"]) == (200, "501")
    assert _answer(body) == {"code": grpc.StatusCode.UNIMPLEMENTED.value[0], "message": "Method not found!"}

    # Not HTTP, and headers beyond the API's metadata limit: a 400, and the connection closed.
    assert [a[0] for a in _exchange(port, b"\x16\x03\x01 not http\r\n\r\n", count=2)] == [400]
    oversized = _post(GET_LB, found, extra=f"x-filler: {'a' * (130 * 1024)}\r\n")
    assert [a[0] for a in _exchange(port, oversized, count=2)] == [400]

    # None of it hurt the listener: the edge still answers through it.
    assert envoy_rest.get(f"{LBS}/{lb['id']}").status_code == 200
