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
from cryptography.x509.oid import ExtendedKeyUsageOID

from octavia_mesh.common import pki

#: The subject CN of the controller's client certificate; agents accept no other client.
CONTROLLER_IDENTITY = "octavia-mesh-controller"


@dataclass(frozen=True, slots=True)
class CertBundle:
    """A certificate with its key and the CA that signed it, all PEM."""

    certificate: bytes
    private_key: bytes
    ca_certificate: bytes
    expires_at: dt.datetime
    serial: str = ""  # lower-case hex, as ``amphora.cert_serial`` records it (the health service checks it)


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


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class LocalCertificateDriver:
    """A CA kept in ``directory`` (created on first use, reused afterwards)."""

    def __init__(self, directory: Path, ca_validity: dt.timedelta = dt.timedelta(days=3650)) -> None:
        self._dir = directory
        self._lock = threading.Lock()
        # The CA itself is shared with the health service (common.pki), which issues its server certificate
        # from it and verifies amphorae against it.
        self._ca = pki.LocalCA(directory, ca_validity)
        self._ca_pem = self._ca.ca_pem

    @property
    def ca_path(self) -> Path:
        return self._dir / "ca.pem"

    def _issue(self, common_name: str, usage: x509.ObjectIdentifier, validity: dt.timedelta) -> CertBundle:
        return self._issue_for(common_name, [usage], validity)

    def _issue_for(self, common_name: str, usages: list[x509.ObjectIdentifier], validity: dt.timedelta) -> CertBundle:
        issued = self._ca.issue(common_name, usages, validity)
        return CertBundle(
            issued.certificate, issued.private_key, issued.ca_certificate, issued.expires_at, issued.serial
        )

    def issue_amphora_certificate(self, amphora_id: str, validity: dt.timedelta) -> CertBundle:
        # serverAuth towards the worker, clientAuth towards the health service it streams heartbeats to.
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        return self._issue_for(amphora_identity(amphora_id), usages, validity)

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
