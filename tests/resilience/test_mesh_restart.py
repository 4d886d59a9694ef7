"""Stopping the whole mesh stops its amphorae; starting it again brings every load balancer back serving."""

from __future__ import annotations

import http.client
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import Rest, start_mesh

from octavia_mesh.cli.mesh import Mesh


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's API
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"hi\n")

    def log_message(self, *args: Any) -> None:
        pass


def serves(address: str, port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(address, port, timeout=1)
        conn.request("GET", "/")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from start_mesh(tmp_path_factory, "noauth", default_project="restart", default_provider="amphora")


def test_load_balancers_come_back_after_a_full_restart(restartable: Mesh) -> None:
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    try:
        api = Rest(restartable.endpoint)
        tree = {
            "loadbalancer": {
                "name": "survivor",
                "vip_subnet_id": restartable.local_subnet(),
                "listeners": [
                    {
                        "protocol": "HTTP",
                        "protocol_port": 8090,
                        "default_pool": {
                            "protocol": "HTTP",
                            "lb_algorithm": "ROUND_ROBIN",
                            "members": [{"address": "127.0.0.1", "protocol_port": backend.server_address[1]}],
                        },
                    }
                ],
            }
        }
        lb = api.ok("POST", "/v2/lbaas/loadbalancers", tree)["loadbalancer"]
        api.wait_lb_active(lb["id"])
        assert serves(lb["vip_address"], 8090)
        (old,) = api.ok("GET", f"/v2/octavia/amphorae?loadbalancer_id={lb['id']}")["amphorae"]

        restartable.stop()  # powers the "hypervisor" off too
        assert not serves(lb["vip_address"], 8090)
        restartable.start()

        api = Rest(restartable.endpoint)
        deadline = time.monotonic() + 30
        while not serves(lb["vip_address"], 8090):
            assert time.monotonic() < deadline, "the load balancer did not come back"
            time.sleep(0.1)
        api.wait_lb_active(lb["id"])
        (new,) = api.ok("GET", f"/v2/octavia/amphorae?loadbalancer_id={lb['id']}")["amphorae"]
        assert new["id"] != old["id"] and new["status"] == "ALLOCATED"
        assert api.delete(f"/v2/lbaas/loadbalancers/{lb['id']}?cascade=true").status_code == 204
    finally:
        backend.shutdown()
        backend.server_close()
