"""Stopping the whole mesh stops its amphorae; starting it again brings every load balancer back serving. With
``keep_amphorae`` (``up --keep-amphorae``) they serve on through the restart and the new mesh adopts them."""

from __future__ import annotations

import datetime as dt
import http.client
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from support import Rest, mesh_engine, start_mesh

from octavia_mesh.cli.mesh import Mesh, run_down
from octavia_mesh.common.db.models import AmphoraHealth


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


def _tree(subnet: str, port: int, member_port: int) -> dict[str, Any]:
    return {
        "loadbalancer": {
            "name": "kept",
            "vip_subnet_id": subnet,
            "listeners": [
                {
                    "protocol": "HTTP",
                    "protocol_port": port,
                    "default_pool": {
                        "protocol": "HTTP",
                        "lb_algorithm": "ROUND_ROBIN",
                        "members": [{"address": "127.0.0.1", "protocol_port": member_port}],
                    },
                }
            ],
        }
    }


@pytest.mark.timeout(300)
def test_kept_amphorae_serve_through_a_restart_and_are_adopted(restartable: Mesh) -> None:
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    stop = threading.Event()
    failures: list[str] = []
    answered = [0]
    try:
        api = Rest(restartable.endpoint)
        tree = _tree(restartable.local_subnet(), 8091, backend.server_address[1])
        lb = api.ok("POST", "/v2/lbaas/loadbalancers", tree)["loadbalancer"]
        api.wait_lb_active(lb["id"])
        (amphora,) = api.ok("GET", f"/v2/octavia/amphorae?loadbalancer_id={lb['id']}")["amphorae"]

        def poll() -> None:
            while not stop.wait(0.02):
                if serves(lb["vip_address"], 8091):
                    answered[0] += 1
                else:
                    failures.append(time.strftime("%X"))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        restartable.stop(keep_amphorae=True)  # every service stops; the amphora goes on serving
        time.sleep(1.0)
        down_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        restartable.start()  # same state directory: same ports, so the amphora's heartbeats find the new mesh

        api = Rest(restartable.endpoint)
        engine = mesh_engine(restartable)
        deadline = time.monotonic() + 30
        while True:  # the new health service hears the same amphora (adopted, not rebuilt)
            with engine.connect() as conn:
                heard = conn.execute(
                    select(AmphoraHealth.last_update).where(AmphoraHealth.amphora_id == amphora["id"])
                ).scalar()
            if heard is not None and heard > down_at:
                break
            assert time.monotonic() < deadline, "the kept amphora's heartbeats did not reach the new mesh"
            time.sleep(0.2)
        engine.dispose()
        time.sleep(3.0)  # and nothing decides to rebuild it meanwhile
        (now,) = api.ok("GET", f"/v2/octavia/amphorae?loadbalancer_id={lb['id']}")["amphorae"]
        assert (now["id"], now["status"]) == (amphora["id"], "ALLOCATED")
        assert api.ok("GET", f"/v2/lbaas/loadbalancers/{lb['id']}")["loadbalancer"]["provisioning_status"] == "ACTIVE"
        stop.set()
        poller.join()
        assert answered[0] > 50 and failures == [], f"{len(failures)} of {answered[0]} polls failed: {failures[:5]}"

        # Stopped and kept again: ``octavia-mesh down`` stops what is left.
        restartable.stop(keep_amphorae=True)
        assert serves(lb["vip_address"], 8091)
        assert run_down(restartable.state) == 0
        assert not serves(lb["vip_address"], 8091)
    finally:
        stop.set()
        backend.shutdown()
        backend.server_close()
