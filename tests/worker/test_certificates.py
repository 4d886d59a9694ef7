"""The controller CA issues identities that verify against it, and survives restarts."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from octavia_mesh.worker.drivers.certificates import CONTROLLER_IDENTITY, LocalCertificateDriver


def _cn(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_identities_chain_to_the_ca(tmp_path: Path) -> None:
    driver = LocalCertificateDriver(tmp_path / "ca")
    amp = driver.issue_amphora_certificate("a1", dt.timedelta(days=30))
    client = driver.controller_certificate()
    ca = x509.load_pem_x509_certificate(amp.ca_certificate)
    for bundle in (amp, client):
        x509.load_pem_x509_certificate(bundle.certificate).verify_directly_issued_by(ca)
    assert _cn(amp.certificate) == "amphora-a1" and _cn(client.certificate) == CONTROLLER_IDENTITY
    assert dt.timedelta(days=29) < amp.expires_at - dt.datetime.now(dt.UTC).replace(tzinfo=None) <= dt.timedelta(30)
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600


def test_ca_and_client_identity_are_reused(tmp_path: Path) -> None:
    first = LocalCertificateDriver(tmp_path / "ca")
    again = LocalCertificateDriver(tmp_path / "ca")
    assert first.controller_certificate().ca_certificate == again.controller_certificate().ca_certificate
    assert first.controller_certificate().certificate == again.controller_certificate().certificate
