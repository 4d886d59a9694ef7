"""Scale benchmark: N load balancers on this machine, all serving and heartbeating, created through the API.

    uv run python bench/scale_bench.py [--n 100] [--amphorae shared|process] [--heartbeat-interval 5]
                                       [--concurrency 8] [--max-minutes 20]

One mesh (amphora provider, its own /16 of 127.0.0.0/8 for VIPs), a few shared local HTTP backends, then N
single-call creates (load balancer, HTTP listener, pool, two members) and:

* create time: first POST -> every load balancer ACTIVE and ONLINE (heartbeats reporting);
* one real request through every VIP;
* memory: PSS summed over every process of the mesh (services, NATS, Envoy) and of its amphorae (agents or the
  amphora host, and every HAProxy), with the per-load-balancer cost; the same sum measured before any create is
  the baseline of the run;
* idle CPU: CPU-seconds those processes use over 30 s with nothing asked of them (heartbeats only), and the
  load average;
* change -> live: a member added to one load balancer's pool, until a request through its VIP reaches it;
* failover of one: its amphora killed (shared: fenced through the amphora host, as a dead VM; process: SIGKILL of
  its agent and HAProxy), until its VIP serves again and the load balancer is ACTIVE.

Everything stays on 127.0.0.0/8. Every wait is bounded, and the whole run aborts past ``--max-minutes``; every
process is stopped at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from octavia_mesh.cli.mesh import Mesh, MeshOptions
from octavia_mesh.cli.processes import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
# The test suite's claim on a VIP /16 (shared with other meshes) and its fresh databases on a server.
from support import claim_vip_cidr, fresh_database  # noqa: E402

LBS = "/v2/lbaas/loadbalancers"


class Abort(RuntimeError):
    """The run went past its time bound."""


class Clock:
    def __init__(self, max_s: float) -> None:
        self.deadline = time.monotonic() + max_s

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
        end = min(time.monotonic() + timeout, self.deadline)
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > end:
                raise Abort(f"{what}: not within {timeout:g}s" if end < self.deadline else f"{what}: out of time")
            time.sleep(interval)


# -------------------------------------------------------------------------------------------- HTTP


class Api:
    """Octavia's REST API over one keep-alive connection per thread."""

    def __init__(self, endpoint: str) -> None:
        self.host, port = endpoint.removeprefix("http://").split(":")
        self.port = int(port)
        self._local = threading.local()

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                data = None if body is None else json.dumps(body).encode()
                conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def load_balancers(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        marker = ""
        while True:
            status, body = self.call("GET", f"{LBS}?limit=1000&fields=id&fields=provisioning_status"
                                     f"&fields=operating_status&fields=vip_address{marker}")  # fmt: skip
            assert status == 200, body
            found += body["loadbalancers"]
            nxt = [link for link in body.get("loadbalancers_links", []) if link.get("rel") == "next"]
            if not nxt or not body["loadbalancers"]:
                return found
            marker = f"&marker={body['loadbalancers'][-1]['id']}"


class Named(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's API
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Backend(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), Named)
        self.name = name
        self.port = int(self.server_address[1])
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy closes idle server connections when a worker goes: not an error here


def get(address: str, port: int = 80, timeout: float = 2.0) -> str | None:
    """The body of one request on a fresh connection through ``address``; None when it fails."""
    try:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode()
        conn.close()
        return body if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None


# -------------------------------------------------------------------------------------- processes


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def mesh_processes(roots: list[int], needle: bytes) -> list[int]:
    """``roots`` and their descendants, plus every process whose command line names ``needle`` (the amphorae's
    directory: detached agents or the amphora host, and every HAProxy), and their descendants."""
    children: dict[int, list[int]] = {}
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError, IndexError):
            children.setdefault(int(_stat(pid)[1]), []).append(pid)
            if needle in (entry / "cmdline").read_bytes():
                found.add(pid)
    todo = [*roots, *found]
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    return sorted(seen)


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat(pid)
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def kind_of(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = b" ".join(cmd).decode(errors="replace")
    if "haproxy" in os.path.basename(cmd[0].decode(errors="replace")):
        return "haproxy"
    if "amphora_agent.host" in text:
        return "amphora host"
    if "amphora_agent" in text:
        return "amphora agents"
    if "-m" in text and "octavia_mesh." in text:
        return "service " + text.split("octavia_mesh.", 1)[1].split()[0]
    return os.path.basename(cmd[0].decode(errors="replace")) or "?"


def breakdown(pids: list[int]) -> dict[str, tuple[int, int]]:
    """PSS (KiB) and count per kind of process."""
    kinds: dict[str, tuple[int, int]] = {}
    for pid in pids:
        kind = kind_of(pid)
        pss, count = kinds.get(kind, (0, 0))
        kinds[kind] = (pss + pss_kib([pid]), count + 1)
    return kinds


def ticks_by_kind(pids: list[int]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for pid in pids:
        kind = kind_of(pid)
        kinds[kind] = kinds.get(kind, 0) + cpu_ticks([pid])
    return kinds


def amphora_home(mesh: Mesh, amphora_id: str) -> Path:
    base = mesh.state / "worker" / "amphorae"
    pointer = base.parent / "amphorae.location"
    if pointer.exists():
        base = Path(pointer.read_text().strip())
    return base / amphora_id.replace("-", "")[:12]


def kill_amphora(mesh: Mesh, amphora_id: str) -> None:
    """The amphora dies: fenced through its host (shared), or its agent and HAProxy SIGKILLed (process)."""
    home = amphora_home(mesh, amphora_id)
    if (home / "host.served").exists():
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            sock.connect(str(home.parent / ".host" / "control.sock"))
            sock.sendall(json.dumps({"op": "kill", "amphora_id": amphora_id}).encode() + b"\n")
            answer = json.loads(sock.makefile().readline())
        assert answer.get("found"), answer
        return
    needle = str(home).encode() + b"/"
    for pid in mesh_processes([], needle):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------- run


def create_tree(subnet: str, index: int, ports: list[int]) -> dict[str, Any]:
    members = [{"address": "127.0.0.1", "protocol_port": ports[(index + k) % len(ports)]} for k in range(2)]
    return {
        "loadbalancer": {
            "name": f"scale-{index}",
            "vip_subnet_id": subnet,
            "listeners": [
                {
                    "protocol": "HTTP",
                    "protocol_port": 80,
                    "default_pool": {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "members": members},
                }
            ],
        }
    }


def run(args: argparse.Namespace, mesh: Mesh, clock: Clock, backends: list[Backend]) -> None:
    api = Api(mesh.endpoint)
    needle = str(mesh.state).encode()
    pointer = mesh.state / "worker" / "amphorae.location"

    def processes() -> list[int]:
        roots = [c.process.pid for c in mesh.supervisor.children if c.process.poll() is None]
        extra = mesh_processes(roots, needle)
        if pointer.exists():  # amphorae relocated under /tmp (a long state path)
            extra = sorted(set(extra) | set(mesh_processes([], pointer.read_text().strip().encode() + b"/")))
        return extra

    def spares_ready() -> bool:
        _, body = api.call("GET", "/v2/octavia/amphorae?status=READY")
        return len(body["amphorae"]) >= args.spares

    # The baseline holds the spare amphorae (and so the amphora host): per load balancer counts what each adds.
    clock.wait_for(spares_ready, 120, "the spare amphorae", 0.5)
    base_pids = processes()
    base_pss = pss_kib(base_pids)
    print(f"mesh up: {len(base_pids)} processes, PSS {base_pss / 1024:.0f} MiB (baseline, spares included)")
    subnet = mesh.local_subnet()
    ports = [b.port for b in backends]

    started = time.monotonic()
    created: list[str] = []
    failed: list[tuple[int, str]] = []
    latencies: list[float] = []

    def create(i: int) -> None:
        t0 = time.monotonic()
        status, body = api.call("POST", LBS, create_tree(subnet, i, ports))
        latencies.append(time.monotonic() - t0)
        if status == 201:
            created.append(body["loadbalancer"]["id"])
        else:  # never retried: a create must not fail because the machine is busy
            failed.append((i, f"{status} {str(body)[:200]}"))

    pool = concurrent.futures.ThreadPoolExecutor(args.concurrency)
    try:
        futures = [pool.submit(create, i) for i in range(args.n)]
        for future in futures:
            future.result()
            if time.monotonic() > clock.deadline:
                raise Abort(f"creating: out of time after {len(created)} creates")
    finally:
        pool.shutdown(cancel_futures=True)  # an abort (or Ctrl-C) must not wait for the creates still queued
    posted = time.monotonic() - started
    ordered = sorted(latencies)
    print(f"POSTed {len(created)} creates in {posted:.1f}s ({len(created) / posted:.1f}/s), {args.concurrency} in "
          f"flight; each took p50 {ordered[len(ordered) // 2]:.2f}s, p99 {ordered[int(len(ordered) * 0.99)]:.2f}s, "
          f"max {ordered[-1]:.2f}s; {len(failed)} failed")  # fmt: skip
    # A create that answered an error must have left nothing behind (no load balancer of its name).
    left = [i for i, _ in failed if api.call("GET", f"{LBS}?name=scale-{i}&fields=id")[1]["loadbalancers"]]
    if failed:
        print(f"  of the failed creates, {len(left)} left a load balancer behind all the same")
    for _, reason in failed[:3]:
        print("  failed:", reason)

    def progress() -> bool:
        lbs = api.load_balancers()
        active = sum(1 for lb in lbs if lb["provisioning_status"] == "ACTIVE")
        online = sum(1 for lb in lbs if lb["operating_status"] == "ONLINE")
        errors = sum(1 for lb in lbs if lb["provisioning_status"] == "ERROR")
        progress.last = (active, online, errors)  # type: ignore[attr-defined]
        now = time.monotonic()
        if now - progress.shown > 30:  # type: ignore[attr-defined]
            progress.shown = now  # type: ignore[attr-defined]
            print(f"  {now - started:5.0f}s: {active} ACTIVE, {online} ONLINE, {errors} ERROR", flush=True)
        return online == len(created) and active == len(created) or active + errors == len(created) and errors > 0

    progress.shown = started  # type: ignore[attr-defined]
    progress.last = (0, 0, 0)  # type: ignore[attr-defined]
    try:
        clock.wait_for(progress, clock.deadline - time.monotonic(), "all ACTIVE and ONLINE", interval=5.0)
    finally:
        active, online, errors = progress.last  # type: ignore[attr-defined]
        print(f"after {time.monotonic() - started:.1f}s: {active} ACTIVE, {online} ONLINE, {errors} ERROR")
    create_s = time.monotonic() - started
    print(f"create time: {create_s:.1f}s for {len(created)} load balancers ({len(created) / create_s:.2f}/s)")

    lbs = {lb["id"]: lb for lb in api.load_balancers()}
    t0 = time.monotonic()
    served = sum(1 for lb_id in created if get(lbs[lb_id]["vip_address"]) is not None)
    print(f"one request through every VIP: {served}/{len(created)} served ({time.monotonic() - t0:.1f}s)")

    pids = processes()
    pss = pss_kib(pids)
    print(f"memory: {len(pids)} processes, PSS {pss / 1024:.0f} MiB total; "
          f"{(pss - base_pss) / 1024 / max(1, len(created)):.2f} MiB per load balancer over the baseline")  # fmt: skip
    for kind, (kib, count) in sorted(breakdown(pids).items(), key=lambda item: -item[1][0]):
        print(f"  {kind:<28} {count:5d} processes  {kib / 1024:8.0f} MiB")

    time.sleep(5)  # the create's echoes (status writes, reloads) settle
    ticks = os.sysconf("SC_CLK_TCK")
    before, t0 = ticks_by_kind(pids), time.monotonic()
    time.sleep(args.idle_s)
    after, spent = ticks_by_kind(pids), time.monotonic() - t0
    used = (sum(after.values()) - sum(before.values())) / ticks / spent
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"idle CPU over {args.idle_s:g}s: {used:.2f} cores ({used / os.cpu_count() * 100:.0f}% of {os.cpu_count()}); "
          f"load average {' '.join(load)}")  # fmt: skip
    for kind in sorted(after, key=lambda k: before.get(k, 0) - after[k]):
        print(f"  {kind:<28} {(after[kind] - before.get(kind, 0)) / ticks / spent:5.3f} cores")

    # -- change -> live on one load balancer, while all run
    target = created[len(created) // 2]
    vip = lbs[target]["vip_address"]
    status, body = api.call("GET", f"/v2/lbaas/pools?loadbalancer_id={target}")
    pool_id = body["pools"][0]["id"]
    changed = Backend("changed")
    try:
        t0 = time.monotonic()
        status, body = api.call("POST", f"/v2/lbaas/pools/{pool_id}/members",
                                {"member": {"address": "127.0.0.1", "protocol_port": changed.port}})  # fmt: skip
        assert status == 201, body
        clock.wait_for(lambda: any(get(vip) == "changed" for _ in range(3)), 120, "the new member live", 0.01)
        live = time.monotonic() - t0
        clock.wait_for(lambda: api.call("GET", f"{LBS}/{target}")[1]["loadbalancer"]["provisioning_status"]
                       == "ACTIVE", 120, "ACTIVE after the change")  # fmt: skip
        print(f"change -> live (member added, first request to it): {live:.2f}s; "
              f"-> ACTIVE {time.monotonic() - t0:.2f}s")  # fmt: skip
    finally:
        changed.shutdown()

    # -- failover of one
    victim = created[len(created) // 3]
    vip = lbs[victim]["vip_address"]
    _, body = api.call("GET", f"/v2/octavia/amphorae?loadbalancer_id={victim}")
    (amphora,) = [a for a in body["amphorae"] if a["status"] == "ALLOCATED"]
    clock.wait_for(lambda: get(vip) is not None, 30, "the victim serving before the kill")
    t0 = time.monotonic()
    kill_amphora(mesh, amphora["id"])
    clock.wait_for(lambda: get(vip, timeout=0.5) is None, 10, "the VIP down after the kill", 0.01)
    down = time.monotonic() - t0
    clock.wait_for(lambda: get(vip, timeout=0.5) is not None, 180, "the VIP serving after failover", 0.02)
    back = time.monotonic() - t0
    clock.wait_for(lambda: api.call("GET", f"{LBS}/{victim}")[1]["loadbalancer"]["provisioning_status"]
                   == "ACTIVE", 180, "ACTIVE after the failover")  # fmt: skip
    print(f"failover of one (amphora killed): down after {down:.2f}s, serving again after {back:.2f}s, "
          f"ACTIVE after {time.monotonic() - t0:.2f}s")  # fmt: skip
    others = [lbs[i]["vip_address"] for i in created if i != victim][:50]
    print(f"  {sum(1 for a in others if get(a) is not None)}/{len(others)} other load balancers served meanwhile")
    print(f"load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="load balancers to create")
    parser.add_argument("--amphorae", choices=("shared", "process"), default="shared", help="local amphorae")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0, help="seconds (the mesh's default: 0.5)")
    parser.add_argument("--concurrency", type=int, default=4, help="creates in flight")
    parser.add_argument("--spares", type=int, default=2, help="spare amphorae (the default: 2)")
    parser.add_argument("--backends", type=int, default=4, help="shared local HTTP backends")
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server to create the run's database on (dropped after); 'sqlite' for a file (SQLite's one writer "
        "lock fails creates with 'database is locked' at a thousand on a loaded machine)",
    )
    parser.add_argument("--max-minutes", type=float, default=20.0, help="abort the run past this")
    parser.add_argument("--keep-logs", type=Path, help="copy the mesh's logs here before it stops")
    args = parser.parse_args()

    clock = Clock(args.max_minutes * 60)
    backends = [Backend(f"backend-{i}") for i in range(args.backends)]
    vip_cidr, release = claim_vip_cidr()
    interval = args.heartbeat_interval
    env = {
        "OCTAVIA_MESH_API_LOCAL_VIP_CIDR": vip_cidr,
        "OCTAVIA_MESH_WORKER_SPARE_AMPHORAE": str(args.spares),
        "OCTAVIA_MESH_WORKER_HEARTBEAT_INTERVAL_S": str(interval),
        "OCTAVIA_MESH_HEALTH_HEARTBEAT_INTERVAL_S": str(interval),
        # Detection scales with the interval: a stream quiet for 3 intervals, an amphora unheard for 6.
        "OCTAVIA_MESH_HEALTH_STREAM_SILENCE_S": str(max(1.5, 3 * interval)),
        "OCTAVIA_MESH_HEALTH_HEARTBEAT_TIMEOUT_S": str(max(5.0, 6 * interval)),
    }
    print(f"{args.n} load balancers, {args.amphorae} amphorae, heartbeats every {interval:g}s, VIPs in {vip_cidr}, "
          f"database {'SQLite' if args.database_url == 'sqlite' else args.database_url.split(':')[0]}; "
          f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}", flush=True)  # fmt: skip
    database_url, drop = (None, lambda: None) if args.database_url == "sqlite" else fresh_database(args.database_url)
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        mesh = Mesh(
            MeshOptions(
                host="127.0.0.1",
                port=free_port(),
                state_dir=Path(tmp) / "mesh",
                database_url=database_url,
                nats_url=None,
                auth_strategy="noauth",
                start_timeout=120.0,
                default_project="scale",
                default_provider="amphora",
                service_env=env,
                local_amphorae=args.amphorae,
            )
        )
        try:
            mesh.start()
            run(args, mesh, clock, backends)
        except Abort as exc:
            print(f"ABORTED: {exc}")
        finally:
            if args.keep_logs:
                shutil.copytree(mesh.state / "logs", args.keep_logs, dirs_exist_ok=True)
            t0 = time.monotonic()
            mesh.stop()
            print(f"mesh stopped in {time.monotonic() - t0:.1f}s")
            drop()
            release()
            for backend in backends:
                backend.shutdown()


if __name__ == "__main__":
    main()
