"""Local amphorae served by one amphora host process (``OCTAVIA_MESH_WORKER_LOCAL_AMPHORAE=shared``), on a whole
mesh: real host, real HAProxy, real heartbeat streams, traffic through the VIPs.

* three load balancers' amphorae run in one host process (no agent process of their own), each serving its own
  VIP, each on its own port with its own certificate: the controller's client reaches an amphora only under that
  amphora's own name, and the host answers as that amphora; their heartbeats share one batched call;
* killing one amphora (fenced through the host, as a dead VM) takes down exactly its HAProxy, server and
  heartbeat stream: the other load balancers serve on without a failed request, the host keeps running, and the
  killed one is failed over (to an amphora of the same host) and serves again;
* deleting a load balancer retires only its amphora.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataplane"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataplane_helpers import (  # noqa: E402
    LBS,
    Backend,
    amphora_base,
    amphora_home,
    amphorae_of,
    delete_lb,
    get,
    local_subnet,
    processes_mentioning,
    wait_lb,
    wait_until,
)
from support import Rest, random_vip_in, start_mesh  # noqa: E402
from test_failover import Traffic, wait_armed  # noqa: E402

from octavia_mesh.cli.mesh import Mesh  # noqa: E402
from octavia_mesh.protos.agent.v1 import agent_pb2, agent_pb2_grpc  # noqa: E402
from octavia_mesh.worker.drivers.certificates import LocalCertificateDriver, amphora_identity  # noqa: E402

ENV = {
    "OCTAVIA_MESH_WORKER_LOCAL_AMPHORAE": "shared",
    "OCTAVIA_MESH_WORKER_SPARE_AMPHORAE": "1",
    "OCTAVIA_MESH_HEALTH_FAILOVER_STARTUP_GRACE_S": "6",
}


@pytest.fixture(scope="module")
def smesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from start_mesh(tmp_path_factory, "noauth", "shared", "amphora", service_env=ENV)


@pytest.fixture(scope="module")
def api(smesh: Mesh) -> Rest:
    return Rest(smesh.endpoint)


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    member = Backend("member0")
    yield member
    member.close()


@pytest.fixture(scope="module")
def three(smesh: Mesh, api: Rest, backend: Backend) -> Iterator[list[dict[str, Any]]]:
    """Three load balancers, each a listener, a pool and one member, created in one call each."""
    subnet = local_subnet(api)
    lbs = []
    for n in range(3):
        tree = {
            "name": f"shared-{n}",
            "vip_subnet_id": subnet,
            "vip_address": random_vip_in(api),
            "listeners": [
                {
                    "protocol": "HTTP",
                    "protocol_port": 80,
                    "default_pool": {
                        "protocol": "HTTP",
                        "lb_algorithm": "ROUND_ROBIN",
                        "members": [{"address": "127.0.0.1", "protocol_port": backend.port}],
                    },
                }
            ],
        }
        lbs.append(api.ok("POST", LBS, {"loadbalancer": tree})["loadbalancer"])
    lbs = [wait_lb(api, lb["id"], timeout=90) for lb in lbs]
    yield lbs
    for lb in lbs:
        with contextlib.suppress(Exception):
            wait_lb(api, lb["id"], timeout=60)
            delete_lb(api, lb["id"])


def allocated_ids(api: Rest, lb_id: str) -> list[str]:
    return [str(a["id"]) for a in amphorae_of(api, lb_id) if a["status"] == "ALLOCATED"]


def allocated(api: Rest, lb_id: str) -> str:
    (amphora,) = allocated_ids(api, lb_id)
    return amphora


def host_pid(mesh: Mesh) -> int:
    return int((amphora_base(mesh) / ".host" / "agent.pid").read_text())


def serves(lb: dict[str, Any]) -> bool:
    with contextlib.suppress(OSError, http.client.HTTPException):
        return get(lb["vip_address"], 80, timeout=2.0).status == 200
    return False


def ask_host(mesh: Mesh, request: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(amphora_base(mesh) / ".host" / "control.sock"))
        sock.sendall(json.dumps(request).encode() + b"\n")
        return dict(json.loads(sock.makefile().readline()))


def get_info(mesh: Mesh, address: str, name: str) -> agent_pb2.GetInfoResponse:
    """GetInfo as the worker calls it: the controller's client certificate, the agent verified as ``name``."""
    bundle = LocalCertificateDriver(mesh.state / "worker" / "ca").controller_certificate()
    credentials = grpc.ssl_channel_credentials(bundle.ca_certificate, bundle.private_key, bundle.certificate)
    with grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", name)]) as channel:
        return agent_pb2_grpc.AmphoraAgentStub(channel).GetInfo(agent_pb2.GetInfoRequest(), timeout=10)


