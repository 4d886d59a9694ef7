"""ACTIVE_STANDBY benchmark: how long the VIP goes unanswered while the standby takes over, in one run.

    uv run python bench/active_standby_bench.py [--trials 5] [--adverts 1,0.1] [--single-trials 3]

Needs root (network namespaces, keepalived; keepalived is installed from the distribution's packages when
missing). For each VRRP advertisement interval it starts a mesh, builds an ACTIVE_STANDBY load balancer
(the bench flavor) and a SINGLE one, polls each VIP every 5 ms on a fresh connection (100 ms timeout), and
measures the service gap (from the failure to the first answer after the last failed poll), p50 and max:

* **amphora death**: every process of the master's namespace SIGKILLed (agent, HAProxy, keepalived) and its
  link set down, as when the VM dies; the dead amphora is then rebuilt by an amphora failover (timed too);
* **graceful**: the master's keepalived SIGTERMed (it advertises priority 0; the baseline VRRP allows);
* **HAProxy death**: the master's HAProxy SIGKILLed (its agent restarts it; keepalived's check need not act);
* **SINGLE baseline**: the SINGLE load balancer's amphora killed the same way, then an amphora failover
  rebuilds it: the gap a SINGLE topology has (Octavia rebuilds the same way, in minutes on VMs).

Backends are an HAProxy answering by itself. Traffic stays on 127.0.0.0/8 and the bench's own namespaces;
every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataplane_bench import backend_farm, fetch  # noqa: E402

from octavia_mesh.cli.mesh import Mesh, MeshOptions  # noqa: E402
from octavia_mesh.cli.processes import free_port  # noqa: E402

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def ensure_keepalived() -> None:
    if shutil.which("keepalived", path=SBIN_PATH) is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "keepalived"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=True)


def api(endpoint: str, method: str, path: str, body: object = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        endpoint + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode()}


def wait_value(get: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = get()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(what)


def wait(predicate: Callable[[], object], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.01)
    raise TimeoutError(what)


class Poller:
    """GET the VIP every ``period_s`` on a fresh connection; records (time, ok)."""

    def __init__(self, address: str, port: int, period_s: float = 0.005) -> None:
        self.address, self.port, self.period_s = address, port, period_s
        self.results: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 600  # bounded whatever happens
        while not self._stop.is_set() and time.monotonic() < deadline:
            ok = fetch_quick(self.address, self.port) is not None
            self.results.append((time.monotonic(), ok))
            time.sleep(self.period_s)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def longest_gap(self, since: float) -> float:
        """The longest time without a successful poll from ``since`` on (a poll every 5 ms when all is well)."""
        times = [since, *(t for t, ok in self.results if ok and t >= since)]
        return max(b - a for a, b in zip(times, times[1:], strict=False)) if len(times) > 1 else 0.0

    def failed(self, since: float) -> int:
        return sum(1 for t, ok in self.results if not ok and t >= since)

    def gap(self, since: float) -> tuple[float, int]:
        """Seconds from ``since`` to the first success after the last failure, and the failed polls."""
        after = [(t, ok) for t, ok in self.results if t >= since]
        failed = [t for t, ok in after if not ok]
        if not failed:
            return 0.0, 0
        recovered = next((t for t, ok in after if ok and t > failed[-1]), failed[-1])
        return recovered - since, len(failed)


def fetch_quick(address: str, port: int) -> str | None:
    import http.client

    try:
        conn = http.client.HTTPConnection(address, port, timeout=0.1)
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode().strip()
        conn.close()
        return body if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False).stdout


def netns(amphora_id: str) -> str:
    return f"om-amp-{amphora_id.replace('-', '')[:12]}"


def home(mesh: Mesh, amphora_id: str) -> Path:
    base = mesh.state / "worker" / "amphorae"
    pointer = base.parent / "amphorae.location"
    base = Path(pointer.read_text().strip()) if pointer.exists() else base
    return base / amphora_id.replace("-", "")[:12]


class Lb:
    def __init__(self, mesh: Mesh, lb: dict) -> None:
        self.mesh, self.id, self.vip = mesh, lb["id"], lb["vip_address"]

    def amphorae(self) -> list[dict]:
        _, body = api(self.mesh.endpoint, "GET", f"/v2/octavia/amphorae?loadbalancer_id={self.id}")
        return [a for a in body["amphorae"] if a["status"] == "ALLOCATED"]

    def holder(self) -> dict | None:
        """The amphora holding the VIP (None while it moves)."""
        return next(
            (a for a in self.amphorae() if f" {self.vip}/" in ip("-n", netns(a["id"]), "-4", "-o", "addr")), None
        )

    def holder_id(self) -> str:
        holder = wait_value(self.holder, 30, "an amphora holding the VIP")
        return str(holder["id"])

    def active(self) -> bool:
        _, body = api(self.mesh.endpoint, "GET", f"/v2/lbaas/loadbalancers/{self.id}")
        assert body["loadbalancer"]["provisioning_status"] != "ERROR", body
        return body["loadbalancer"]["provisioning_status"] == "ACTIVE"

    def failover(self, amphora_id: str) -> float:
        start = time.monotonic()
        status, body = api(self.mesh.endpoint, "PUT", f"/v2/octavia/amphorae/{amphora_id}/failover")
        assert status == 202, body
        time.sleep(0.2)
        wait(self.active, 120, "the failover to finish")
        return time.monotonic() - start


def kill_namespace(amphora_id: str) -> None:
    for pid in ip("netns", "pids", netns(amphora_id)).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            continue
    ip("-n", netns(amphora_id), "link", "set", "eth0", "down")


def kill_amphora_processes(mesh: Mesh, amphora_id: str) -> None:
    """A SINGLE amphora's death: its agent and HAProxy (everything naming its directory) SIGKILLed."""
    needle = str(home(mesh, amphora_id)).encode() + b"/"
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue


