"""What logging and tracing cost a request: three meshes, one request each in turn, in one run.

    uv run python bench/tracing_bench.py [--gets 600] [--creates 120]

* ``quiet``: text logs at WARNING (no access line), no tracing: the baseline;
* ``default``: text logs at INFO (one access line per API call), no tracing: what ``octavia-mesh up`` runs;
* ``traced``: JSON logs at INFO and OpenTelemetry traces exported (edge, API, worker) to an OTLP/gRPC receiver
  on a free loopback port (``tests/observability/otlp_receiver.py``; the spans it gets are counted).

Each mesh runs the noop provider. The requests go through Envoy (REST): GET one load balancer, and POST a load
balancer (time to 201; the worker applies it behind). The meshes take turns request by request, so load on
the machine weighs on all three alike. Printed: p50/p99 per mesh and the ratios to ``default`` (tracing's
cost) and ``quiet`` (the access line's), and spans received. Every loop is bounded by count; all traffic stays
on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_bench import Http  # noqa: E402
from benchmesh import start_noop_mesh  # noqa: E402

from octavia_mesh.cli.mesh import Mesh  # noqa: E402

PROJECT = "e3cd678b11784734bc366148aa37580e"
SUBNET = "11111111-1111-1111-1111-111111111111"
LB_BODY = {"loadbalancer": {"vip_subnet_id": SUBNET, "project_id": PROJECT}}


#: The OTLP/gRPC receiver the tests use, run as a process of its own (a gRPC server's threads in this process
#: could be inside gRPC when it forks a service, and gRPC's fork handlers can then abort the child).
RECEIVER = Path(__file__).resolve().parents[1] / "tests" / "observability" / "otlp_receiver.py"


PROCESSES = ("envoy", "api", "worker")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(mesh: Mesh) -> dict[str, float]:
    """User + system CPU seconds each of the mesh's :data:`PROCESSES` has used so far."""
    out = {}
    for name in PROCESSES:
        fields = Path(f"/proc/{mesh.supervisor.child(name).process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return out


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return 1000 * statistics.median(ordered), 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def interleaved(calls: dict[str, Callable[[], None]], n: int) -> dict[str, list[float]]:
    """``n`` rounds; in each, every mesh's call once (in a rotating order), timed."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for i in range(n):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            began = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - began)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gets", type=int, default=600, help="GETs per mesh")
    parser.add_argument("--creates", type=int, default=120, help="creates per mesh")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    spans_file = Path(tmp.name) / "spans.jsonl"
    receiver = subprocess.Popen([sys.executable, str(RECEIVER), str(spans_file)], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    port = int(receiver.stdout.readline())

    def received() -> int:
        return spans_file.read_text().count("\n")

    configs = {
        "quiet": {"OCTAVIA_MESH_LOG_LEVEL": "WARNING"},
        "default": {},
        "traced": {"OCTAVIA_MESH_LOG_FORMAT": "json", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"},
    }
    meshes: dict[str, Mesh] = {}
    with tmp:
        try:
            for name, env in configs.items():
                meshes[name] = start_noop_mesh(Path(tmp.name) / name, env, project=PROJECT)
            clients = {name: Http(mesh.endpoint) for name, mesh in meshes.items()}
            lb_ids: dict[str, str] = {}

            def creator(name: str) -> Callable[[], None]:
                def create() -> None:
                    status, raw = clients[name].call("POST", "/v2/lbaas/loadbalancers", LB_BODY)
                    assert status == 201, raw
                    lb_ids.setdefault(name, json.loads(raw)["loadbalancer"]["id"])

                return create

            def getter(name: str) -> Callable[[], None]:
                def get() -> None:
                    status, raw = clients[name].call("GET", f"/v2/lbaas/loadbalancers/{lb_ids[name]}")
                    assert status == 200, raw

                return get

            interleaved({n: creator(n) for n in meshes}, 10)  # warm-up, and the load balancer each GET reads
            interleaved({n: getter(n) for n in meshes}, 50)
            before = received()
            cpu_before = {n: cpu_seconds(m) for n, m in meshes.items()}
            gets = interleaved({n: getter(n) for n in meshes}, args.gets)
            cpu_gets = {n: diff(cpu_seconds(m), cpu_before[n]) for n, m in meshes.items()}
            cpu_before = {n: cpu_seconds(m) for n, m in meshes.items()}
            creates = interleaved({n: creator(n) for n in meshes}, args.creates)
            time.sleep(6)  # the worker's last commands, the last batches of spans (exported every 5 s by default)
            cpu_creates = {n: diff(cpu_seconds(m), cpu_before[n]) for n, m in meshes.items()}
            spans = received() - before
        finally:
            for mesh in meshes.values():
                mesh.stop()
            receiver.terminate()
            receiver.wait(timeout=30)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} CPUs")
    for what, samples in (("GET one load balancer", gets), ("POST load balancer", creates)):
        base_p50, base_p99 = summary(samples["default"])
        quiet_p50, quiet_p99 = summary(samples["quiet"])
        print(f"{what} ({len(samples['default'])} per mesh), p50 / p99 ms:")
        for name in meshes:
            p50, p99 = summary(samples[name])
            print(
                f"  {name:8s} {p50:7.2f} / {p99:7.2f}   vs default x{p50 / base_p50:.2f} / x{p99 / base_p99:.2f}"
                f"   vs quiet x{p50 / quiet_p50:.2f} / x{p99 / quiet_p99:.2f}"
            )
    print("CPU time per request (ms) of envoy / api / worker (load-independent, unlike the latencies):")
    for what, cpu, n in (("GET", cpu_gets, args.gets), ("POST", cpu_creates, args.creates)):
        for name in meshes:
            figures = " / ".join(f"{1000 * cpu[name][p] / n:6.2f}" for p in PROCESSES)
            total = sum(cpu[name].values()) / sum(cpu["default"].values())
            print(f"  {what:4s} {name:8s} {figures}   all three vs default x{total:.2f}")
    requests = args.gets + args.creates
    print(f"spans received from the traced mesh: {spans} ({spans / requests:.1f} per request)")


if __name__ == "__main__":
    main()
