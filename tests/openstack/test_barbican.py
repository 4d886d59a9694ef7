"""The Barbican certificate manager against a real Keystone and a real Barbican (``keystone_barbican.py``).

A user stores certificates in their project; the service user (``octavia``) cannot read them until the
user's token granted it read access (Octavia's ACL dance), and then reads exactly those.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path

import openstack
import pytest
from keystone_barbican import Cloud
from tls_material import issue, p12

from octavia_mesh.common.barbican import BarbicanCertManager
from octavia_mesh.common.secrets import BadReference, TlsBundle

pytestmark = pytest.mark.timeout(900)  # the first run builds the services' environment; start-up takes ~1-2 min


@pytest.fixture(scope="module")
def cloud(barbican_cloud: Cloud) -> Cloud:
    """The session's Keystone and Barbican (``conftest.py``)."""
    return barbican_cloud


def _post(cloud: Cloud, token: str, path: str, body: dict) -> str:
    request = urllib.request.Request(f"{cloud.barbican_url}/v1/{path}", data=json.dumps(body).encode(), method="POST")
    request.add_header("X-Auth-Token", token)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    return str(answer.get("secret_ref") or answer["container_ref"])


def _secret(cloud: Cloud, token: str, name: str, payload: bytes) -> str:
    return _post(
        cloud,
        token,
        "secrets",
        {
            "name": name,
            "payload": base64.b64encode(payload).decode(),
            "payload_content_type": "application/octet-stream",
            "payload_content_encoding": "base64",
            "secret_type": "opaque",
        },
    )


def _pem(bundle: TlsBundle) -> str:
    return bundle.certificate


async def test_service_reads_what_the_user_granted(cloud: Cloud, tmp_path: Path) -> None:
    alice = cloud.token("alice", "demo")
    ca = issue("Barbican test CA", ca=True)
    leaf = issue("www.example.com", ca)
    other = issue("container.example.com", ca)

    pkcs12_ref = _secret(cloud, alice, "tls-pkcs12", p12(leaf, (ca,)))
    parts = {
        "certificate": _secret(cloud, alice, "cert", other.cert_pem),
        "private_key": _secret(cloud, alice, "key", other.key_pem),
        "intermediates": _secret(cloud, alice, "chain", ca.cert_pem),
    }
    container_ref = _post(
        cloud,
        alice,
        "containers",
        {
            "type": "certificate",
            "name": "tls-container",
            "secret_refs": [{"name": n, "secret_ref": r} for n, r in parts.items()],
        },
    )
    ca_ref = _secret(cloud, alice, "client-ca", ca.cert_pem)
    private_ref = _secret(cloud, alice, "never-granted", p12(leaf))

    manager = BarbicanCertManager(openstack.connect(**cloud.auth("octavia", "service")))
    for ref in (pkcs12_ref, container_ref, ca_ref):
        with pytest.raises(BadReference, match="403"):  # another project's: no ACL yet
            await (manager.resolve_secret(ref) if ref == ca_ref else manager.resolve(ref))

    for ref in (pkcs12_ref, container_ref, ca_ref):
        await manager.ensure_access(alice, ref)
        await manager.ensure_access(alice, ref)  # idempotent

    bundle = await manager.resolve(pkcs12_ref)
    assert bundle.certificate.encode().strip() == leaf.cert_pem.strip()
    assert bundle.intermediates == (ca.cert_pem.decode().strip(),)
    from_container = await manager.resolve(container_ref)
    assert from_container.certificate.encode().strip() == other.cert_pem.strip()
    assert from_container.intermediates == (ca.cert_pem.decode().strip(),)
    assert "PRIVATE KEY" in from_container.private_key
    assert (await manager.resolve_secret(ca_ref)).strip() == ca.cert_pem.strip()

    # Whatever host a reference names, it is read from the catalog's Barbican (no SSRF with our credentials).
    moved = pkcs12_ref.replace(cloud.barbican_url, "http://203.0.113.9:9311")
    assert (await manager.resolve(moved)).certificate == bundle.certificate

    with pytest.raises(BadReference, match="403"):  # nothing else of the user's project became readable
        await manager.resolve(private_ref)
    with pytest.raises(BadReference):
        await manager.resolve(f"{cloud.barbican_url}/v1/secrets/00000000-0000-4000-8000-000000000000")
    with pytest.raises(BadReference, match="refused"):  # a token that may not change the ACL grants nothing
        await manager.ensure_access("not-a-token", private_ref)