def stats(values: list[float]) -> str:
    if not values:
        return "-"
    return f"p50 {1000 * statistics.median(values):6.0f} ms   max {1000 * max(values):6.0f} ms   (n={len(values)})"


def run_advert(advert: float, args: argparse.Namespace, work: Path, farm_ports: list[int]) -> dict[str, list[float]]:
    mesh = Mesh(
        MeshOptions(
            host="127.0.0.1",
            port=free_port(),
            state_dir=work / f"mesh-{advert}",
            database_url=None,
            nats_url=None,
            auth_strategy="noauth",
            start_timeout=60.0,
            default_project="bench",
            default_provider="amphora",
            service_env={"OCTAVIA_MESH_WORKER_VRRP_ADVERT_INT_S": str(advert)},
        )
    )
    mesh.start()
    kinds = ("death", "failed_death", "graceful", "haproxy", "rebuild", "rebuild_gap", "rebuild_failed", "single")
    out: dict[str, list[float]] = {k: [] for k in kinds}
    lbs: list[str] = []
    try:
        endpoint = mesh.endpoint
        _, profile = api(
            endpoint,
            "POST",
            "/v2/lbaas/flavorprofiles",
            {
                "flavorprofile": {
                    "name": "ha",
                    "provider_name": "amphora",
                    "flavor_data": '{"loadbalancer_topology": "ACTIVE_STANDBY"}',
                }
            },
        )
        _, flavor = api(
            endpoint,
            "POST",
            "/v2/lbaas/flavors",
            {"flavor": {"name": "ha", "flavor_profile_id": profile["flavorprofile"]["id"]}},
        )
        subnet = mesh.local_subnet()
        listener = {
            "protocol": "HTTP",
            "protocol_port": 80,
            "default_pool": {
                "protocol": "HTTP",
                "lb_algorithm": "ROUND_ROBIN",
                "members": [{"address": "127.0.0.1", "protocol_port": p} for p in farm_ports],
            },
        }

        def create(name: str, **extra: object) -> Lb:
            status, body = api(
                endpoint,
                "POST",
                "/v2/lbaas/loadbalancers",
                {"loadbalancer": {"name": name, "vip_subnet_id": subnet, "listeners": [listener], **extra}},
            )
            assert status == 201, body
            lb = Lb(mesh, body["loadbalancer"])
            lbs.append(lb.id)
            wait(lb.active, 120, f"{name} ACTIVE")
            wait(lambda: fetch(lb.vip, 80) is not None, 30, f"{name} serving")
            return lb

        # VIPs of the subnet's upper range: an ACTIVE_STANDBY VIP is routed to its bridge machine-wide, which would
        # hide another mesh's SINGLE load balancer that got the same (lowest free) address.
        pair = create("pair", flavor_id=flavor["flavor"]["id"], vip_address=f"127.226.229.{7 + len(lbs)}")
        single = create("single", vip_address=f"127.226.229.{7 + len(lbs)}")
        with Poller(pair.vip, 80) as poller:
            for _ in range(args.trials):  # amphora death, then rebuild the dead one
                victim = pair.holder_id()
                time.sleep(0.5)
                killed = time.monotonic()
                kill_namespace(victim)
                wait(lambda: fetch_quick(pair.vip, 80) is not None, 30, "takeover")
                time.sleep(0.3)
                gap, failed = poller.gap(killed)
                out["death"].append(gap)
                out["failed_death"].append(failed)
                rebuilding = time.monotonic()
                out["rebuild"].append(pair.failover(victim))
                out["rebuild_gap"].append(poller.longest_gap(rebuilding))
                out["rebuild_failed"].append(poller.failed(rebuilding))
            for _ in range(args.trials):  # graceful: keepalived SIGTERM (the agent restarts it, as BACKUP)
                victim = pair.holder_id()
                pid = int((home(mesh, victim) / "state" / "vrrp" / "keepalived.pid").read_text())
                time.sleep(0.5)
                stopped = time.monotonic()
                os.kill(pid, signal.SIGTERM)
                wait(lambda v=victim: (pair.holder() or {"id": v})["id"] != v, 30, "graceful takeover")
                time.sleep(0.5)
                out["graceful"].append(poller.gap(stopped)[0])
                time.sleep(1.0)
            for _ in range(args.trials):  # HAProxy death on the master
                victim = pair.holder_id()
                pidfile = home(mesh, victim) / "state" / "lb" / pair.id / "haproxy.pid"
                pid = int(pidfile.read_text())
                time.sleep(0.5)
                killed = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                wait(lambda p=pid, f=pidfile: int(f.read_text()) != p, 30, "HAProxy restarted")
                time.sleep(0.5)
                out["haproxy"].append(poller.gap(killed)[0])
        with Poller(single.vip, 80) as poller:
            for _ in range(args.single_trials):
                (amphora,) = single.amphorae()
                time.sleep(0.5)
                killed = time.monotonic()
                kill_amphora_processes(mesh, amphora["id"])
                single.failover(amphora["id"])
                wait(lambda: fetch_quick(single.vip, 80) is not None, 30, "SINGLE serving again")
                time.sleep(0.3)
                out["single"].append(poller.gap(killed)[0])
    finally:
        for lb_id in lbs:
            api(mesh.endpoint, "DELETE", f"/v2/lbaas/loadbalancers/{lb_id}?cascade=true")
        time.sleep(3)
        mesh.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--single-trials", type=int, default=3)
    parser.add_argument("--adverts", default="1,0.1", help="VRRP advertisement intervals to compare, seconds")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("active_standby_bench: needs root (network namespaces and keepalived)")
    ensure_keepalived()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ports = [free_port() for _ in range(2)]
        farm = backend_farm(ports, work)
        try:
            for advert in [float(a) for a in args.adverts.split(",")]:
                results[advert] = run_advert(advert, args, work, ports)
        finally:
            farm.terminate()
            farm.wait()

    print("\nACTIVE_STANDBY benchmark: service gap seen by a client polling the VIP every 5 ms\n")
    for advert, out in results.items():
        single = statistics.median(out["single"]) if out["single"] else 0.0
        death = statistics.median(out["death"]) if out["death"] else 0.0
        graceful = statistics.median(out["graceful"]) if out["graceful"] else 0.0
        print(f"advert_int {advert:g} s")
        print(f"  master amphora dies (SIGKILL all + link down): {stats(out['death'])}")
        print(f"    failed polls per trial: {', '.join(str(int(n)) for n in out['failed_death'])}")
        print(f"  master keepalived SIGTERM (graceful baseline):  {stats(out['graceful'])}")
        print(f"  master HAProxy SIGKILL (agent restarts it):      {stats(out['haproxy'])}")
        print(f"  rebuild of the dead amphora (amphora failover): {stats(out['rebuild'])}")
        print(f"    meanwhile, longest time without an answer:   {stats(out['rebuild_gap'])}")
        print(f"    failed polls per rebuild: {', '.join(str(int(n)) for n in out['rebuild_failed'])}")
        print(f"  SINGLE amphora dies, failover rebuilds it:       {stats(out['single'])}")
        if single:
            print(f"  ratio ACTIVE_STANDBY death / SINGLE failover gap: {death / single:.2f}")
        if graceful:
            print(f"  ratio death / graceful: {death / graceful:.1f}")


if __name__ == "__main__":
    main()