def test_amphorae_share_one_host_each_with_its_own_identity(smesh: Mesh, api: Rest, three: list[dict]) -> None:
    host = host_pid(smesh)
    amphorae = [allocated(api, lb["id"]) for lb in three]
    addresses = {a: (amphora_home(smesh, a) / "agent.address").read_text().strip() for a in amphorae}
    assert len(set(addresses.values())) == 3, f"each amphora listens on a port of its own: {addresses}"
    for lb in three:
        assert serves(lb), f"{lb['vip_address']} does not serve"
    # No agent process of their own: the host serves them all, and their HAProxy processes are its children.
    agents = {p: c for p, c in processes_mentioning(str(amphora_base(smesh))).items() if "amphora_agent" in c}
    assert list(agents) == [host], f"only the amphora host should run: {agents}"
    for amphora_id in amphorae:
        home = amphora_home(smesh, amphora_id)
        assert int((home / "agent.pid").read_text()) == host
        haproxies = processes_mentioning(str(home))
        assert haproxies, f"amphora {amphora_id} has no HAProxy of its own"
    # Their heartbeats travel in the host's one batched call (each amphora joined it with its own certificate),
    # not on a connection each: the host is connected to the health replicas once, whatever its amphorae.
    heartbeat_ports = {port for name, port in smesh.ports.ports.items() if name.endswith("-heartbeat")}
    assert heartbeat_ports
    to_health = [c for c in psutil.Process(host).net_connections("tcp") if c.raddr and c.raddr.port in heartbeat_ports]
    assert len(to_health) == 1, f"the host should have one heartbeat connection: {to_health}"
    for amphora_id, address in addresses.items():
        # Each port answers as its own amphora, under its own certificate's name...
        assert get_info(smesh, address, amphora_identity(amphora_id)).amphora_id == amphora_id
        # ... and under no other amphora's name: the worker's name check would refuse a wrong identity.
        other = next(a for a in amphorae if a != amphora_id)
        with pytest.raises(grpc.RpcError) as refused:
            get_info(smesh, address, amphora_identity(other))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails


def test_killing_one_amphora_leaves_the_others_serving_and_fails_it_over(
    smesh: Mesh, api: Rest, three: list[dict]
) -> None:
    victim, *others = three
    old = allocated(api, victim["id"])
    old_home = amphora_home(smesh, old)
    host = host_pid(smesh)
    wait_armed(smesh, old)
    old_haproxies = processes_mentioning(str(old_home))
    assert old_haproxies
    with Traffic(others[0]["vip_address"], 80) as first, Traffic(others[1]["vip_address"], 80) as second:
        answer = ask_host(smesh, {"op": "kill", "amphora_id": old})
        assert answer == {"ok": True, "found": True}
        # Exactly its HAProxy is gone, at once; the host and the other amphorae are not touched.
        wait_until(lambda: not processes_mentioning(str(old_home)), 5, "the killed amphora's HAProxy to be gone")
        assert host_pid(smesh) == host and Path(f"/proc/{host}").exists()
        # The health service sees its stream break and fails it over, to a spare of the same host.
        wait_until(lambda: old not in allocated_ids(api, victim["id"]), 60, "the failover to retire the old amphora")
        wait_lb(api, victim["id"], timeout=60)
        wait_until(lambda: serves(victim), 10, "the failed-over load balancer to serve")
    for traffic in (first, second):
        outcomes = [ok for _, ok, _ in traffic.results]
        assert outcomes and all(outcomes), f"requests to another load balancer failed: {traffic.results[-5:]}"
    new = allocated(api, victim["id"])
    assert int((amphora_home(smesh, new) / "agent.pid").read_text()) == host, "the new amphora is the host's"
    assert ask_host(smesh, {"op": "status", "amphora_id": old})["running"] is False
    assert ask_host(smesh, {"op": "status", "amphora_id": new})["running"] is True


