"""The whole mesh (real processes) with amphorae on Nova and VIPs on Neutron, both faked at their HTTP
boundary (``fake_cloud.py``): the worker's nova compute driver boots servers whose image runs our agent from
the user data, the neutron driver gives the VIP a port and each amphora a port carrying it as an allowed
address pair, and real HTTP reaches a backend through the VIP.

Flows that fail revert without leaking a server, a port or a server group; a failover fences the old server.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from fake_cloud import MGMT_NET, SERVICE_PROJECT, VIP_SUBNET, VIP_SUBNET_V6, FakeCloud, running
from support import Rest, start_mesh

from octavia_mesh.cli.mesh import Mesh

pytestmark = pytest.mark.timeout(300)

#: Octavia's long-standing test-project id.
PROJECT = "e3cd678b11784734bc366148aa37580e"


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    with running(loopback_vips=True) as fake:  # VIPs on loopback, so HAProxy binds them here
        fake.glance.add_image("amphora", ["octavia-mesh-amphora"], SERVICE_PROJECT)
        yield fake


@pytest.fixture(scope="module")
def os_mesh(tmp_path_factory: pytest.TempPathFactory, cloud: FakeCloud) -> Iterator[Mesh]:
    clouds = tmp_path_factory.mktemp("clouds") / "clouds.yaml"
    clouds.write_text(json.dumps({"clouds": {"fake": cloud.connect_options()}}))  # JSON is YAML
    env = {
        "OS_CLIENT_CONFIG_FILE": str(clouds),
        "OCTAVIA_MESH_API_NETWORK_DRIVER": "neutron",
        "OCTAVIA_MESH_API_OPENSTACK_CLOUD": "fake",
        "OCTAVIA_MESH_WORKER_COMPUTE_DRIVER": "nova",
        "OCTAVIA_MESH_WORKER_NETWORK_DRIVER": "neutron",
        "OCTAVIA_MESH_WORKER_OPENSTACK_CLOUD": "fake",
        "OCTAVIA_MESH_WORKER_NOVA_IMAGE_OWNER": SERVICE_PROJECT,
        "OCTAVIA_MESH_WORKER_NOVA_FLAVOR_ID": "amphora",
        "OCTAVIA_MESH_WORKER_NOVA_NETWORK_ID": MGMT_NET[0],
        "OCTAVIA_MESH_WORKER_NOVA_AGENT_PORT": str(cloud.nova.agent_port),
        "OCTAVIA_MESH_WORKER_NOVA_BOOT_TIMEOUT_S": "30",
        # These servers are host processes (they share the host's loopback with the VIPs, members and health
        # service), so an attached port has no interface in them to configure: the agents' plugging is tested
        # with servers that are network namespaces (test_pair_on_nova.py).
        "OCTAVIA_MESH_WORKER_PLUG_INTERFACES": "false",
    }
    yield from start_mesh(tmp_path_factory, "noauth", default_provider="amphora", service_env=env)


@pytest.fixture(scope="module")
def rest(os_mesh: Mesh) -> Rest:
    return Rest(os_mesh.endpoint)


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's API
            body = b"served by the backend\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _servers(cloud: FakeCloud) -> list[dict[str, Any]]:
    return cloud.nova._visible()


def _get(url: str) -> bytes:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bytes(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _amphorae(rest: Rest, lb_id: str) -> list[dict[str, Any]]:
    rows = rest.ok("GET", f"/v2/octavia/amphorae?loadbalancer_id={lb_id}")["amphorae"]
    return [a for a in rows if a["status"] not in ("DELETED",)]


def _create_lb(rest: Rest, name: str) -> dict[str, Any]:
    body = {"loadbalancer": {"name": name, "vip_subnet_id": VIP_SUBNET, "project_id": PROJECT}}
    return rest.ok("POST", "/v2/lbaas/loadbalancers", body)["loadbalancer"]


def _delete_lb(rest: Rest, lb_id: str) -> None:
    rest.ok("DELETE", f"/v2/lbaas/loadbalancers/{lb_id}?cascade=true")
    rest.wait_status(f"/v2/lbaas/loadbalancers/{lb_id}", "loadbalancer", "DELETED", timeout=60)


def _assert_clean(cloud: FakeCloud) -> None:
    assert _servers(cloud) == [], "leaked servers"
    assert cloud.neutron.ports() == [], f"leaked ports: {[p['name'] for p in cloud.neutron.ports()]}"
    assert cloud.nova.groups == {}, "leaked server groups"
    assert cloud.neutron.items["security-groups"] == {}, "leaked security groups"


def test_load_balancer_on_nova_and_neutron(rest: Rest, cloud: FakeCloud, backend: int) -> None:
    lb = _create_lb(rest, "on-openstack")
    (vip_port,) = [p for p in cloud.neutron.ports() if p["name"] == f"octavia-lb-{lb['id']}"]
    assert lb["vip_port_id"] == vip_port["id"] and lb["vip_address"] == vip_port["fixed_ips"][0]["ip_address"]
    rest.wait_lb_active(lb["id"])
    listener = rest.ok(
        "POST",
        "/v2/lbaas/listeners",
        {
            "listener": {
                "loadbalancer_id": lb["id"],
                "protocol": "HTTP",
                "protocol_port": 8080,
                "allowed_cidrs": ["127.0.0.0/8"],
            }
        },  # fmt: skip
    )["listener"]
    rest.wait_lb_active(lb["id"])
    pool = rest.ok(
        "POST",
        "/v2/lbaas/pools",
        {"pool": {"listener_id": listener["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}},
    )["pool"]
    rest.wait_lb_active(lb["id"])
    rest.ok("POST", f"/v2/lbaas/pools/{pool['id']}/members", {"member": {"address": "127.0.0.1",
                                                                          "protocol_port": backend}})  # fmt: skip
    rest.wait_lb_active(lb["id"])

    (amphora,) = _amphorae(rest, lb["id"])
    (server,) = _servers(cloud)
    assert amphora["compute_id"] == server["id"] and server["name"] == f"amphora-{amphora['id']}"
    (vrrp,) = [p for p in cloud.neutron.ports() if p["device_id"] == server["id"]]
    assert vrrp["allowed_address_pairs"] == [{"ip_address": lb["vip_address"]}]
    (group,) = cloud.neutron.items["security-groups"].values()
    rules = {(r["protocol"], r["port_range_min"], r["remote_ip_prefix"]) for r in cloud.neutron.rules()
             if r["direction"] == "ingress" and r["security_group_id"] == group["id"]}  # fmt: skip
    assert rules == {("tcp", 8080, "127.0.0.0/8")}
    assert _get(f"http://{lb['vip_address']}:8080/") == b"served by the backend\n"

    # Failover: a new server, the old one deleted (fenced) with its port; traffic served by the new one.
    rest.ok("PUT", f"/v2/lbaas/loadbalancers/{lb['id']}/failover", status=202)
    rest.wait_lb_active(lb["id"])
    (new_server,) = _servers(cloud)
    assert new_server["id"] != server["id"]
    assert cloud.nova.processes.get(server["id"]) is None  # the old VM is off
    assert [p["device_id"] for p in cloud.neutron.ports() if p["name"].startswith("octavia-lb-vrrp-")] == [
        new_server["id"]
    ]
    assert _get(f"http://{lb['vip_address']}:8080/") == b"served by the backend\n"

    _delete_lb(rest, lb["id"])
    _assert_clean(cloud)


def test_failed_boot_reverts(rest: Rest, cloud: FakeCloud) -> None:
    cloud.nova.fail_boots.append("Build of instance aborted: Failure prepping block device.")
    lb = _create_lb(rest, "boot-fails")
    rest.wait_status(f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer", "ERROR", timeout=60)
    assert _servers(cloud) == []
    assert [p["name"] for p in cloud.neutron.ports()] == [f"octavia-lb-{lb['id']}"]  # the VIP: until the delete
    _delete_lb(rest, lb["id"])
    _assert_clean(cloud)


def test_failed_plug_reverts(rest: Rest, cloud: FakeCloud) -> None:
    original = cloud.neutron._create_port

    def refuse_vrrp_ports(spec: dict[str, Any]) -> tuple[int, Any]:
        if spec.get("name", "").startswith("octavia-lb-vrrp-"):
            return 500, {"NeutronError": {"type": "HTTPInternalServerError", "message": "boom", "detail": ""}}
        return original(spec)

    cloud.neutron._create_port = refuse_vrrp_ports  # type: ignore[method-assign]
    try:
        lb = _create_lb(rest, "plug-fails")
        rest.wait_status(f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer", "ERROR", timeout=60)
    finally:
        cloud.neutron._create_port = original  # type: ignore[method-assign]
    assert _servers(cloud) == [], "the booted server was not deleted by the revert"
    _delete_lb(rest, lb["id"])
    _assert_clean(cloud)


def test_refused_create_gives_the_vip_port_back(rest: Rest, cloud: FakeCloud) -> None:
    """A create refused after its VIP was allocated (here: a listener of the tree without its certificate)
    rolls back, and the Neutron port goes with it: Neutron is no part of the API's transaction."""
    body = {"loadbalancer": {"name": "refused", "vip_subnet_id": VIP_SUBNET, "project_id": PROJECT,
                             "listeners": [{"protocol": "TERMINATED_HTTPS", "protocol_port": 443}]}}  # fmt: skip
    response = rest.post("/v2/lbaas/loadbalancers", body)
    assert response.status_code == 400, response.text
    deadline = time.monotonic() + 10
    while cloud.neutron.ports() and time.monotonic() < deadline:
        time.sleep(0.05)
    _assert_clean(cloud)


