"""API benchmark: Octavia Mesh (REST through Envoy, and native gRPC) against real Octavia, in one run.

    uv run python bench/api_bench.py [--lbs 100] [--rounds 4] [--seconds 3] [--concurrency 4]
                                     [--api-processes N] [--no-peer] [--postgres | --database-url URL] [--json F]

The three calls of issue 12, over ``--lbs`` load balancers on each side:

* ``list``: ``GET /v2/lbaas/loadbalancers`` (every load balancer: a list of 100);
* ``get``: ``GET /v2/lbaas/loadbalancers/{id}``;
* ``create``: ``POST /v2/lbaas/loadbalancers``, sequential, timed to the 201; before the next side's turn,
  the side waits until its provider has settled every create (none left PENDING_*), so that no side is
  measured while the other's back end still works on its creates.

``list`` and ``get`` run sequentially (one connection) and with ``--concurrency`` connections. The concurrent
REST calls (ours and Octavia's) are made by wrk, as in the issue's measurement, when it is installed
(``--client``): Python's client threads cost the two cores about as much per request as the API does, and
capped our figures, not Octavia's. With wrk, the concurrent native gRPC calls are made by h2load
(``apt install nghttp2-client``), HTTP/2 with the framed request as body: each answer must be a 200 carrying
exactly the bytes of the reply a Python client got for the same call (an error's answer carries none). The
others are made by Python threads (keep-alive HTTP/1.1; a gRPC channel per thread), each latency kept; every
figure comes with p50/p99. Targets: our REST
through Envoy, our native gRPC (same Envoy port, HTTP/2) and real Octavia 19.0.0 (``../shared/tools/octavia-peer``,
API and worker in one process, no-op drivers, its own SQLite: the tool knows no other database). All three run
at once and the rounds interleave them (rotating who goes first), so load from other users of the machine hits
each side alike; the 1-minute load average is sampled around every measurement and printed with its figure.

``--postgres`` runs our side on a fresh PostgreSQL database (created on 127.0.0.1:5432, dropped afterwards).
Every loop is bounded by count and time; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.api import httpbody_pb2

from octavia_mesh.cli.mesh import Mesh, MeshOptions
from octavia_mesh.cli.processes import free_port
from octavia_mesh.protos.lbaas.v2 import loadbalancers_pb2, loadbalancers_pb2_grpc, requests_pb2

PROJECT = "e3cd678b11784734bc366148aa37580e"
SUBNET = "11111111-1111-1111-1111-111111111111"
#: ``../shared/tools/octavia-peer`` seen from the main checkout (or a worktree under ``../wt/``), or $OCTAVIA_PEER_DIR.
PEER = Path(
    os.environ.get("OCTAVIA_PEER_DIR")
    or next(
        (str(p / "shared/tools/octavia-peer") for p in Path(__file__).resolve().parents if (p / "shared").is_dir()),
        "octavia-peer-not-found",
    )
)
LB_BODY = {"loadbalancer": {"vip_subnet_id": SUBNET, "project_id": PROJECT}}
LIST_PATH = "/v2/lbaas/loadbalancers"
#: Requests per measurement at most (besides ``--seconds``).
MAX_REQUESTS = 20000
OPS = ("list", "get", "create")


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


@dataclass
class Target:
    """One side under test: how it lists, shows and creates (each raises on a wrong answer)."""

    name: str
    list_: Callable[[], int]  # the number of load balancers listed
    get: Callable[[], None]
    create: Callable[[], str]  # the new load balancer's id
    created: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)  # REST: the URL of each call, for wrk
    settle: Callable[[], None] = lambda: None  # returns once no load balancer of its side is pending
    #: Native gRPC: each call's URL, framed request and the length of its framed reply, for h2load.
    grpc_calls: dict[str, tuple[str, bytes, int]] = field(default_factory=dict)


def rest_target(name: str, base: str, lb_id: str) -> Target:
    http = Http(base)

    def list_() -> int:
        status, raw = http.call("GET", LIST_PATH)
        assert status == 200, raw
        return raw.count(b'"provisioning_status"')  # every listed load balancer has one; no parse on the hot path

    def get() -> None:
        status, raw = http.call("GET", f"{LIST_PATH}/{lb_id}")
        assert status == 200, raw

    def create() -> str:
        status, raw = http.call("POST", LIST_PATH, LB_BODY)
        assert status == 201, raw
        return json.loads(raw)["loadbalancer"]["id"]

    urls = {"list": base.rstrip("/") + LIST_PATH, "get": f"{base.rstrip('/')}{LIST_PATH}/{lb_id}"}
    return Target(name, list_, get, create, urls=urls, settle=lambda: wait_quiet(base))


def grpc_target(name: str, address: str, lb_id: str, base: str) -> Target:
    local = threading.local()  # one channel (one HTTP/2 connection) per client thread, as one wrk connection

    def stub() -> loadbalancers_pb2_grpc.LoadBalancersStub:
        if getattr(local, "stub", None) is None:
            local.stub = loadbalancers_pb2_grpc.LoadBalancersStub(grpc.insecure_channel(address))
        return local.stub

    body = httpbody_pb2.HttpBody(content_type="application/json", data=json.dumps(LB_BODY).encode())

    def list_() -> int:
        return stub().ListLoadBalancers(requests_pb2.CollectionRequest()).data.count(b'"provisioning_status"')

    def get() -> None:
        stub().GetLoadBalancer(requests_pb2.ResourceRequest(id=lb_id))

    def create() -> str:
        reply = stub().CreateLoadBalancer(requests_pb2.CollectionRequest(body=body))
        return json.loads(reply.data)["loadbalancer"]["id"]

    service = loadbalancers_pb2.DESCRIPTOR.services_by_name["LoadBalancers"].full_name
    calls = {
        "list": ("ListLoadBalancers", requests_pb2.CollectionRequest()),
        "get": ("GetLoadBalancer", requests_pb2.ResourceRequest(id=lb_id)),
    }
    channel = grpc.insecure_channel(address)
    grpc_calls = {}
    for op, (method, request) in calls.items():
        reply = channel.unary_unary(f"/{service}/{method}")(request.SerializeToString())  # raw bytes both ways
        grpc_calls[op] = (f"http://{address}/{service}/{method}", _framed(request.SerializeToString()), len(reply) + 5)
    channel.close()
    return Target(name, list_, get, create, settle=lambda: wait_quiet(base), grpc_calls=grpc_calls)


def _framed(message: bytes) -> bytes:
    """A gRPC message as it goes on the wire: uncompressed flag, length, bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def seed(base: str, count: int) -> str:
    """Create load balancers until ``count`` exist and all are ACTIVE; returns one id."""
    http = Http(base)
    status, raw = http.call("GET", LIST_PATH + "?fields=id")
    have = len(json.loads(raw)["loadbalancers"]) if status == 200 else 0

    def create(_: int) -> None:
        status, raw = http.call("POST", LIST_PATH, LB_BODY)
        assert status == 201, raw

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(create, range(max(0, count - have))))
    return wait_settled(base, count)


