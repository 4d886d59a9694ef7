"""Certificates for TLS tests (made with ``cryptography``), and keeping them in a mesh's secret store.

EC P-256 keys keep generation fast; ``Store`` talks Barbican's v1 API at the edge as one project.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

PROJECT = "e3cd678b11784734bc366148aa37580e"
PROXY_SECRET = "test-proxy-secret-0123456789"  # support.PROXY_SECRET: the trusted_headers mesh's proxy


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(cn: str, issuer: Issued | None = None, *, ca: bool = False, sans: tuple[str, ...] = ()) -> Issued:
    """A certificate for ``cn`` signed by ``issuer`` (self-signed when none)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def p12(leaf: Issued, chain: tuple[Issued, ...] = (), password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return pkcs12.serialize_key_and_certificates(b"t", leaf.key, leaf.cert, [c.cert for c in chain], encryption)


def crl(ca: Issued, *revoked: Issued) -> bytes:
    now = dt.datetime.now(dt.UTC)
    builder = x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
    builder = builder.last_update(now).next_update(now + dt.timedelta(days=1))
    for item in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(item.cert.serial_number).revocation_date(now).build()
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


class Store:
    """The edge's secret store as ``project`` (X-Project-Id; ``roles`` count in trusted-headers mode)."""

    def __init__(self, base_url: str, project: str = PROJECT, roles: str = "member") -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(
            {"X-Project-Id": project, "X-Roles": roles, "X-Octavia-Mesh-Proxy-Secret": PROXY_SECRET}
        )

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else self.base_url + path
        return self.session.request(method, url, json=body, timeout=30, **kwargs)

    def secret(self, payload: bytes | str, name: str = "t", **fields: Any) -> str:
        """Store ``payload`` (bytes as base64 octet-stream, text as text/plain); its reference."""
        if isinstance(payload, bytes):
            body = {
                "payload": base64.b64encode(payload).decode(),
                "payload_content_type": "application/octet-stream",
                "payload_content_encoding": "base64",
            }
        else:
            body = {"payload": payload, "payload_content_type": "text/plain"}
        response = self.call("POST", "/v1/secrets", {"name": name, **body, **fields})
        assert response.status_code == 201, response.text
        return response.json()["secret_ref"]

    def container(self, name: str = "c", kind: str = "certificate", **refs: str) -> str:
        body = {"name": name, "type": kind, "secret_refs": [{"name": k, "secret_ref": v} for k, v in refs.items()]}
        response = self.call("POST", "/v1/containers", body)
        assert response.status_code == 201, response.text
        return response.json()["container_ref"]


@dataclass(frozen=True)
class Refs:
    """A project's usable references: PKCS12 bundle, certificate container, client CA, its CRL."""

    pkcs12: str
    container: str
    ca: str
    crl: str
    ca_cert: Issued
    root: Issued  # signs the server certificates (the PKCS12 one through an intermediate)


@functools.cache
def tls_refs(base_url: str, project: str = PROJECT) -> Refs:
    """One set of references per mesh and project (stored on first use)."""
    store = Store(base_url, project)
    root = issue("Test Root CA", ca=True)
    inter = issue("Test Intermediate CA", root, ca=True)
    leaf = issue("www.example.com", inter, sans=("www.example.com",))
    sni = issue("sni.example.com", root, sans=("sni.example.com",))
    client_ca = issue("Client CA", ca=True)
    return Refs(
        pkcs12=store.secret(p12(leaf, (inter,)), "server.p12"),
        container=store.container(
            "sni",
            certificate=store.secret(sni.cert_pem.decode(), "sni.crt"),
            private_key=store.secret(sni.key_pem.decode(), "sni.key"),
            intermediates=store.secret(root.cert_pem.decode(), "sni.chain"),
        ),
        ca=store.secret(client_ca.cert_pem, "client-ca.pem"),
        crl=store.secret(crl(client_ca), "client-ca.crl"),
        ca_cert=client_ca,
        root=root,
    )