def test_vip_security_groups_and_additional_vips_reach_neutron(rest: Rest, cloud: FakeCloud) -> None:
    """Octavia 2023.x's VIP fields through the API: the additional VIP becomes a second fixed IP of the VIP port
    and a second allowed address pair of the amphora's port; ``vip_sg_ids`` are checked, put on both ports, and
    replace the listener rules (so a listener's ``allowed_cidrs`` is refused); an update moves every port."""
    web, ops = (cloud.neutron._create_security_group({"name": n})[1]["security_group"]["id"] for n in ("web", "ops"))
    missing = "00000000-0000-4000-8000-00000000dead"
    body = {"loadbalancer": {"vip_subnet_id": VIP_SUBNET, "project_id": PROJECT, "vip_sg_ids": [missing]}}
    response = rest.post("/v2/lbaas/loadbalancers", body)
    assert response.status_code == 400 and f"Security Group {missing} not found" in response.json()["faultstring"]
    body = {"loadbalancer": {"vip_subnet_id": VIP_SUBNET, "project_id": PROJECT,
                             "additional_vips": [{"subnet_id": VIP_SUBNET_V6}]}}  # fmt: skip
    body["loadbalancer"]["vip_sg_ids"] = [web]
    lb = rest.ok("POST", "/v2/lbaas/loadbalancers", body)["loadbalancer"]
    (vip_port,) = [p for p in cloud.neutron.ports() if p["id"] == lb["vip_port_id"]]
    (extra,) = lb["additional_vips"]
    assert extra["subnet_id"] == VIP_SUBNET_V6 and extra["ip_address"] == vip_port["fixed_ips"][1]["ip_address"]
    assert lb["vip_sg_ids"] == [web]
    rest.wait_lb_active(lb["id"])
    (server,) = _servers(cloud)
    (vrrp,) = [p for p in cloud.neutron.ports() if p["device_id"] == server["id"]]
    assert vrrp["allowed_address_pairs"] == [{"ip_address": lb["vip_address"]}, {"ip_address": extra["ip_address"]}]
    ours = next(g["id"] for g in cloud.neutron.items["security-groups"].values() if g["name"] == f"lb-{lb['id']}")
    assert vrrp["security_groups"] == [ours, web]

    listener = {"listener": {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 22}}
    refused = rest.post("/v2/lbaas/listeners", {"listener": {**listener["listener"], "allowed_cidrs": ["10.0.0.0/8"]}})
    assert refused.status_code == 400
    assert refused.json()["faultstring"] == (
        "Validation failure: Allowed CIDRs are not allowed when using custom VIP Security Groups."
    )
    rest.ok("POST", "/v2/lbaas/listeners", listener)
    rest.wait_lb_active(lb["id"])
    assert not [r for r in cloud.neutron.rules() if r["security_group_id"] == ours and r["direction"] == "ingress"]

    response = rest.put(f"/v2/lbaas/loadbalancers/{lb['id']}", {"loadbalancer": {"vip_sg_ids": [missing]}})
    assert response.status_code == 400 and f"Security Group {missing} not found" in response.json()["faultstring"]
    rest.ok("PUT", f"/v2/lbaas/loadbalancers/{lb['id']}", {"loadbalancer": {"vip_sg_ids": [ops]}})
    rest.wait_lb_active(lb["id"])
    for port_id in (lb["vip_port_id"], vrrp["id"]):
        (port,) = [p for p in cloud.neutron.ports() if p["id"] == port_id]
        assert port["security_groups"] == [ours, ops]
    rest.ok("PUT", f"/v2/lbaas/loadbalancers/{lb['id']}", {"loadbalancer": {"vip_sg_ids": None}})
    rest.wait_lb_active(lb["id"])
    rules = {(r["protocol"], r["port_range_min"], r["remote_ip_prefix"]) for r in cloud.neutron.rules()
             if r["security_group_id"] == ours and r["direction"] == "ingress"}  # fmt: skip
    assert rules == {("tcp", 22, "0.0.0.0/0"), ("tcp", 22, "::/0")}  # ours again, for both VIPs' families

    _delete_lb(rest, lb["id"])
    for group in (web, ops):  # the user's own groups stay; ours goes with the load balancer
        cloud.neutron.handle("DELETE", f"/v2.0/security-groups/{group}", {}, None)
    _assert_clean(cloud)