def wait_settled(base: str, count: int) -> str:
    """Wait (bounded) until exactly ``count`` load balancers are listed, all ACTIVE; returns one id."""
    http = Http(base)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        _, raw = http.call("GET", LIST_PATH + "?fields=id&fields=provisioning_status")
        lbs = json.loads(raw)["loadbalancers"]
        if len(lbs) == count and all(lb["provisioning_status"] == "ACTIVE" for lb in lbs):
            return lbs[len(lbs) // 2]["id"]
        time.sleep(0.5)
    raise AssertionError(f"{base}: load balancers did not settle at {count}")


def wait_quiet(base: str) -> None:
    """Wait (bounded) until no load balancer of ``base`` is PENDING_*: a side's provider settles its creates
    after the 201, and a measurement taken meanwhile would pay for the other side's work (Octavia's worker
    takes about a second a create, on the same two cores; ours a few milliseconds)."""
    http = Http(base)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        _, raw = http.call("GET", LIST_PATH + "?fields=provisioning_status")
        if b"PENDING_" not in raw:
            return
        time.sleep(0.2)
    raise AssertionError(f"{base}: load balancers still pending after 300 s")


def delete_all(base: str, ids: list[str]) -> None:
    http = Http(base)
    for lb_id in ids:  # bounded by what this run created; 409 while its create is still pending
        for _ in range(1200):
            status, _ = http.call("DELETE", f"{LIST_PATH}/{lb_id}")
            if status in (204, 404):
                break
            time.sleep(0.05)


@dataclass
class Figures:
    samples: list[float] = field(default_factory=list)
    seconds: float = 0.0
    loads: list[float] = field(default_factory=list)

    wrk: list[dict[str, float]] = field(default_factory=list)  # one summary per wrk run

    def row(self) -> dict[str, float]:
        if self.wrk:  # wrk's own figures: requests over seconds, the median p50 and the worst p99 of its runs
            return {
                "n": sum(w["n"] for w in self.wrk),
                "rps": sum(w["n"] for w in self.wrk) / sum(w["seconds"] for w in self.wrk),
                "p50_ms": statistics.median(w["p50_ms"] for w in self.wrk),
                "p99_ms": max(w["p99_ms"] for w in self.wrk),
                "load": statistics.mean(self.loads),
            }
        ordered = sorted(self.samples)
        if not ordered:
            return {}
        return {
            "n": len(ordered),
            "rps": len(ordered) / self.seconds,
            "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "load": statistics.mean(self.loads),
        }


def measure(fn: Callable[[], object], threads: int, seconds: float, into: Figures) -> list[object]:
    """Call ``fn`` from ``threads`` threads for ``seconds`` (at most :data:`MAX_REQUESTS` calls)."""
    lock = threading.Lock()
    results: list[object] = []
    budget = [MAX_REQUESTS]
    deadline = time.perf_counter() + seconds

    def loop() -> None:
        while time.perf_counter() < deadline:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            t0 = time.perf_counter()
            out = fn()
            elapsed = time.perf_counter() - t0
            with lock:
                into.samples.append(elapsed)
                results.append(out)

    into.loads.append(os.getloadavg()[0])
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(loop) for _ in range(threads)]:
            future.result()
    into.seconds += time.perf_counter() - start
    into.loads.append(os.getloadavg()[0])
    return results


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str) -> float:
    """A wrk latency (``812.00us``, ``2.93ms``, ``1.02s``) in milliseconds."""
    for unit in ("us", "ms", "s"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * _WRK_UNITS[unit]
    raise ValueError(f"not a wrk latency: {text}")


def _load_tool(argv: list[str], seconds: float, into: Figures) -> str:
    """Run a load generator for about ``seconds``, the load average sampled around it; its output."""
    into.loads.append(os.getloadavg()[0])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    into.loads.append(os.getloadavg()[0])
    return out


def measure_wrk(url: str, connections: int, seconds: float, into: Figures) -> None:
    """``wrk`` on ``url`` with ``connections`` connections for ``seconds`` (the issue's own load generator: it
    costs the machine far less per request than Python's client threads, which share the two cores with the
    servers). Every answer must be a 2xx."""
    argv = ["wrk", f"-c{connections}", f"-t{min(connections, 2)}", f"-d{max(1, round(seconds))}s", "--latency", url]
    out = _load_tool(argv, seconds, into)
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    lines = out.splitlines()
    done = next(line.split() for line in lines if " requests in " in line)  # "1234 requests in 3.00s, ..."
    percent = {line.split()[0]: _wrk_ms(line.split()[1]) for line in lines if line.strip()[:3] in ("50%", "99%")}
    into.wrk.append(
        {
            "n": float(done[0]),
            "seconds": _wrk_ms(done[3].rstrip(",")) / 1000,
            "p50_ms": percent["50%"],
            "p99_ms": percent["99%"],
        }
    )


def measure_h2load(call: tuple[str, bytes, int], connections: int, seconds: float, into: Figures) -> None:
    """``h2load`` making native gRPC calls (``call``: URL, framed request, framed reply's length) on
    ``connections`` HTTP/2 connections, one call at a time on each, for ``seconds``. Every answer must be a 200
    with the reply's bytes: a gRPC error comes as a 200 too, with its status in the trailers and no message."""
    url, body, reply_length = call
    with tempfile.TemporaryDirectory() as tmp:
        request, log = Path(tmp, "request"), Path(tmp, "log")
        request.write_bytes(body)
        argv = ["h2load", f"-c{connections}", f"-t{min(connections, 2)}", "-m1", f"-D{max(1, round(seconds))}"]
        argv += ["-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(request)]
        out = _load_tool([*argv, "--log-file", str(log), url], seconds, into)
        entries = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    done = [e for e in entries if e[1] == "200"]
    assert entries and len(done) == len(entries), out
    data = next(line for line in out.splitlines() if line.startswith("traffic:"))  # "... 123 (123) data, ..."
    data_bytes = int(data.split(" data")[0].rsplit("(", 1)[1].rstrip(")"))
    assert data_bytes == reply_length * len(entries), f"not every answer was the reply ({data_bytes} bytes)\n{out}"
    finished = next(line for line in out.splitlines() if line.startswith("finished in"))
    ordered = sorted(int(e[2]) / 1000 for e in entries)  # microseconds to the end of the answer
    into.wrk.append(
        {
            "n": float(len(entries)),
            "seconds": len(entries) / float(finished.split(",")[1].split()[0]),  # from its req/s
            "p50_ms": ordered[len(ordered) // 2],
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        }
    )


def rotate(items: list[Target], by: int) -> Iterator[Target]:
    by %= len(items)
    yield from items[by:] + items[:by]


def run_rounds(targets: list[Target], args: argparse.Namespace) -> dict[str, dict[str, Figures]]:
    figures: dict[str, dict[str, Figures]] = defaultdict(lambda: defaultdict(Figures))
    for target in targets:  # warm-up: connections, caches, the first statement compilations
        target.list_()
        target.get()
    for round_ in range(args.rounds):
        for target in rotate(targets, round_):
            for threads, mode in ((1, "seq"), (args.concurrency, f"c{args.concurrency}")):
                for op, fn in (("list", target.list_), ("get", target.get)):
                    into = figures[target.name][f"{op} {mode}"]
                    if threads > 1 and args.client == "wrk" and op in target.urls:
                        measure_wrk(target.urls[op], threads, args.seconds, into)
                        continue
                    if threads > 1 and args.client == "wrk" and op in target.grpc_calls and shutil.which("h2load"):
                        measure_h2load(target.grpc_calls[op], threads, args.seconds, into)
                        continue
                    results = measure(fn, threads, args.seconds, into)
                    if op == "list":
                        assert set(results) == {args.lbs}, f"{target.name}: listed {set(results)}, not {args.lbs}"
    for round_ in range(args.rounds):
        for target in rotate(targets, round_):
            ids = measure(target.create, 1, args.seconds, figures[target.name]["create seq"])
            target.created.extend(str(i) for i in ids)
            target.settle()
    return figures


@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new PostgreSQL database on 127.0.0.1:5432 for this run, dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"api_bench_{os.getpid()}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


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


def cell(row: dict[str, float]) -> str:
    if not row:
        return "-"
    return f"{row['p50_ms']:6.2f}/{row['p99_ms']:6.2f} ms {row['rps']:7.1f}/s (load {row['load']:.1f})"


def report(results: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace, database: str) -> None:
    print(
        f"\nAPI benchmark: {args.lbs} load balancers each, {os.cpu_count()} cores, our database {database}, "
        f"{args.api_processes or 'default'} API process(es), {args.rounds} rounds of {args.seconds:g} s per call "
        f"and side, interleaved\n"
        "cells: p50/p99 latency, requests/s (1-minute load average while measured); "
        f"c{args.concurrency} REST calls by {args.client}"
        + (f", c{args.concurrency} gRPC calls by h2load" if args.client == "wrk" and shutil.which("h2load") else "")
        + ", the rest by Python client threads\n"
    )
    names = [n for n in ("mesh REST", "mesh gRPC", "Octavia") if n in results]
    calls = [c for c in results[names[0]] if results[names[0]][c]]
    print(f"{'call':<14}" + "".join(f"{n:<44}" for n in names) + ("ratio REST  gRPC" if "Octavia" in names else ""))
    for call in calls:
        line = f"{call:<14}" + "".join(f"{cell(results[n].get(call, {})):<44}" for n in names)
        if "Octavia" in results and results["Octavia"].get(call):
            peer = results["Octavia"][call]["rps"]
            line += "".join(f"x{results[n][call]['rps'] / peer:6.1f} " for n in names if n != "Octavia")
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lbs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0, help="per call, side and round")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--client",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="what makes the concurrent REST calls (default wrk, as in the issue, when installed: apt install wrk)",
    )
    parser.add_argument("--api-processes", type=int, default=0, help="API processes behind Envoy (0: up's default)")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument(
        "--peer-url",
        default="",
        help="an Octavia peer already running (run.sh PORT): it is seeded up to --lbs and what this run creates "
        "is deleted afterwards (its seeding under load takes minutes; several runs may share it)",
    )
    parser.add_argument("--postgres", action="store_true", help="our side on a fresh PostgreSQL database")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(fresh_postgres()) if args.postgres else args.database_url
        state = stack.enter_context(tempfile.TemporaryDirectory())
        options = MeshOptions(
            host="127.0.0.1",
            port=free_port(),
            state_dir=Path(state),
            database_url=database_url,
            nats_url=None,
            auth_strategy="noauth",
            start_timeout=60.0,
            default_provider="noop",  # the API's own speed: Octavia's peer also runs no-op drivers
        )
        if "api_processes" in MeshOptions.__dataclass_fields__:  # a checkout from before the setting has one
            from octavia_mesh.cli.mesh import default_api_processes  # type: ignore[attr-defined,unused-ignore]

            args.api_processes = args.api_processes or default_api_processes()
            options = MeshOptions(**{**_fields(options), "api_processes": args.api_processes})
        mesh = Mesh(options)
        mesh.start()
        stack.callback(mesh.stop)
        peer_port = free_port()
        peer_url = args.peer_url.rstrip("/") or f"http://127.0.0.1:{peer_port}"
        peer = not args.no_peer and (bool(args.peer_url) or start_peer(peer_port))
        if peer and not args.peer_url:
            stack.callback(stop_peer, peer_port)
        bases = {"mesh": mesh.endpoint, **({"Octavia": peer_url} if peer else {})}
        with concurrent.futures.ThreadPoolExecutor(len(bases)) as pool:
            ids = dict(zip(bases, pool.map(lambda b: seed(b, args.lbs), bases.values()), strict=True))
        targets = [
            rest_target("mesh REST", mesh.endpoint, ids["mesh"]),
            grpc_target("mesh gRPC", mesh.endpoint.removeprefix("http://"), ids["mesh"], mesh.endpoint),
        ]
        if peer:
            targets.append(rest_target("Octavia", bases["Octavia"], ids["Octavia"]))
        figures = run_rounds(targets, args)
        results = {t: {call: f.row() for call, f in calls.items()} for t, calls in figures.items()}
        report(
            results, args, "PostgreSQL" if args.postgres or (database_url or "").startswith("postgres") else "SQLite"
        )
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        if peer and args.peer_url:  # leave the shared peer with --lbs load balancers for the next run
            delete_all(peer_url, targets[-1].created)
            wait_settled(peer_url, args.lbs)


def _fields(options: MeshOptions) -> dict[str, object]:
    return {name: getattr(options, name) for name in MeshOptions.__dataclass_fields__}


if __name__ == "__main__":
    main()
