"""Token-validation cost: what keystone mode adds to a request, against noauth, in one run.

    uv run python bench/auth_bench.py [--n 2000] [--cold 40]

Starts a real Keystone 30 (``tests/keystone_server.py``: SQLite, fernet, gunicorn) and two meshes (noop
provider), one in ``noauth`` and one in ``keystone`` mode, and measures ``GET /v2/lbaas/loadbalancers/{id}``
sequentially over one keep-alive connection (REST through Envoy) and over native gRPC:

* noauth: no identity at all (the floor);
* keystone, warm cache: one token, validated once, then served from the API's cache;
* keystone, cold: a fresh token per request (each one a ``GET /v3/auth/tokens`` to Keystone).

The two modes are interleaved request by request, so that a change of machine load hits both alike. Prints
the p50 added per request by the warm cache (keystone - noauth, and the median of paired differences) and the
ratio. Every loop is bounded by count; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from benchmesh import start_noop_mesh  # noqa: E402
from keystone_server import Keystone, keystone_env  # noqa: E402

from octavia_mesh.cli.mesh import Mesh  # noqa: E402
from octavia_mesh.protos.lbaas.v2 import loadbalancers_pb2_grpc, requests_pb2  # noqa: E402

SUBNET = "11111111-1111-1111-1111-111111111111"


class Client:
    """One keep-alive REST connection and one gRPC channel to a mesh, sending ``headers`` with every call."""

    def __init__(self, mesh: Mesh, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", mesh.options.port, timeout=60)
        self.headers = headers
        self.channel = grpc.insecure_channel(mesh.endpoint.removeprefix("http://"))
        self.stub = loadbalancers_pb2_grpc.LoadBalancersStub(self.channel)

    def rest(self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None) -> bytes:
        data = None if body is None else json.dumps(body)
        self.conn.request(
            method, path, body=data, headers={"Content-Type": "application/json", **(headers or self.headers)}
        )
        response = self.conn.getresponse()
        raw = response.read()
        assert response.status < 300, (response.status, raw[:200])
        return raw

    def grpc_get(self, lb_id: str, token: str | None = None) -> None:
        metadata = tuple((k.lower(), v) for k, v in self.headers.items())
        if token is not None:
            metadata = (("x-auth-token", token),)
        self.stub.GetLoadBalancer(requests_pb2.ResourceRequest(id=lb_id), metadata=metadata, timeout=60)

    def close(self) -> None:
        self.conn.close()
        self.channel.close()


def sample(fn: Callable[[], None], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def stats(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_ms": 1000 * statistics.median(samples),
        "p99_ms": 1000 * samples[min(len(samples) - 1, int(0.99 * len(samples)))],
        "n": len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="requests per mode and protocol")
    parser.add_argument("--cold", type=int, default=40, help="fresh-token requests (each validated by Keystone)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keystone = Keystone(root / "keystone")
        keystone.start()
        meshes: list[Mesh] = []
        try:
            keystone.user("bench", "bench-secret", {"bench": ["member"]})
            meshes.append(start_noop_mesh(root / "noauth", {}))
            meshes.append(start_noop_mesh(root / "keystone", keystone_env(keystone), auth="keystone"))
            noauth_mesh, ks_mesh = meshes
            token, _ = keystone.token("bench", "bench-secret", "bench")
            noauth = Client(noauth_mesh, {})
            warm = Client(ks_mesh, {"X-Auth-Token": token})
            body = {"loadbalancer": {"vip_subnet_id": SUBNET}}
            ids = {
                "noauth": json.loads(noauth.rest("POST", "/v2/lbaas/loadbalancers", body))["loadbalancer"]["id"],
                "keystone": json.loads(warm.rest("POST", "/v2/lbaas/loadbalancers", body))["loadbalancer"]["id"],
            }
            clients = {"noauth": noauth, "keystone": warm}
            for name, client in clients.items():  # warm up: connections, caches, the first validation
                for _ in range(50):
                    client.rest("GET", f"/v2/lbaas/loadbalancers/{ids[name]}")
                    client.grpc_get(ids[name])
            # Interleaved request by request (the order flipping each time), so that the machine's load, which
            # swings a lot on a shared 2-core host, falls on both modes alike.
            rest: dict[str, list[float]] = {name: [] for name in clients}
            grpc_: dict[str, list[float]] = {name: [] for name in clients}
            calls = {
                name: (
                    lambda c=client, p=f"/v2/lbaas/loadbalancers/{ids[name]}": c.rest("GET", p),
                    lambda c=client, i=ids[name]: c.grpc_get(i),
                )
                for name, client in clients.items()
            }
            for i in range(args.n):
                for name in ("noauth", "keystone") if i % 2 else ("keystone", "noauth"):
                    rest[name] += sample(calls[name][0], 1)
                    grpc_[name] += sample(calls[name][1], 1)
            # Cold: tokens issued beforehand (Keystone's own issue time is not ours), each used once.
            fresh = [keystone.token("bench", "bench-secret", "bench")[0] for _ in range(args.cold)]
            path = f"/v2/lbaas/loadbalancers/{ids['keystone']}"
            cold = sample(lambda: warm.rest("GET", path, headers={"X-Auth-Token": fresh.pop()}), args.cold)
            for client in clients.values():
                client.close()
        finally:
            for mesh in meshes:
                mesh.stop()
            keystone.stop()

    figures: dict[str, dict] = {
        "rest": {name: stats(s) for name, s in rest.items()},
        "grpc": {name: stats(s) for name, s in grpc_.items()},
        "rest_cold": stats(cold),
    }
    for proto, samples in (("rest", rest), ("grpc", grpc_)):
        pairs = [k - n for k, n in zip(samples["keystone"], samples["noauth"], strict=True)]
        figures[proto]["paired_added_p50_ms"] = 1000 * statistics.median(pairs)
    print("\nToken validation cost — GET one load balancer, sequential, the two modes interleaved request by request\n")
    for proto in ("rest", "grpc"):
        base, ks = figures[proto]["noauth"], figures[proto]["keystone"]
        print(f"{proto:<5} noauth          p50 {base['p50_ms']:7.2f} ms   p99 {base['p99_ms']:7.2f} ms   n={base['n']}")
        print(f"{proto:<5} keystone warm   p50 {ks['p50_ms']:7.2f} ms   p99 {ks['p99_ms']:7.2f} ms   n={ks['n']}")
        added, ratio = ks["p50_ms"] - base["p50_ms"], ks["p50_ms"] / base["p50_ms"]
        paired = figures[proto]["paired_added_p50_ms"]
        print(f"{proto:<5} added by a warm cache: {added:+.2f} ms p50 ({paired:+.2f} ms median of paired differences),")
        print(f"{'':<5} ratio keystone/noauth x{ratio:.3f}")
    c = figures["rest_cold"]
    print(f"rest  keystone cold   p50 {c['p50_ms']:7.2f} ms   p99 {c['p99_ms']:7.2f} ms   n={c['n']}", end="")
    print("  (one Keystone validation each)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
