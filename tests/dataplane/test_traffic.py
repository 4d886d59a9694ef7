"""Real traffic through real HAProxy: load balancers built by the amphora provider, backends on loopback."""

from __future__ import annotations

import collections
import http.client
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import Rest, start_mesh

from octavia_mesh.cli.mesh import Mesh

LBS = "/v2/lbaas/loadbalancers"


class Backend:
    """An HTTP server on a loopback address that answers with its own name and the headers it received."""

    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's API
                backend.seen.append(dict(self.headers))
                body = f"{name}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.name = name
        self.seen: list[dict[str, str]] = []
        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.address, self.port = self.server.server_address[:2]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def dataplane_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from start_mesh(tmp_path_factory, "noauth", default_project="dataplane", default_provider="amphora")


@pytest.fixture(scope="module")
def api(dataplane_mesh: Mesh) -> Rest:
    return Rest(dataplane_mesh.endpoint)


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    started = [Backend(f"member{i}") for i in range(3)]
    yield started
    for backend in started:
        backend.close()


def get(address: str, port: int, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def wait_serving(address: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on {address}:{port}")


def local_subnet(api: Rest) -> str:
    (subnet,) = api.ok("GET", "/v2.0/subnets")["subnets"]
    return subnet["id"]


def test_round_robin_and_weights(api: Rest, backends: list[Backend]) -> None:
    started = time.monotonic()
    lb = api.ok("POST", LBS, {"loadbalancer": {"name": "traffic", "vip_subnet_id": local_subnet(api)}})["loadbalancer"]
    assert lb["vip_address"].startswith("127.")
    lb = api.wait_lb_active(lb["id"])
    listener = api.ok(
        "POST",
        "/v2/lbaas/listeners",
        {"listener": {"loadbalancer_id": lb["id"], "protocol": "HTTP", "protocol_port": 8080}},
    )["listener"]
    api.wait_lb_active(lb["id"])
    pool = api.ok(
        "POST",
        "/v2/lbaas/pools",
        {"pool": {"listener_id": listener["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}},
    )["pool"]
    api.wait_lb_active(lb["id"])
    api.ok(
        "PUT",
        f"/v2/lbaas/pools/{pool['id']}/members",
        {
            "members": [
                {"address": b.address, "protocol_port": b.port, "weight": w}
                for b, w in zip(backends, (1, 1, 2), strict=True)
            ]
        },
        status=202,
    )
    api.wait_lb_active(lb["id"])
    wait_serving(lb["vip_address"], 8080)
    print(f"create -> traffic: {time.monotonic() - started:.2f}s")
    answers = collections.Counter(get(lb["vip_address"], 8080)[1].strip() for _ in range(40))
    assert answers == {"member0": 10, "member1": 10, "member2": 20}
    assert api.delete(f"{LBS}/{lb['id']}?cascade=true").status_code == 204
    api.wait_status(f"{LBS}/{lb['id']}", "loadbalancer", "DELETED")
    with pytest.raises(OSError):
        socket.create_connection((lb["vip_address"], 8080), timeout=0.5)