def test_a_hung_haproxy_holds_back_only_its_own_amphoras_heartbeats(smesh: Mesh, api: Rest, three: list[dict]) -> None:
    """The host reads every amphora's stats socket for one batch: a HAProxy that stopped answering (SIGSTOP) must
    not delay the others' heartbeats. Its own amphora goes quiet, is failed over and serves again; the others
    keep their amphorae and serve on."""
    victim, *others = three
    hung = allocated(api, victim["id"])
    kept = {lb["id"]: allocated(api, lb["id"]) for lb in others}
    wait_armed(smesh, hung, *kept.values())
    stopped = list(processes_mentioning(str(amphora_home(smesh, hung))))
    assert stopped
    with Traffic(others[0]["vip_address"], 80) as first, Traffic(others[1]["vip_address"], 80) as second:
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            wait_until(lambda: hung not in allocated_ids(api, victim["id"]), 60, "the hung amphora's failover")
            wait_lb(api, victim["id"], timeout=60)
            wait_until(lambda: serves(victim), 10, "the failed-over load balancer to serve")
        finally:
            for pid in stopped:  # fenced already (SIGKILL reaches a stopped process); never leave one stopped
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
    for traffic in (first, second):
        outcomes = [ok for _, ok, _ in traffic.results]
        assert outcomes and all(outcomes), f"requests to another load balancer failed: {traffic.results[-5:]}"
    assert {lb_id: allocated(api, lb_id) for lb_id in kept} == kept, "another amphora was failed over"


def test_deleting_a_load_balancer_retires_only_its_amphora(smesh: Mesh, api: Rest, three: list[dict]) -> None:
    gone, *kept = three
    amphora_id = allocated(api, gone["id"])
    delete_lb(api, gone["id"])
    wait_until(lambda: not processes_mentioning(str(amphora_home(smesh, amphora_id))), 15, "its HAProxy to go")
    assert ask_host(smesh, {"op": "status", "amphora_id": amphora_id})["running"] is False
    for lb in kept:
        assert serves(lb), f"{lb['vip_address']} stopped serving when another load balancer was deleted"


def test_the_host_outlives_the_control_plane_and_is_adopted(smesh: Mesh, api: Rest, three: list[dict]) -> None:
    """Issue 9 for the host: the whole mesh stops (amphorae kept) and starts again; the same host serves on
    without a failed request, its amphorae are heard by the new mesh and adopted (not rebuilt), and a change
    reaches them through the new worker."""
    lb = wait_lb(api, three[-1]["id"])  # the first was deleted above
    amphora_id = allocated(api, lb["id"])
    host = host_pid(smesh)
    with Traffic(lb["vip_address"], 80) as traffic:
        smesh.stop(keep_amphorae=True)
        assert Path(f"/proc/{host}").exists(), "the host stopped with the control plane"
        smesh.start()
        api = Rest(smesh.endpoint)
        wait_armed(smesh, amphora_id)
    outcomes = [ok for _, ok, _ in traffic.results]
    assert len(outcomes) > 20 and all(outcomes), f"requests failed through the restart: {traffic.failures()[:5]}"
    assert host_pid(smesh) == host
    assert allocated(api, lb["id"]) == amphora_id, "the amphora was rebuilt instead of adopted"
    # A change goes through the new worker to the same amphora in the same host.
    (pool,) = api.ok("GET", f"/v2/lbaas/pools?loadbalancer_id={lb['id']}")["pools"]
    api.ok("PUT", f"/v2/lbaas/pools/{pool['id']}", {"pool": {"name": "changed-after-adoption"}})
    wait_lb(api, lb["id"], timeout=60)
    assert allocated(api, lb["id"]) == amphora_id and serves(lb)
