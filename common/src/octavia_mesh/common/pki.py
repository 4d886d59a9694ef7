"""The controller CA on local disk: the one trust root of the management plane's mutual TLS.

The worker issues every amphora a certificate from it (the agent's server identity towards the worker, and
its client identity towards the health service), and its own client certificate; the health service issues
its server certificate from it and verifies amphorae against it. Both may start at the same moment on a
fresh state directory, so the CA is created under an exclusive file lock and loaded by everyone after.

Files: ``<dir>/ca.pem`` (certificate), ``<dir>/ca.key`` (key, mode 0600).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: The subject CN (and DNS SAN) of the health service's server certificate; agents verify it by this name.
HEALTH_IDENTITY = "octavia-mesh-health"
_AMPHORA_PREFIX = "amphora-"


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate with its key and the CA that signed it, all PEM."""

    certificate: bytes
    private_key: bytes
    ca_certificate: bytes
    expires_at: dt.datetime  # naive UTC, as the database stores times
    serial: str  # lower-case hex, as ``amphora.cert_serial`` stores it


def amphora_identity(amphora_id: str) -> str:
    """The subject CN of an amphora's certificate."""
    return f"{_AMPHORA_PREFIX}{amphora_id}"


def amphora_id_of(common_name: str) -> str | None:
    """The amphora a certificate CN names, or None when it names none."""
    amphora_id = common_name.removeprefix(_AMPHORA_PREFIX)
    return amphora_id if amphora_id and amphora_id != common_name else None


def serial_hex(certificate: x509.Certificate) -> str:
    """A certificate's serial number as ``amphora.cert_serial`` stores it."""
    return format(certificate.serial_number, "x")


def common_name(certificate: x509.Certificate) -> str:
    """The certificate's subject CN; empty when it has none."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _new_ca(validity: dt.timedelta) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Octavia Mesh controller CA")])
    usage = x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=True,
        crl_sign=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM)


class LocalCA:
    """A CA kept in ``directory``: created on first use by whichever process comes first, reused after."""

    def __init__(self, directory: Path, validity: dt.timedelta = dt.timedelta(days=3650)) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key_path, cert_path = directory / "ca.key", directory / "ca.pem"
        # The worker and the health service may both find the directory empty; the lock makes one of them
        # create the pair and the other load it (never two CAs, never a key without its certificate).
        with open(directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not (key_path.exists() and cert_path.exists()):
                    key_pem, cert_pem = _new_ca(validity)
                    write_private(key_path, key_pem)
                    tmp = cert_path.with_name(".ca.pem.tmp")
                    tmp.write_bytes(cert_pem)
                    os.replace(tmp, cert_path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        self._key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        self.ca_pem = cert_path.read_bytes()
        self._cert = x509.load_pem_x509_certificate(self.ca_pem)

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    def issue(self, common_name: str, usages: Sequence[x509.ObjectIdentifier], validity: dt.timedelta) -> Issued:
        """A new key and a certificate for it naming ``common_name`` (CN and DNS SAN), with ``usages`` as EKU."""
        key = ec.generate_private_key(ec.SECP256R1())
        expires = _now() + validity
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(expires)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .sign(self._key, hashes.SHA256())  # type: ignore[arg-type]
        )
        return Issued(
            certificate=cert.public_bytes(serialization.Encoding.PEM),
            private_key=_pem_key(key),
            ca_certificate=self.ca_pem,
            expires_at=expires.replace(tzinfo=None),
            serial=serial_hex(cert),
        )
