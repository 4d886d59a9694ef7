"""Barbican references through the API, acting for the user as Octavia does, against a real Keystone and a real
Barbican (``keystone_barbican.py``), with a mesh in keystone mode whose API and worker use ``cert_manager``
barbican and whose amphorae are real (local compute driver).

* The user's token grants the service user read access (Barbican ACL) to exactly the secrets and containers a
  listener or pool names, then the API reads them with the service's credentials (Octavia's ``set_acls`` +
  ``get_cert(check_only=True)``); the worker later reads them the same way and HAProxy serves them.
* A reference the user cannot read is a 400 with Octavia's "Could not retrieve certificate: [...]", even when the
  service itself could read it (a secret of the service's own project): no confused deputy.
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from keystone_barbican import PASSWORDS, Cloud
from support import Rest, start_mesh
from tls_material import Issued, issue, p12

from octavia_mesh.cli.mesh import Mesh

pytestmark = pytest.mark.timeout(900)  # the first run builds Keystone's and Barbican's environment


@pytest.fixture(scope="module")
def cloud(barbican_cloud: Cloud) -> Cloud:
    """The session's Keystone and Barbican (``conftest.py``)."""
    return barbican_cloud


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, cloud: Cloud) -> Iterator[Mesh]:
    clouds = tmp_path_factory.mktemp("clouds") / "clouds.yaml"
    clouds.write_text(json.dumps({"clouds": {"service": cloud.auth("octavia", "service")}}))  # JSON is YAML
    env = {
        "OS_CLIENT_CONFIG_FILE": str(clouds),
        "OCTAVIA_MESH_API_KEYSTONE_AUTH_URL": cloud.keystone_url,
        "OCTAVIA_MESH_API_KEYSTONE_USERNAME": "octavia",
        "OCTAVIA_MESH_API_KEYSTONE_PASSWORD": PASSWORDS["octavia"],
        "OCTAVIA_MESH_API_KEYSTONE_PROJECT_NAME": "service",
        "OCTAVIA_MESH_API_CERT_MANAGER": "barbican",
        "OCTAVIA_MESH_API_OPENSTACK_CLOUD": "service",
        "OCTAVIA_MESH_WORKER_CERT_MANAGER": "barbican",
        "OCTAVIA_MESH_WORKER_OPENSTACK_CLOUD": "service",
        "OCTAVIA_MESH_WORKER_SPARE_AMPHORAE": "0",
    }
    yield from start_mesh(tmp_path_factory, "keystone", default_provider="amphora", service_env=env)


@pytest.fixture(scope="module")
def alice(mesh: Mesh, cloud: Cloud) -> Rest:
    return Rest(mesh.endpoint, {"X-Auth-Token": cloud.token("alice", "demo")})


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's API
            body = b"behind barbican\n"
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


