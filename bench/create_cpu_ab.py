"""API CPU per create, A/B: this checkout's API against another commit's, side by side in one mesh.

    uv run python bench/create_cpu_ab.py [--base main] [--creates 100] [--rounds 6] [--database-url URL]
                                         [--profile A|B --profile-out F]

One mesh (no-op provider, its own NATS, SQLite unless ``--database-url``) with its own API process, plus two
more API processes on the same database and NATS: A runs this checkout, B the sources of ``--base`` (a commit,
``git archive``-d into a temporary directory and put first on B's ``PYTHONPATH``). Both are ordinary
non-owner API processes (as ``api-2`` of a mesh with two): each publishes the commands it commits. With
``--owner`` each is the outbox's owner instead (as ``api``: its relay sweeps the outbox after each commit),
one at a time: a fresh process per side and round (the mesh's own API process is then no owner).

The rounds interleave A and B (rotating who goes first): ``--creates`` sequential ``CreateLoadBalancer`` calls
straight to the process's gRPC port, timed to the answer, with the process's CPU time (``/proc/PID/stat``
utime + stime) read before and after. Printed: CPU ms per create and p50 latency of each side, and the 1-minute
load average. ``--profile A`` runs py-spy (``--format raw``) on A during its rounds (slower: compare only
runs without it). Every loop is bounded by count and time; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.api import httpbody_pb2

from octavia_mesh.cli.mesh import Mesh, MeshOptions, grpc_serving
from octavia_mesh.cli.processes import free_port
from octavia_mesh.protos.lbaas.v2 import loadbalancers_pb2_grpc, requests_pb2

ROOT = Path(__file__).resolve().parents[1]
#: Where the workspace's packages keep their sources (the editable installs' paths).
SOURCES = (
    "cli/src",
    "common/src",
    "services/api/src",
    "protos/gen",
    "sdk/src",
)
BODY = {"loadbalancer": {"vip_subnet_id": "11111111-1111-1111-1111-111111111111", "project_id": "bench"}}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def export(commit: str, into: Path) -> str:
    """The workspace's sources at ``commit`` under ``into``; returns the ``PYTHONPATH`` that selects them."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, *SOURCES], capture_output=True, check=True, timeout=120
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=120)
    return os.pathsep.join(str(into / s) for s in SOURCES)


@dataclass
class Side:
    """One API process under test (started and stopped by :meth:`running`)."""

    name: str
    pythonpath: str | None  # None: this checkout
    env: dict[str, str]
    logs: Path
    owner: bool = False
    process: subprocess.Popen[bytes] | None = None
    address: str = ""
    cpu: list[float] = field(default_factory=list)  # seconds per create, one per round
    latencies: list[float] = field(default_factory=list)

    @contextlib.contextmanager
    def running(self) -> Iterator[Side]:
        port = free_port()
        env = {
            **self.env,
            "OCTAVIA_MESH_API_GRPC_LISTEN": f"127.0.0.1:{port}",
            "OCTAVIA_MESH_API_OUTBOX_OWNER": "true" if self.owner else "false",
            "OCTAVIA_MESH_API_METRICS_LISTEN": "",
        }
        if self.pythonpath is not None:
            env["PYTHONPATH"] = self.pythonpath
        path = self.logs / f"ab-{self.name}.log"
        with path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "octavia_mesh.api"], env=env, stdout=log, stderr=log)
            try:
                deadline = time.monotonic() + 60
                while not grpc_serving(f"127.0.0.1:{port}"):
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"API {self.name} did not start: see {path}")
                    time.sleep(0.2)
                self.address = f"127.0.0.1:{port}"
                creates(self, 20)  # warm-up: the channel, the statement caches, the provider's facts
                yield self
            finally:
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()


def api_environment(pid: int) -> dict[str, str]:
    """The environment the mesh gave its API process."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def creates(side: Side, count: int) -> tuple[float, list[float]]:
    """``count`` sequential creates on ``side``: its CPU seconds spent and each call's latency."""
    assert side.process is not None
    stub = loadbalancers_pb2_grpc.LoadBalancersStub(grpc.insecure_channel(side.address))
    body = httpbody_pb2.HttpBody(content_type="application/json", data=json.dumps(BODY).encode())
    request = requests_pb2.CollectionRequest(body=body)
    latencies = []
    before = cpu_seconds(side.process.pid)
    for _ in range(count):
        t0 = time.perf_counter()
        reply, call = stub.CreateLoadBalancer.with_call(request, timeout=30)
        latencies.append(time.perf_counter() - t0)
        status = dict(call.initial_metadata()).get("x-http-code")
        assert status == "201", (status, reply.data[:200])
    return cpu_seconds(side.process.pid) - before, latencies


@contextlib.contextmanager
def profiled(pid: int, out: Path) -> Iterator[None]:
    """py-spy on ``pid`` meanwhile: raw stacks, 500 Hz, only the thread holding the GIL (its Python CPU), without
    pausing the process."""
    spy = subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--format", "raw"]
        + ["--rate", "500", "--gil", "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="main", help="B's commit (default main)")
    parser.add_argument("--creates", type=int, default=100, help="per side and round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--owner", action="store_true", help="A and B own the outbox (one at a time)")
    parser.add_argument("--profile", choices=("A", "B"), default=None, help="py-spy on this side's rounds")
    parser.add_argument("--profile-out", type=Path, default=Path("create-profile.txt"))
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        (tmp / "base").mkdir()
        base_path = export(args.base, tmp / "base")
        mesh = Mesh(
            MeshOptions(
                host="127.0.0.1",
                port=free_port(),
                state_dir=tmp / "mesh",
                database_url=args.database_url,
                nats_url=None,
                auth_strategy="noauth",
                start_timeout=60.0,
                default_provider="noop",
                service_env={"OCTAVIA_MESH_API_OUTBOX_OWNER": "false"} if args.owner else {},
            )
        )
        mesh.start()
        stack.callback(mesh.stop)
        env = api_environment(mesh.supervisor.child("api").process.pid)
        sides = [Side("A", None, env, mesh.logs, args.owner), Side("B", base_path, env, mesh.logs, args.owner)]
        if not args.owner:  # both up all along, each measured in turn
            for side in sides:
                stack.enter_context(side.running())
        loads = [os.getloadavg()[0]]
        for round_ in range(args.rounds):
            for side in sides[round_ % 2 :] + sides[: round_ % 2]:
                with contextlib.ExitStack() as during:
                    if args.owner:
                        during.enter_context(side.running())
                    assert side.process is not None
                    if args.profile == side.name:
                        during.enter_context(profiled(side.process.pid, args.profile_out.with_suffix(f".{round_}.txt")))
                    cpu, latencies = creates(side, args.creates)
                side.cpu.append(cpu / args.creates)
                side.latencies.extend(latencies)
            loads.append(os.getloadavg()[0])
        role = "owners of the outbox" if args.owner else "non-owners"
        print(f"{args.rounds} rounds of {args.creates} sequential creates per side ({role}), {os.cpu_count()} cores")
        for side in sides:
            per_round = " ".join(f"{1000 * c:.2f}" for c in side.cpu)
            cpu = 1000 * statistics.median(side.cpu)
            p50 = 1000 * statistics.median(side.latencies)
            code = "this checkout" if side.pythonpath is None else args.base
            print(f"{side.name} ({code}): CPU {cpu:.2f} ms/create (rounds: {per_round}), latency p50 {p50:.2f} ms")
        print(f"load average (1 min) during the rounds: {statistics.mean(loads):.2f} (max {max(loads):.2f})")


if __name__ == "__main__":
    main()
