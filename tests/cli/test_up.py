"""`octavia-mesh up` as a user runs it: a real subprocess that starts everything, restarts what exits, and
stops everything."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from octavia_mesh.cli.mesh import default_api_processes, grpc_serving
from octavia_mesh.cli.processes import LaunchError, find_binary, free_port

OCTAVIA_MESH = str(Path(sys.executable).parent / "octavia-mesh")
#: The API processes `up` starts by default (one per core, at most 4): "api", "api-2", ...
API_NAMES = ["api", *(f"api-{n}" for n in range(2, default_api_processes() + 1))]
#: Everything `up` starts: nats, the API processes, worker, health, housekeeping, driver-agent, envoy.
CHILDREN = 6 + len(API_NAMES)


def _children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_up(state: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    """``octavia-mesh up`` in a subprocess, once it printed its banner (returned)."""
    proc = subprocess.Popen(
        [OCTAVIA_MESH, "up", "--port", str(port), "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    banner = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError(f"octavia-mesh exited: {proc.stderr.read()}")
        banner.append(line)
        if line.startswith("Ctrl-C"):
            break
    return proc, "".join(banner)


def test_up_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc, text = _start_up(tmp_path, port)
    try:
        assert f"http://127.0.0.1:{port}" in text and "load_balancer_endpoint_override" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.status == 200
        _printed_clouds_yaml_works_with_the_cli(text, tmp_path)
        children = _children_of(proc.pid)
        assert len(children) == CHILDREN
        ports = json.loads((tmp_path / "ports.json").read_text())
        assert all(grpc_serving(f"127.0.0.1:{ports[name]}") for name in API_NAMES)
        assert {p.name for p in (tmp_path / "logs").iterdir()} == {
            "nats.log",
            *(f"{name}.log" for name in API_NAMES),
            "worker.log",
            "health.log",
            "housekeeping.log",
            "driver-agent.log",
            "envoy.log",
            "envoy-access.log",  # the edge's JSON access log
        }
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _printed_clouds_yaml_works_with_the_cli(banner: str, tmp_path: Path) -> None:
    """The banner's clouds.yaml, as a newcomer pastes it: `openstack loadbalancer create` works out of the box
    (the subnet lookup goes to the edge; noauth gives the call the default project)."""
    clouds = banner.split("clouds.yaml:\n", 1)[1].split("\n\n", 1)[0] + "\n"
    assert "network_endpoint_override" in clouds
    (tmp_path / "clouds.yaml").write_text(clouds)
    subnet = next(line.split(":", 1)[1].strip() for line in banner.splitlines() if "local VIP subnet" in line)
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml"), "OS_CLOUD": "octavia-mesh"}
    created = subprocess.run(
        [str(Path(sys.executable).parent / "openstack"), "loadbalancer", "create", "--vip-subnet-id", subnet]
        + ["--provider", "noop", "--wait", "-f", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    lb = json.loads(created.stdout)
    assert lb["project_id"] == "demo" and lb["provisioning_status"] == "ACTIVE"


def test_a_killed_up_takes_its_services_with_it(tmp_path: Path) -> None:
    proc, _ = _start_up(tmp_path, free_port())
    children = _children_of(proc.pid)
    try:
        assert len(children) == CHILDREN
        proc.kill()  # SIGKILL: no chance to stop anything itself
        proc.wait()
        # Each service stops gracefully on the SIGTERM (the worker takes longest: NATS went at the same moment);
        # the bound is about "they go", with room for a loaded machine, not about how fast.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and [pid for pid in children if _alive(pid)]:
            time.sleep(0.1)
        assert not [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children if _alive(pid)]
    finally:
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _child_running(up: int, module: str) -> int:
    for pid in _children_of(up):
        with_args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if module.encode() in with_args and _alive(pid):
            return pid
    raise AssertionError(f"no {module} under octavia-mesh up")


@pytest.mark.timeout(240)
def test_a_killed_service_is_restarted_on_its_port_and_nothing_else_moves(tmp_path: Path) -> None:
    """SIGKILL the driver agent and take its port before it is back: the new one cannot bind (no SO_REUSEPORT
    sharing), is retried with a back-off, and serves on the same port once the port is free; the other services
    are never touched; a clear line says what happened."""
    edge = free_port()
    proc, _ = _start_up(tmp_path, edge)
    try:
        others = _children_of(proc.pid)
        victim = _child_running(proc.pid, "octavia_mesh.driver_agent")
        port = json.loads((tmp_path / "ports.json").read_text())["driver-agent"]
        with socket.socket() as squatter:
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while True:  # the killed service's socket goes with it; take the port before the restart binds
                try:
                    squatter.bind(("127.0.0.1", port))
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the killed driver agent's port stayed taken"
                    time.sleep(0.01)
            squatter.listen()
            log = tmp_path / "logs" / "driver-agent.log"
            deadline = time.monotonic() + 120
            while log.read_text().count("restarting it in") < 3:  # the kill, then two failed starts
                assert time.monotonic() < deadline, "the driver agent was not retried"
                assert proc.poll() is None
                time.sleep(0.1)
        deadline = time.monotonic() + 90
        while not grpc_serving(f"127.0.0.1:{port}"):
            assert time.monotonic() < deadline, "the driver agent did not come back on its port"
            time.sleep(0.1)
        assert "Failed to bind to address" in log.read_text()
        still = _children_of(proc.pid)
        assert others - {victim} <= still and len(still) == CHILDREN  # nothing else was restarted or stopped
        with urllib.request.urlopen(f"http://127.0.0.1:{edge}/", timeout=5) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        stderr = proc.stderr.read()
        assert "octavia-mesh: driver-agent was killed by signal 9 after" in stderr
        assert "octavia-mesh: driver-agent exited with code 1 after" in stderr
        assert "octavia-mesh: restarted driver-agent" in stderr
        assert not [pid for pid in still if _alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_taken_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [OCTAVIA_MESH, "up", "--port", str(port), "--state-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 is taken" in done.stderr
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_missing_binary_is_named() -> None:
    with pytest.raises(LaunchError, match="no-such-server is not installed: install it"):
        find_binary("no-such-server", "install it")


def test_edge_config_renders() -> None:
    done = subprocess.run(
        [OCTAVIA_MESH, "edge-config", "--api-host", "api", "--api-port", "50051"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"octavia_mesh.lbaas.v2.LoadBalancers"' in done.stdout
    assert os.path.basename(done.stdout.split('"proto_descriptor": "')[1].split('"')[0]) == "lbaas_v2.pb"


def test_keep_amphorae_and_down_are_offered(tmp_path: Path) -> None:
    """`up --keep-amphorae` leaves the amphorae serving at Ctrl-C (tests/resilience/test_mesh_restart.py runs
    it); `down` stops what it left, and finds nothing to stop in a state directory with no amphorae."""
    helped = subprocess.run([OCTAVIA_MESH, "up", "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "--keep-amphorae" in helped.stdout
    done = subprocess.run(
        [OCTAVIA_MESH, "down", "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "octavia-mesh: amphorae stopped")
