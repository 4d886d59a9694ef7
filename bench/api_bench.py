"""API benchmark: Octavia Mesh (REST through Envoy, and native gRPC) against real Octavia, in one run.

    uv run python bench/api_bench.py [--lbs 1000] [--get-n 2000] [--list-n 30] [--create-n 200]
                                     [--concurrency 8] [--no-peer] [--database-url URL]

Measures, for each target: GET one load balancer, GET the list with ``limit=1000`` over ``--lbs`` load
balancers, and POST a load balancer (time to 201), sequentially (p50/p99 latency and requests/s) and with
``--concurrency`` threads (requests/s). Real Octavia 19.0.0 is started with ``../shared/tools/octavia-peer``
(API and worker in one process, SQLite, no-op drivers) when that tool is present; ratios are ours / Octavia's.
Every loop is bounded by count; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import grpc
from google.api import httpbody_pb2

from octavia_mesh.cli.mesh import Mesh, MeshOptions
from octavia_mesh.cli.processes import free_port
from octavia_mesh.protos.lbaas.v2 import loadbalancers_pb2_grpc, requests_pb2

PROJECT = "e3cd678b11784734bc366148aa37580e"
SUBNET = "11111111-1111-1111-1111-111111111111"
PEER = Path(__file__).resolve().parents[2] / "shared" / "tools" / "octavia-peer"
LB_BODY = {"loadbalancer": {"vip_subnet_id": SUBNET, "project_id": PROJECT}}


class Http:
    """One keep-alive HTTP/1.1 connection per thread (reconnecting when the server closes it)."""

    def __init__(self, base: str) -> None:
        parts = urllib.parse.urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.local = threading.local()

    def call(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                data = None if body is None else json.dumps(body)
                headers = {"Accept": "application/json", "Content-Type": "application/json"}
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                if response.will_close:
                    conn.close()
                    self.local.conn = None
                return response.status, raw
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


def timed(fn: Callable[[], None], n: int) -> dict[str, float]:
    samples = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    samples.sort()
    return {
        "rps": n / total,
        "p50_ms": 1000 * statistics.median(samples),
        "p99_ms": 1000 * samples[min(len(samples) - 1, int(0.99 * len(samples)))],
    }


def concurrent_rps(fn: Callable[[], None], n: int, threads: int) -> float:
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: fn(), range(n)))
    return n / (time.perf_counter() - start)


def seed(http: Http, count: int) -> str:
    """Create load balancers until ``count`` exist; returns one id. Waits until all are ACTIVE."""
    status, raw = http.call("GET", "/v2/lbaas/loadbalancers?fields=id&limit=1000")
    have = len(json.loads(raw)["loadbalancers"]) if status == 200 else 0

    def create(_: int) -> None:
        status, raw = http.call("POST", "/v2/lbaas/loadbalancers", LB_BODY)
        assert status == 201, raw

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(create, range(max(0, count - have))))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        _, raw = http.call("GET", "/v2/lbaas/loadbalancers?fields=id&fields=provisioning_status&limit=1000")
        lbs = json.loads(raw)["loadbalancers"]
        if len(lbs) >= count and all(lb["provisioning_status"] == "ACTIVE" for lb in lbs):
            return lbs[0]["id"]
        time.sleep(0.5)
    raise AssertionError("seeding did not finish")


def rest_suite(base: str, args: argparse.Namespace) -> dict[str, object]:
    http = Http(base)
    lb_id = seed(http, args.lbs)

    def get_one() -> None:
        status, _ = http.call("GET", f"/v2/lbaas/loadbalancers/{lb_id}")
        assert status == 200

    def get_list() -> None:
        status, raw = http.call("GET", "/v2/lbaas/loadbalancers?limit=1000")
        assert status == 200 and len(json.loads(raw)["loadbalancers"]) == min(1000, args.lbs)

    created: list[str] = []

    def create() -> None:
        status, raw = http.call("POST", "/v2/lbaas/loadbalancers", LB_BODY)
        assert status == 201, raw
        created.append(json.loads(raw)["loadbalancer"]["id"])

    out = {
        "get": timed(get_one, args.get_n),
        "get_concurrent_rps": concurrent_rps(get_one, args.get_n, args.concurrency),
        "list_1000": timed(get_list, args.list_n),
        "create": timed(create, args.create_n),
        "create_concurrent_rps": concurrent_rps(create, args.create_n, args.concurrency),
    }
    cleanup(http, created)
    return out


def cleanup(http: Http, ids: list[str]) -> None:
    for lb_id in ids:  # bounded by what this run created; waits for ACTIVE first (409 while pending)
        for _ in range(200):
            status, _ = http.call("DELETE", f"/v2/lbaas/loadbalancers/{lb_id}")
            if status in (204, 404):
                break
            time.sleep(0.05)


def grpc_suite(target: str, args: argparse.Namespace) -> dict[str, object]:
    stub = loadbalancers_pb2_grpc.LoadBalancersStub(grpc.insecure_channel(target))
    _, raw = Http("http://" + target).call("GET", "/v2/lbaas/loadbalancers?fields=id&limit=1")
    lb_id = json.loads(raw)["loadbalancers"][0]["id"]
    body = httpbody_pb2.HttpBody(content_type="application/json", data=json.dumps(LB_BODY).encode())
    created: list[str] = []

    def create() -> None:
        created.append(
            json.loads(stub.CreateLoadBalancer(requests_pb2.CollectionRequest(body=body)).data)["loadbalancer"]["id"]
        )

    out = {
        "get": timed(lambda: stub.GetLoadBalancer(requests_pb2.ResourceRequest(id=lb_id)), args.get_n),
        "get_concurrent_rps": concurrent_rps(
            lambda: stub.GetLoadBalancer(requests_pb2.ResourceRequest(id=lb_id)), args.get_n, args.concurrency
        ),
        "list_1000": timed(
            lambda: stub.ListLoadBalancers(requests_pb2.CollectionRequest(query="limit=1000")), args.list_n
        ),
        "create": timed(create, args.create_n),
    }
    cleanup(Http("http://" + target), created)
    return out


def start_peer(port: int) -> bool:
    run = PEER / "run.sh"
    if not run.exists():
        return False
    done = subprocess.run([str(run), str(port), "--fresh"], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        print(f"octavia peer did not start: {done.stderr[-500:]}")
        return False
    return True


def stop_peer(port: int) -> None:
    subprocess.run([str(PEER / "stop.sh"), str(port)], capture_output=True, timeout=60, check=False)


def fmt(row: dict[str, float]) -> str:
    return f"{row['rps']:8.1f} req/s   p50 {row['p50_ms']:7.2f} ms   p99 {row['p99_ms']:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lbs", type=int, default=1000)
    parser.add_argument("--get-n", type=int, default=2000)
    parser.add_argument("--list-n", type=int, default=30)
    parser.add_argument("--create-n", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as state:
        mesh = Mesh(
            MeshOptions(
                host="127.0.0.1",
                port=free_port(),
                state_dir=Path(state),
                database_url=args.database_url,
                nats_url=None,
                auth_strategy="noauth",
                start_timeout=60.0,
                default_provider="noop",  # the API's own speed: Octavia's peer also runs no-op drivers
            )
        )
        mesh.start()
        try:
            results["mesh_rest"] = rest_suite(mesh.endpoint, args)
            results["mesh_grpc"] = grpc_suite(mesh.endpoint.removeprefix("http://"), args)
        finally:
            mesh.stop()
    peer_port = free_port()
    if not args.no_peer and start_peer(peer_port):
        try:
            results["octavia_rest"] = rest_suite(f"http://127.0.0.1:{peer_port}", args)
        finally:
            stop_peer(peer_port)

    print(
        f"\nAPI benchmark — {args.lbs} load balancers, {os.cpu_count()} cores, "
        f"GET x{args.get_n}, list(limit=1000) x{args.list_n}, create x{args.create_n}, "
        f"concurrency {args.concurrency}\n"
    )
    for name, suite in results.items():
        print(name)
        for op in ("get", "list_1000", "create"):
            print(f"  {op:<10} {fmt(suite[op])}")  # type: ignore[index]
        print(f"  get      x{args.concurrency} threads: {suite['get_concurrent_rps']:8.1f} req/s")  # type: ignore[index]
    if "octavia_rest" in results:
        print("\nratios, Octavia Mesh / Octavia (throughput: higher is better; p50: lower is better)")
        peer = results["octavia_rest"]
        for name in ("mesh_rest", "mesh_grpc"):
            ours = results[name]
            for op in ("get", "list_1000", "create"):
                a, b = ours[op], peer[op]  # type: ignore[index]
                print(
                    f"  {name:<9} {op:<10} throughput x{a['rps'] / b['rps']:6.2f}   "
                    f"p50 x{a['p50_ms'] / b['p50_ms']:6.3f}"
                )
            print(
                f"  {name:<9} get x{args.concurrency} threads throughput "
                f"x{ours['get_concurrent_rps'] / peer['get_concurrent_rps']:6.2f}"
            )  # type: ignore[index]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
