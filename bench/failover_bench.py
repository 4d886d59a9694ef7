"""Failover benchmark: a SINGLE load balancer whose amphora is killed, or hung, against admin failover, in one run.

    uv run python bench/failover_bench.py [--runs 5] [--spares 2] [--heartbeat-timeout 5] [--scan-interval 1]

A client sends one request at a time through the VIP (a fresh connection each, every 10 ms). Each kill run
kills the amphora (SIGKILL of its agent and HAProxy: its heartbeat stream breaks at once) and measures:

* detection: kill -> the health service queues the failover (the outbox row's time): the broken stream is a
  loss at once, claimed after ``loss_confirm_s``;
* rebuild: queued -> the first request served again through the same VIP (a spare from the pool, configured);
* total: kill -> first request served again; and kill -> load balancer ACTIVE (old amphora retired).

Each hang run stops the amphora instead (SIGSTOP of its agent and HAProxy: the stream stays open and goes quiet,
``stream_silence_s``) and measures the same, plus whether every stopped process was fenced (killed).

Then as many admin failovers (``PUT /v2/octavia/amphorae/{id}/failover``) on the same load balancer, timed from
the call to ACTIVE, with the requests that failed meanwhile (make-before-break: none expected). Ratios compare the
rebuild part, and the whole outage, with the admin failover of the same run. Octavia's defaults for reference:
detection alone takes 60-63 s (``heartbeat_timeout`` 60 s + ``health_check_interval`` 3 s), then a VM build.
Everything stays on 127.0.0.0/8; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import http.server
import json
import os
import random
import signal
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select

from octavia_mesh.cli.mesh import Mesh, MeshOptions, grpc_serving
from octavia_mesh.cli.processes import free_port
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import Amphora, AmphoraHealth, ProviderCommand, utcnow
from octavia_mesh.health.failover import AUTOMATIC_FAILOVER
from octavia_mesh.protos.provider.v1 import commands_pb2

LBS = "/v2/lbaas/loadbalancers"
AMPHORAE = "/v2/octavia/amphorae"


def api(endpoint: str, method: str, path: str, body: object = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        endpoint + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:g}s")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy resets idle server connections when it goes: not an error here


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's API
        self.send_response(200)
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"hello\n")

    def log_message(self, *args: object) -> None:
        pass


class Probe:
    """One request at a time through the VIP, each on a fresh connection; successes and failures timed."""

    def __init__(self, address: str, port: int, max_s: float) -> None:
        self.address, self.port, self.max_s = address, port, max_s
        self.ok: list[float] = []
        self.failed: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection(self.address, self.port, timeout=0.5)
                conn.request("GET", "/")
                good = conn.getresponse().status == 200
                conn.close()
            except (OSError, http.client.HTTPException):
                good = False
            (self.ok if good else self.failed).append(time.monotonic())
            time.sleep(0.01)

    def first_ok_after(self, moment: float) -> float | None:
        return next((t for t in list(self.ok) if t > moment), None)

    def back_for_good(self, start: float, end: float) -> float | None:
        """The first success after the last failure between ``start`` and ``end``: when the VIP served again
        for good (a success in the middle of an outage, e.g. a request that got through just before a hung
        HAProxy stopped reading, does not end it)."""
        last_failure = max((t for t in list(self.failed) if start <= t <= end), default=start)
        return self.first_ok_after(last_failure)

    def failures_between(self, start: float, end: float) -> int:
        return sum(1 for t in list(self.failed) if start <= t <= end)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Bench:
    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.db = create_engine(f"sqlite:///{mesh.state / 'octavia-mesh.db'}", connect_args={"timeout": 30})

    def amphora(self, lb_id: str) -> str:
        _, body = api(self.mesh.endpoint, "GET", f"{AMPHORAE}?loadbalancer_id={lb_id}")
        (live,) = [a for a in body["amphorae"] if a["status"] == "ALLOCATED"]
        return str(live["id"])

    def lb_status(self, lb_id: str) -> str:
        return str(api(self.mesh.endpoint, "GET", f"{LBS}/{lb_id}")[1]["loadbalancer"]["provisioning_status"])

    def reporting(self, amphora_id: str) -> bool:
        with self.db.connect() as conn:
            last = conn.scalar(select(AmphoraHealth.last_update).where(AmphoraHealth.amphora_id == amphora_id))
        return last is not None and (utcnow() - last).total_seconds() < 1.5

    def armed(self) -> bool:
        return grpc_serving(self.mesh.grpc_targets["health"], AUTOMATIC_FAILOVER)

    def queued_at(self, amphora_id: str) -> float | None:
        """Wall-clock time the failover of ``amphora_id`` was queued (its outbox row), if it was."""
        with self.db.connect() as conn:
            rows = conn.execute(select(ProviderCommand.payload, ProviderCommand.created_at)).all()
        for payload, created_at in rows:
            command = commands_pb2.ProviderCommand.FromString(payload)
            if (command.kind, command.operation, command.resource_id) == (
                Kind.RESOURCE_KIND_AMPHORA,
                Op.OPERATION_FAILOVER,
                amphora_id,
            ):
                return created_at.replace(tzinfo=dt.UTC).timestamp()
        return None

    def home(self, amphora_id: str) -> Path:
        base = self.mesh.state / "worker" / "amphorae"
        pointer = base.parent / "amphorae.location"
        if pointer.exists():
            base = Path(pointer.read_text().strip())
        return base / amphora_id.replace("-", "")[:12]

    def spares(self) -> int:
        with self.db.connect() as conn:
            return int(
                conn.scalar(
                    select(func.count())
                    .select_from(Amphora)
                    .where(Amphora.status == "READY", Amphora.load_balancer_id.is_(None))
                )
                or 0
            )

    def kill(self, amphora_id: str, signum: int = signal.SIGKILL) -> tuple[float, float, list[int]]:
        """Signal the agent and HAProxy of ``amphora_id``: when (monotonic, wall), and the processes.

        The processes are found first (reading /proc takes a while on a busy machine), then the clock is read
        and the signals sent, so that no request served before the kill counts as served after it."""
        needle = str(self.home(amphora_id)).encode() + b"/"
        victims = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and needle in (proc / "cmdline").read_bytes():
                    victims.append(int(proc.name))
            except OSError:
                continue
        moment = (time.monotonic(), time.time())
        for pid in victims:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        return moment[0], moment[1], victims


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def summary(name: str, values: list[float]) -> str:
    return f"{name:<44} p50 {pct(values, 0.5):6.2f} s   p99 {pct(values, 0.99):6.2f} s   (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--heartbeat-timeout", type=float, default=5.0, help="the health service's default: 5")
    parser.add_argument("--scan-interval", type=float, default=1.0, help="the health service's default: 1")
    parser.add_argument("--spares", type=int, default=2, help="spare amphorae in the pool (the default: 2; 0: none)")
    args = parser.parse_args()

    backend = QuietServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
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
                service_env={
                    "OCTAVIA_MESH_HEALTH_HEARTBEAT_TIMEOUT_S": str(args.heartbeat_timeout),
                    "OCTAVIA_MESH_HEALTH_FAILOVER_SCAN_INTERVAL_S": str(args.scan_interval),
                    "OCTAVIA_MESH_WORKER_SPARE_AMPHORAE": str(args.spares),
                },
            )
        )
        mesh.start()
        probe: Probe | None = None
        try:
            bench = Bench(mesh)
            tree = {
                "loadbalancer": {
                    "name": "failover-bench",
                    "vip_subnet_id": mesh.local_subnet(),
                    # Away from the low addresses other meshes on this machine allocate first (SO_REUSEPORT).
                    "vip_address": f"127.226.{random.randint(64, 250)}.{random.randint(2, 250)}",
                    "listeners": [
                        {
                            "protocol": "HTTP",
                            "protocol_port": 80,
                            "default_pool": {
                                "protocol": "HTTP",
                                "lb_algorithm": "ROUND_ROBIN",
                                "members": [{"address": "127.0.0.1", "protocol_port": backend.server_address[1]}],
                            },
                        }
                    ],
                }
            }
            status, body = api(mesh.endpoint, "POST", LBS, tree)
            assert status == 201, body
            lb = body["loadbalancer"]
            wait_for(lambda: bench.lb_status(lb["id"]) == "ACTIVE", 60, "the load balancer")
            probe = Probe(lb["vip_address"], 80, max_s=60 + args.runs * 120)
            wait_for(lambda: probe.ok, 10, "the first request through the VIP")

            detect, rebuild, total, to_active, kill_failed = [], [], [], [], []
            hang_detect, hang_total, hang_active, unfenced = [], [], [], []
            for run in range(args.runs * 2):
                hang = run >= args.runs
                old = bench.amphora(lb["id"])
                wait_for(lambda old=old: bench.reporting(old), 30, "heartbeats of the amphora")
                wait_for(bench.armed, 60, "automatic failover to be armed (start-up grace)", interval=0.1)
                wait_for(lambda: bench.spares() >= args.spares, 60, "the pool to be full")
                time.sleep(0.5)
                killed_at, killed_wall, pids = bench.kill(old, signal.SIGSTOP if hang else signal.SIGKILL)
                assert len(pids) >= 2, "an agent and its HAProxy"
                if hang:
                    queued = wait_for(lambda old=old: bench.queued_at(old), 60, "the failover")
                    wait_for(lambda: bench.lb_status(lb["id"]) == "ACTIVE", 60, "ACTIVE after the failover")
                    active = time.monotonic()
                    time.sleep(0.5)
                    back = wait_for(lambda k=killed_at, a=active: probe.back_for_good(k, a), 10, "service again")
                    hang_active.append(active - killed_at)
                    hang_detect.append(queued - killed_wall)
                    hang_total.append(back - killed_at)
                    left = [p for p in pids if alive(p)]
                    unfenced.append(len(left))
                    for pid in left:  # a failed fence must not leave stopped processes behind the benchmark
                        os.kill(pid, signal.SIGKILL)
                    print(
                        f"hang {run + 1 - args.runs}: queued after {hang_detect[-1]:.2f}s, serving after "
                        f"{hang_total[-1]:.2f}s, ACTIVE after {hang_active[-1]:.2f}s, {len(left)} processes unfenced"
                    )
                    continue
                queued = wait_for(lambda old=old: bench.queued_at(old), args.heartbeat_timeout + 30, "the failover")
                wait_for(lambda: bench.lb_status(lb["id"]) == "ACTIVE", 60, "ACTIVE after the failover")
                active = time.monotonic()
                time.sleep(0.5)
                back = wait_for(lambda k=killed_at, a=active: probe.back_for_good(k, a), 10, "service again")
                detect.append(queued - killed_wall)
                total.append(back - killed_at)
                rebuild.append(total[-1] - detect[-1])
                to_active.append(active - killed_at)
                kill_failed.append(probe.failures_between(killed_at, active))
                print(
                    f"kill {run + 1}: queued after {detect[-1]:.2f}s, serving after {total[-1]:.2f}s, "
                    f"ACTIVE after {to_active[-1]:.2f}s"
                )

            admin, admin_failed = [], []
            for run in range(args.runs):
                old = bench.amphora(lb["id"])
                time.sleep(0.5)
                asked = time.monotonic()
                status, body = api(mesh.endpoint, "PUT", f"{AMPHORAE}/{old}/failover")
                assert status == 202, body
                wait_for(lambda: bench.lb_status(lb["id"]) == "ACTIVE", 60, "ACTIVE after the admin failover")
                done = time.monotonic()
                admin.append(done - asked)
                admin_failed.append(probe.failures_between(asked, done))
                print(f"admin {run + 1}: ACTIVE after {admin[-1]:.2f}s, {admin_failed[-1]} requests failed")
        finally:
            if probe is not None:
                probe.stop()
            mesh.stop()
            backend.shutdown()

    print()
    print(
        f"SINGLE failover of a killed amphora (heartbeat timeout {args.heartbeat_timeout:g}s, "
        f"scan every {args.scan_interval:g}s, {args.spares} spares), {args.runs} runs:"
    )
    print(summary("  detection (kill -> failover queued)", detect))
    print(summary("  rebuild (queued -> first request served)", rebuild))
    print(summary("  outage (kill -> first request served)", total))
    print(summary("  kill -> load balancer ACTIVE", to_active))
    print(f"  requests failed per kill (10 ms probe): {kill_failed}")
    print(f"SINGLE failover of a hung amphora (agent and HAProxy SIGSTOPped), {args.runs} runs:")
    print(summary("  detection (stop -> failover queued)", hang_detect))
    print(summary("  outage (stop -> first request served)", hang_total))
    print(summary("  stop -> load balancer ACTIVE", hang_active))
    print(f"  stopped processes left unfenced per run: {unfenced}")
    print("Admin failover (PUT /v2/octavia/amphorae/{id}/failover), same load balancer, same run:")
    print(summary("  call -> load balancer ACTIVE", admin))
    print(f"  requests failed per admin failover: {admin_failed}")
    print("Ratios (p50):")
    print(f"  rebuild / admin failover:  {statistics.median(rebuild) / statistics.median(admin):.2f}")
    print(f"  outage / admin failover:   {statistics.median(total) / statistics.median(admin):.2f}")
    print(f"  hang outage / admin:       {statistics.median(hang_total) / statistics.median(admin):.2f}")
    print(f"  detection share of outage: {statistics.median(detect) / statistics.median(total):.0%}")
    print("Octavia (defaults, derived): detection alone 60-63 s, then a VM build; 68-72 s observed for LB failover.")


if __name__ == "__main__":
    main()
