"""Create benchmark: single-call create -> first request through the VIP, with the spare pool on and off, one run.

    uv run python bench/create_bench.py [--runs 10] [--spares 2]

Two meshes, one after the other on the same machine: one with ``--spares`` spare amphorae
(``OCTAVIA_MESH_WORKER_SPARE_AMPHORAE``), one with none (every create boots its amphora). Each run creates a
load balancer with a listener and a member in one call (Octavia's single-call create) and polls its VIP every
5 ms on fresh connections until the member answers through it; the time from the POST to that answer is the
figure. One create on each mesh warms it up first and is not counted. With the pool on, each run waits until
the pool is full again before the next create (a burst larger than the pool is
tests/health/test_fast_healing.py's). Load balancers are deleted after each run. Everything
stays on 127.0.0.0/8; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from failover_bench import LBS, Hello, QuietServer, api, pct, wait_for  # noqa: E402

from octavia_mesh.cli.mesh import Mesh, MeshOptions  # noqa: E402
from octavia_mesh.cli.processes import free_port  # noqa: E402
from octavia_mesh.common.db.models import Amphora  # noqa: E402


def answered(address: str, port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(address, port, timeout=0.5)
        conn.request("GET", "/")
        good = conn.getresponse().status == 200
        conn.close()
        return good
    except (OSError, http.client.HTTPException):
        return False


def run_mesh(spares: int, runs: int, member_port: int) -> list[float]:
    """Create -> first request, ``runs`` times, on a mesh with ``spares`` spare amphorae."""
    with tempfile.TemporaryDirectory() as tmp:
        mesh = Mesh(
            MeshOptions(
                host="127.0.0.1",
                port=free_port(),
                state_dir=Path(tmp) / "mesh",
                database_url=None,
                nats_url=None,
                auth_strategy="noauth",
                start_timeout=60.0,
                default_project="bench",
                default_provider="amphora",
                service_env={"OCTAVIA_MESH_WORKER_SPARE_AMPHORAE": str(spares)},
            )
        )
        mesh.start()
        db = create_engine(f"sqlite:///{mesh.state / 'octavia-mesh.db'}", connect_args={"timeout": 30})

        def pool() -> int:
            with db.connect() as conn:
                return int(
                    conn.scalar(
                        select(func.count())
                        .select_from(Amphora)
                        .where(Amphora.status == "READY", Amphora.load_balancer_id.is_(None))
                    )
                    or 0
                )

        out: list[float] = []
        try:
            for run in range(-1, runs):  # run -1 warms the API and the worker up (both meshes alike): not counted
                wait_for(lambda: pool() >= spares, 120, "the pool to be full", interval=0.1)
                time.sleep(0.5)
                vip = f"127.226.{random.randint(64, 250)}.{random.randint(2, 250)}"
                body = {
                    "loadbalancer": {
                        "name": f"create-bench-{run}",
                        "vip_subnet_id": mesh.local_subnet(),
                        "vip_address": vip,
                        "listeners": [
                            {
                                "protocol": "HTTP",
                                "protocol_port": 80,
                                "default_pool": {
                                    "protocol": "HTTP",
                                    "lb_algorithm": "ROUND_ROBIN",
                                    "members": [{"address": "127.0.0.1", "protocol_port": member_port}],
                                },
                            }
                        ],
                    }
                }
                asked = time.monotonic()
                status, reply = api(mesh.endpoint, "POST", LBS, body)
                assert status == 201, reply
                wait_for(lambda v=vip: answered(v, 80), 60, "the first request through the VIP", interval=0.005)
                took = time.monotonic() - asked
                if run >= 0:
                    out.append(took)
                print(f"spares {spares}, create {run + 1}: first request after {took:.3f}s")
                lb_id = reply["loadbalancer"]["id"]
                wait_for(
                    lambda i=lb_id: (
                        api(mesh.endpoint, "GET", f"{LBS}/{i}")[1]["loadbalancer"]["provisioning_status"] == "ACTIVE"
                    ),
                    60,
                    "ACTIVE",
                )
                api(mesh.endpoint, "DELETE", f"{LBS}/{lb_id}?cascade=true")
        finally:
            db.dispose()
            mesh.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--spares", type=int, default=2)
    args = parser.parse_args()
    backend = QuietServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    try:
        pooled = run_mesh(args.spares, args.runs, backend.server_address[1])
        booted = run_mesh(0, args.runs, backend.server_address[1])
    finally:
        backend.shutdown()
    print()
    print(f"Single-call create -> first request through the VIP, {args.runs} runs each:")
    for name, values in ((f"pool of {args.spares} spares", pooled), ("no pool (boot per create)", booted)):
        print(f"  {name:<28} p50 {pct(values, 0.5):6.3f} s   p99 {pct(values, 0.99):6.3f} s")
    print(f"Ratio (p50): pool / no pool = {statistics.median(pooled) / statistics.median(booted):.2f}")
    print("Targets (issue 9): p50 <= 0.3 s, p99 <= 1 s. Octavia: 40 s to minutes (a VM boot).")


if __name__ == "__main__":
    main()
