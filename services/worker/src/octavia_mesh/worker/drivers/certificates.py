"""The controller CA: amphora identities for the agents' mutual TLS, and the controller's own client identity.

The local implementation keeps a self-made CA under the worker's state directory (key mode 0600), issues
each amphora a server certificate naming its id, and one client certificate naming the controller, which
is the only client an agent accepts.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The subject CN of the controller's client certificate; agents accept no other client.
CONTROLLER_IDENTITY = "octavia-mesh-controller"


@dataclass(frozen=True, slots=True)
class CertBundle:
    """A certificate with its key and the CA that signed it, all PEM."""

    certificate: bytes
    private_key: bytes
    ca_certificate: bytes
    expires_at: dt.datetime


class CertificateDriver(Protocol):
    """Issues the identities of the management plane's mutual TLS."""

    def issue_amphora_certificate(self, amphora_id: str, validity: dt.timedelta) -> CertBundle:
        """A server certificate for the agent of ``amphora_id`` (CN and SAN ``amphora-<id>``)."""
        ...

    def controller_certificate(self) -> CertBundle:
        """The controller's client certificate (CN :data:`CONTROLLER_IDENTITY`)."""
        ...


def amphora_identity(amphora_id: str) -> str:
    return f"amphora-{amphora_id}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class LocalCertificateDriver:
    """A CA kept in ``directory`` (created on first use, reused afterwards)."""

    def __init__(self, directory: Path, ca_validity: dt.timedelta = dt.timedelta(days=3650)) -> None:
        self._dir = directory
        self._lock = threading.Lock()
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_path, cert_path = self._dir / "ca.key", self._dir / "ca.pem"
        with self._lock:
            if not (key_path.exists() and cert_path.exists()):
                key = ec.generate_private_key(ec.SECP256R1())
                name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Octavia Mesh controller CA")])
                cert = (
                    x509.CertificateBuilder()
                    .subject_name(name)
                    .issuer_name(name)
                    .public_key(key.public_key())
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(_now() - dt.timedelta(minutes=5))
                    .not_valid_after(_now() + ca_validity)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .add_extension(
                        x509.KeyUsage(
                            digital_signature=True,
                            key_cert_sign=True,
                            crl_sign=True,
                            content_commitment=False,
                            key_encipherment=False,
                            data_encipherment=False,
                            key_agreement=False,
                            encipher_only=False,
                            decipher_only=False,
                        ),
                        critical=True,
                    )
                    .sign(key, hashes.SHA256())
                )
                _write_private(key_path, _pem_key(key))
                cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._ca_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        self._ca_pem = cert_path.read_bytes()
        self._ca_cert = x509.load_pem_x509_certificate(self._ca_pem)

    @property
    def ca_path(self) -> Path:
        return self._dir / "ca.pem"

    def _issue(self, common_name: str, usage: x509.ObjectIdentifier, validity: dt.timedelta) -> CertBundle:
        key = ec.generate_private_key(ec.SECP256R1())
        expires = _now() + validity
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(expires)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )  # type: ignore[arg-type]
        return CertBundle(
            cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), self._ca_pem, expires.replace(tzinfo=None)
        )

    def issue_amphora_certificate(self, amphora_id: str, validity: dt.timedelta) -> CertBundle:
        return self._issue(amphora_identity(amphora_id), ExtendedKeyUsageOID.SERVER_AUTH, validity)

    def controller_certificate(self) -> CertBundle:
        cert_path, key_path = self._dir / "controller.pem", self._dir / "controller.key"
        with self._lock:
            if cert_path.exists() and key_path.exists():
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                if cert.not_valid_after_utc > _now() + dt.timedelta(days=1):
                    return CertBundle(
                        cert_path.read_bytes(),
                        key_path.read_bytes(),
                        self._ca_pem,
                        cert.not_valid_after_utc.replace(tzinfo=None),
                    )
            bundle = self._issue(CONTROLLER_IDENTITY, ExtendedKeyUsageOID.CLIENT_AUTH, dt.timedelta(days=365))
            _write_private(key_path, bundle.private_key)
            cert_path.write_bytes(bundle.certificate)
            return bundle


class NoopCertificateDriver:
    """Issues nothing real: for providers and tests that never talk to an agent."""

    def issue_amphora_certificate(self, amphora_id: str, validity: dt.timedelta) -> CertBundle:
        return CertBundle(b"", b"", b"", (_now() + validity).replace(tzinfo=None))

    def controller_certificate(self) -> CertBundle:
        return CertBundle(b"", b"", b"", (_now() + dt.timedelta(days=365)).replace(tzinfo=None))
