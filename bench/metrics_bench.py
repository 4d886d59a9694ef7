"""What Prometheus metrics cost: the same requests with metrics on and off, interleaved in one run.

    uv run python bench/metrics_bench.py [--n 2000] [--calls 20000]

1. Two meshes (noop provider), started as ``octavia-mesh up`` starts them: one with metrics on (its default:
   every service's ``/metrics`` on a loopback port, the gRPC interceptor on every server), one with every
   ``*_METRICS_LISTEN`` empty (no interceptor, no exposition). ``GET /v2/lbaas/loadbalancers/{id}`` sequentially
   over one keep-alive REST connection through Envoy and over native gRPC, the two meshes interleaved request by
   request (the order flipping each time), so that the shared machine's load falls on both alike. Prints p50/p99,
   the median of paired differences and the ratio; then what one scrape of the API's ``/metrics`` costs.
2. What the interceptor adds to one call, in CPU time (label look-ups, two counters, one histogram), and the
   interceptor alone, in one process: a ``grpc.aio`` server with and without it answering ``grpc.health.v1``
   ``Check`` (the cheapest call there is, so the interceptor's share is the largest), in alternating blocks.

Every loop is bounded by count; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
from benchmesh import start_noop_mesh
from grpc_health.v1 import health_pb2, health_pb2_grpc

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.common.grpcserver import ServiceHealth
from octavia_mesh.common.observability import metrics
from octavia_mesh.protos.lbaas.v2 import loadbalancers_pb2_grpc, requests_pb2

SUBNET = "11111111-1111-1111-1111-111111111111"
SERVICES = ("API", "WORKER", "HEALTH", "HOUSEKEEPING", "DRIVER_AGENT")
METRICS_OFF = {f"OCTAVIA_MESH_{s}_METRICS_LISTEN": "" for s in SERVICES}


class Client:
    """One keep-alive REST connection and one gRPC channel to a mesh."""

    def __init__(self, mesh: Mesh) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", mesh.options.port, timeout=60)
        self.channel = grpc.insecure_channel(mesh.endpoint.removeprefix("http://"))
        self.stub = loadbalancers_pb2_grpc.LoadBalancersStub(self.channel)

    def rest(self, method: str, path: str, body: object = None) -> bytes:
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        raw = response.read()
        assert response.status < 300, (response.status, raw[:200])
        return raw

    def grpc_get(self, lb_id: str) -> None:
        self.stub.GetLoadBalancer(requests_pb2.ResourceRequest(id=lb_id), timeout=60)

    def close(self) -> None:
        self.conn.close()
        self.channel.close()


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(what: str, on: list[float], off: list[float], unit: float = 1000.0, label: str = "ms") -> None:
    diffs = [a - b for a, b in zip(on, off, strict=True)]
    p50_on, p50_off = statistics.median(on), statistics.median(off)
    print(
        f"  {what:<26} off p50 {p50_off * unit:8.3f} {label} p99 {pct(off, 0.99) * unit:8.3f}  |  "
        f"on p50 {p50_on * unit:8.3f} {label} p99 {pct(on, 0.99) * unit:8.3f}  |  "
        f"paired diff p50 {statistics.median(diffs) * unit:+7.3f} {label}  ratio x{p50_on / p50_off:.3f}"
    )


def mesh_bench(n: int, off_first: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        meshes: list[Mesh] = []
        clients: dict[str, Client] = {}
        try:
            # Which mesh starts first is an option: two meshes on a loaded machine can differ by more than what is
            # measured, so a run in each order tells such a difference from the metrics' cost.
            first, second = ("off", "on") if off_first else ("on", "off")
            for name in (first, second):
                meshes.append(start_noop_mesh(root / name, {} if name == "on" else METRICS_OFF))
            on_mesh, off_mesh = meshes if first == "on" else meshes[::-1]
            assert on_mesh.metrics_urls and "api" in on_mesh.metrics_urls
            clients = {"on": Client(on_mesh), "off": Client(off_mesh)}
            body = {"loadbalancer": {"vip_subnet_id": SUBNET}}
            ids = {
                name: json.loads(c.rest("POST", "/v2/lbaas/loadbalancers", body))["loadbalancer"]["id"]
                for name, c in clients.items()
            }
            for name, client in clients.items():  # warm up: connections, caches, the interceptor's series
                for _ in range(50):
                    client.rest("GET", f"/v2/lbaas/loadbalancers/{ids[name]}")
                    client.grpc_get(ids[name])
            rest: dict[str, list[float]] = {"on": [], "off": []}
            native: dict[str, list[float]] = {"on": [], "off": []}
            for i in range(n):
                order = ("on", "off") if i % 2 == 0 else ("off", "on")
                for name in order:
                    c, path = clients[name], f"/v2/lbaas/loadbalancers/{ids[name]}"
                    rest[name].append(timed(lambda c=c, path=path: c.rest("GET", path)))
                for name in order:
                    c, lb_id = clients[name], ids[name]
                    native[name].append(timed(lambda c=c, lb_id=lb_id: c.grpc_get(lb_id)))
            print(
                f"GET one load balancer, {n} each, metrics on vs off, {first} started first "
                f"(load average {os.getloadavg()[0]:.1f}):"
            )
            report("REST through Envoy", rest["on"], rest["off"])
            report("native gRPC", native["on"], native["off"])
            url = on_mesh.metrics_urls["api"]
            sizes, scrapes = [], []
            for _ in range(50):
                t0 = time.perf_counter()
                with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback URL of the mesh
                    sizes.append(len(response.read()))
                scrapes.append(time.perf_counter() - t0)
            print(
                f"  one scrape of the API's /metrics: p50 {statistics.median(scrapes) * 1000:.2f} ms, "
                f"{sizes[-1] / 1024:.1f} KiB"
            )
        finally:
            for client in clients.values():
                client.close()
            for mesh in meshes:
                mesh.stop()


async def interceptor_bench(calls: int, block: int = 500) -> None:
    servers, stubs, channels = [], {}, []
    for name, listen in (("on", "127.0.0.1:0"), ("off", "")):
        server = grpc.aio.server(interceptors=metrics.interceptors(listen))
        health = ServiceHealth(server, ["bench"])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await health.set_serving(True)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        servers.append(server)
        channels.append(channel)
        stubs[name] = health_pb2_grpc.HealthStub(channel)  # pyright: ignore[reportAttributeAccessIssue]
    request = health_pb2.HealthCheckRequest(service="bench")
    for stub in stubs.values():
        for _ in range(200):
            await stub.Check(request)
    per_call: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(max(1, calls // block)):
        for name in ("on", "off") if i % 2 == 0 else ("off", "on"):
            t0 = time.perf_counter()
            for _ in range(block):
                await stubs[name].Check(request)
            per_call[name].append((time.perf_counter() - t0) / block)
    print(f"grpc.health.v1 Check in one process, {calls} each in blocks of {block} (load {os.getloadavg()[0]:.1f}):")
    report("per call (client + server)", per_call["on"], per_call["off"], 1e6, "µs")
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(None)


def counting_cost(calls: int) -> None:
    """CPU time of what the interceptor adds to one call: its three series' label look-ups and updates."""
    labels = ("unary", "octavia_mesh.lbaas.v2.LoadBalancers", "GetLoadBalancer")
    t0 = time.process_time()
    for _ in range(calls):
        started = time.perf_counter()
        metrics.STARTED.labels(*labels).inc()
        metrics.HANDLED.labels(*labels, "OK").inc()
        metrics.HANDLING.labels(*labels, "OK").observe(time.perf_counter() - started)
    print(f"counting one call (what the interceptor adds, CPU time): {(time.process_time() - t0) / calls * 1e6:.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="GETs per mesh and protocol")
    parser.add_argument("--calls", type=int, default=20000, help="in-process health checks with and without")
    parser.add_argument("--off-first", action="store_true", help="start the mesh without metrics first")
    args = parser.parse_args()
    counting_cost(args.calls)
    asyncio.run(interceptor_bench(args.calls))
    mesh_bench(args.n, args.off_first)


if __name__ == "__main__":
    main()