def _barbican(cloud: Cloud, token: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{cloud.barbican_url}/v1/{path}", data=data, method=method)
    request.add_header("X-Auth-Token", token)
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        raw = response.read()
    return json.loads(raw) if raw else {}


def _secret(cloud: Cloud, token: str, name: str, payload: bytes) -> str:
    body = {"name": name, "payload": base64.b64encode(payload).decode(), "secret_type": "opaque",
            "payload_content_type": "application/octet-stream", "payload_content_encoding": "base64"}  # fmt: skip
    return str(_barbican(cloud, token, "POST", "secrets", body)["secret_ref"])


def _readers(cloud: Cloud, token: str, ref: str) -> list[str]:
    kind, ident = ref.rstrip("/").split("/")[-2:]
    return list(_barbican(cloud, token, "GET", f"{kind}/{ident}/acl").get("read", {}).get("users") or [])


def _get_with_sni(address: str, port: int, server_name: str, ca: Issued) -> tuple[bytes, str]:
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    with socket.create_connection((address, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            subject = dict(pair[0] for pair in tls.getpeercert()["subject"])
    return data.partition(b"\r\n\r\n")[2], str(subject["commonName"])


def test_listener_and_pool_refs_are_granted_as_the_user_and_served(
    cloud: Cloud, mesh: Mesh, alice: Rest, backend: int
) -> None:
    token = alice.session.headers["X-Auth-Token"]
    assert isinstance(token, str)
    ca = issue("Barbican API test CA", ca=True)
    www, sni = issue("www.example.com", ca), issue("sni.example.com", ca)
    bundle_ref = _secret(cloud, token, "www", p12(www, (ca,)))
    parts = {"certificate": sni.cert_pem, "private_key": sni.key_pem, "intermediates": ca.cert_pem}
    refs = [{"name": n, "secret_ref": _secret(cloud, token, f"sni-{n}", v)} for n, v in parts.items()]
    container_ref = str(
        _barbican(cloud, token, "POST", "containers", {"type": "certificate", "name": "sni", "secret_refs": refs})[
            "container_ref"
        ]
    )
    ca_ref = _secret(cloud, token, "client-ca", ca.cert_pem)
    octavia = cloud.ids["octavia"]
    assert octavia not in _readers(cloud, token, bundle_ref)

    # The service's own secret: the service could read it, alice cannot, so alice may not point at it.
    service_ref = _secret(cloud, cloud.token("octavia", "service"), "not-alices", p12(www, (ca,)))
    missing_ref = f"{cloud.barbican_url}/v1/secrets/00000000-0000-4000-8000-000000000000"

    (subnet,) = alice.ok("GET", "/v2.0/subnets")["subnets"]  # the mesh's local VIP subnet
    lb = alice.ok("POST", "/v2/lbaas/loadbalancers", {"loadbalancer": {"vip_subnet_id": subnet["id"]}})["loadbalancer"]
    alice.wait_lb_active(lb["id"])
    listener = {"loadbalancer_id": lb["id"], "protocol": "TERMINATED_HTTPS", "protocol_port": 8443}
    for bad in (service_ref, missing_ref):
        refused = alice.post("/v2/lbaas/listeners", {"listener": {**listener, "default_tls_container_ref": bad}})
        assert refused.status_code == 400, refused.text
        assert refused.json()["faultstring"] == f"Could not retrieve certificate: [{bad!r}]"
    refused = alice.post(
        "/v2/lbaas/listeners",
        {"listener": {**listener, "default_tls_container_ref": bundle_ref, "sni_container_refs": [service_ref]}},
    )
    assert refused.json()["faultstring"] == f"Could not retrieve certificate: [{service_ref!r}]"
    assert octavia not in _readers(cloud, cloud.token("octavia", "service"), service_ref)  # nothing granted there

    created = alice.ok(
        "POST",
        "/v2/lbaas/listeners",
        {"listener": {**listener, "default_tls_container_ref": bundle_ref, "sni_container_refs": [container_ref]}},
    )["listener"]
    alice.wait_lb_active(lb["id"])
    # Granted with alice's token: the container and each secret in it, and the bundle.
    for ref in (bundle_ref, container_ref, *(r["secret_ref"] for r in refs)):
        assert octavia in _readers(cloud, token, ref), ref
    assert octavia not in _readers(cloud, token, ca_ref)  # not named yet: not granted

    pool = alice.ok(
        "POST",
        "/v2/lbaas/pools",
        {"pool": {"listener_id": created["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}},
    )["pool"]
    alice.wait_lb_active(lb["id"])
    alice.ok("POST", f"/v2/lbaas/pools/{pool['id']}/members", {"member": {"address": "127.0.0.1",
                                                                          "protocol_port": backend}})  # fmt: skip
    alice.wait_lb_active(lb["id"])

    # The worker read both with the service's credentials and HAProxy serves them.
    assert _get_with_sni(lb["vip_address"], 8443, "www.example.com", ca) == (b"behind barbican\n", "www.example.com")
    assert _get_with_sni(lb["vip_address"], 8443, "sni.example.com", ca) == (b"behind barbican\n", "sni.example.com")

    # A pool's CA and CRL references follow the same rules.
    second = {"loadbalancer_id": lb["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}
    refused = alice.post("/v2/lbaas/pools", {"pool": {**second, "ca_tls_container_ref": service_ref}})
    assert refused.status_code == 400
    assert refused.json()["faultstring"] == f"Could not retrieve certificate: [{service_ref!r}]"
    alice.ok("POST", "/v2/lbaas/pools", {"pool": {**second, "tls_enabled": True, "ca_tls_container_ref": ca_ref}})
    alice.wait_lb_active(lb["id"])
    assert octavia in _readers(cloud, token, ca_ref)

    alice.ok("DELETE", f"/v2/lbaas/loadbalancers/{lb['id']}?cascade=true")
    alice.wait_status(f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer", "DELETED", timeout=60)


def test_a_misspelt_cert_manager_fails_the_api_at_start_up() -> None:
    from octavia_mesh.api.settings import ApiSettings

    with pytest.raises(ValueError, match="cert manager 'barbicn' is not local or barbican"):
        ApiSettings.from_env({"OCTAVIA_MESH_API_CERT_MANAGER": "barbicn"})
    assert ApiSettings.from_env({"OCTAVIA_MESH_API_CERT_MANAGER": "barbican"}).cert_manager == "barbican"
