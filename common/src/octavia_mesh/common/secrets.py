"""The local secret store's shared half: encryption at rest, certificate bundles, and reference resolution.

Secrets (the Barbican v1 subset the API serves at ``/v1``) keep their payload in the database as a
Fernet token (AES-128-CBC with HMAC-SHA256, from ``cryptography``); the keys never reach the database.
They come from ``*_SECRET_KEYS`` (comma-separated, for Kubernetes secrets) or from a key file, one key a
line, created mode 0600 with a fresh key on first use. The first key encrypts, every key decrypts
(``MultiFernet``), so a key is rotated by putting a new one first. Each token also names the row it
belongs to, so a ciphertext copied onto another row does not decrypt.

Octavia's references resolve as Octavia's Barbican certificate manager resolves them: the UUID at the end
of ``http(s)://<host>/v1/secrets/<uuid>`` (a PKCS12 bundle, or here also a PEM bundle) or
``.../v1/containers/<uuid>`` (a legacy ``certificate`` container of PEM secrets), whatever the host.
The worker calls :func:`resolve` (certificates with their keys) and :func:`resolve_secret` (client CAs and
CRLs) to build the PEM files of an amphora; the API calls them to validate references before it writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard, TypeVar

from cryptography import x509
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.common.db.models import Secret, SecretContainer, utcnow

logger = logging.getLogger(__name__)

#: Names of the secrets a Barbican ``certificate`` container may hold.
CERTIFICATE_PARTS = ("certificate", "private_key", "private_key_passphrase", "intermediates")
_BINDING = b"octavia-mesh-secret:"
_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.DOTALL)


class SecretError(Exception):
    """A reference that cannot be used; messages never carry payloads."""


class BadReference(SecretError):
    """Nothing usable behind the reference: unknown, another project's, expired, empty, or malformed content.

    The API answers Octavia's ``Could not retrieve certificate: [<refs>]``.
    """


class UnreadablePkcs12(SecretError):
    """A secret whose payload is not a usable certificate bundle (Octavia's ``UnreadablePKCS12``)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class DecryptionFailed(BadReference):
    """The token does not decrypt with the configured keys, or belongs to another row."""


# --- keys ----------------------------------------------------------------------------------------


class Keyring:
    """The Fernet keys of the store. ``repr`` never shows them."""

    def __init__(self, keys: Sequence[bytes | str]) -> None:
        if not keys:
            raise ValueError("the secret store needs at least one Fernet key")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except ValueError:
            raise ValueError("a secret store key is not a Fernet key (32 url-safe base64-encoded bytes)") from None
        self.size = len(keys)

    def __repr__(self) -> str:
        return f"Keyring({self.size} key{'s' if self.size != 1 else ''})"

    def encrypt(self, secret_id: str, payload: bytes) -> bytes:
        """The token stored for ``payload`` in row ``secret_id``."""
        return self._fernet.encrypt(_BINDING + secret_id.encode() + b"\n" + payload)

    def decrypt(self, secret_id: str, token: bytes) -> bytes:
        try:
            plain = self._fernet.decrypt(bytes(token))
        except InvalidToken:
            raise DecryptionFailed(f"secret {secret_id} does not decrypt with the configured keys") from None
        prefix = _BINDING + secret_id.encode() + b"\n"
        if not plain.startswith(prefix):
            raise DecryptionFailed(f"the payload stored with secret {secret_id} belongs to another secret")
        return plain[len(prefix) :]

    def rotate(self, secret_id: str, token: bytes) -> bytes:
        """``token`` re-encrypted with the first key (after a new key was put first)."""
        return self.encrypt(secret_id, self.decrypt(secret_id, token))


def ensure_key_file(path: str | os.PathLike[str]) -> list[bytes]:
    """The keys in ``path``, one a line (``#`` comments allowed); a fresh key file (mode 0600) if it is missing.

    API and worker may start together: the file appears atomically (a hard link of a complete temporary
    file), so one of them creates it and the other reads the same key.
    """
    target = Path(path)
    if not target.exists():
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".secret-key-", dir=target.parent)  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, target)
                logger.info("created the secret store key file %s", target)
        finally:
            os.unlink(tmp)
    mode = target.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning("secret store key file %s is readable by others (mode %o): chmod 600 it", target, mode)
    lines = target.read_bytes().splitlines()
    keys = [line.strip() for line in lines if line.strip() and not line.strip().startswith(b"#")]
    if not keys:
        raise ValueError(f"secret store key file {target} holds no key")
    return keys


def load_keyring(key_file: str, keys: Sequence[str] = ()) -> Keyring:
    """The keyring from explicit ``keys`` (``*_SECRET_KEYS``) or else from ``key_file``."""
    if keys:
        return Keyring(list(keys))
    if not key_file:
        raise ValueError("the secret store needs a key: set a key file or keys")
    try:
        return Keyring(ensure_key_file(key_file))
    except ValueError as exc:
        raise ValueError(f"{exc} (in {key_file})") from None


# --- bundles -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsBundle:
    """A certificate with its private key and chain, in PEM, as an amphora needs it."""

    certificate: str
    private_key: str = field(repr=False)
    intermediates: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """Octavia's name for the bundle's PEM file: the SHA-1 of the certificate (an identifier, not a MAC)."""
        return hashlib.sha1(self.certificate.encode(), usedforsecurity=False).hexdigest()

    @property
    def primary_cn(self) -> str | None:
        cert = x509.load_pem_x509_certificate(self.certificate.encode())
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else None

    def pem(self) -> str:
        """HAProxy's ``crt`` file, as Octavia's ``build_pem``: certificate, key, then intermediates."""
        return "\n".join([self.certificate, self.private_key, *self.intermediates]) + "\n"


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode().strip()


def _key_pem(key: PrivateKeyTypes) -> str:
    try:  # Octavia writes TraditionalOpenSSL; key types without one (Ed25519) fall back to PKCS8
        data = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    except ValueError:
        data = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    return data.decode().strip()


def _public(obj: x509.Certificate | PrivateKeyTypes) -> bytes:
    key = obj.public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _assemble(certs: list[x509.Certificate], key: PrivateKeyTypes | None) -> TlsBundle:
    """Pick the certificate the key belongs to; the others are the chain, in their order."""
    if not certs:
        raise ValueError("the bundle holds no certificate")
    if key is None:
        raise ValueError("the bundle holds no private key")
    leaf = next((c for c in certs if _public(c) == _public(key)), None)
    if leaf is None:
        raise ValueError("the private key does not match the certificate")
    chain = tuple(_cert_pem(c) for c in certs if c is not leaf)
    return TlsBundle(_cert_pem(leaf), _key_pem(key), chain)


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM file, a PKCS7 bundle (PEM or DER), or one DER certificate."""
    if b"-----BEGIN PKCS7-----" in data:
        return pkcs7.load_pem_pkcs7_certificates(data)
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        return pkcs7.load_der_pkcs7_certificates(data)


def load_private_key(data: bytes, passphrase: bytes | None = None) -> PrivateKeyTypes:
    """A PEM (or DER) private key, decrypted with ``passphrase`` when it is encrypted."""
    if b"-----BEGIN" in data:
        return serialization.load_pem_private_key(data, passphrase)
    return serialization.load_der_private_key(data, passphrase)


def parse_pkcs12(data: bytes) -> TlsBundle:
    """A PKCS12 bundle without a pass phrase, as Octavia reads ``default_tls_container_ref`` secrets."""
    try:
        p12 = pkcs12.load_pkcs12(data, None)
    except (TypeError, ValueError) as exc:
        raise UnreadablePkcs12(str(exc)) from None
    # Without a key, the certificate comes out among the "additional" ones: _assemble says what is missing.
    certs = [c.certificate for c in ([p12.cert] if p12.cert else []) + list(p12.additional_certs)]
    try:
        return _assemble(certs, p12.key)
    except ValueError as exc:
        raise UnreadablePkcs12(str(exc)) from None


def parse_pem_bundle(data: bytes) -> TlsBundle:
    """Certificate, private key and chain concatenated in one PEM file, in any order."""
    match = _PEM_KEY.search(data)
    try:
        key = load_private_key(match.group(0)) if match else None
        certs = x509.load_pem_x509_certificates(data) if b"-----BEGIN CERTIFICATE-----" in data else []
        return _assemble(certs, key)
    except (TypeError, ValueError) as exc:
        raise UnreadablePkcs12(str(exc)) from None


def parse_bundle(data: bytes) -> TlsBundle:
    """A single-secret bundle: PKCS12 (Octavia's format) or, as an extension, a PEM bundle."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return parse_pem_bundle(data)
    return parse_pkcs12(data)


def bundle_from_parts(
    certificate: bytes, private_key: bytes | None, intermediates: bytes | None = None, passphrase: bytes | None = None
) -> TlsBundle:
    """A bundle from the secrets of a legacy ``certificate`` container."""
    try:
        leaf = load_certificates(certificate)[:1]
        key = load_private_key(private_key, passphrase or None) if private_key else None
        chain = load_certificates(intermediates) if intermediates and intermediates.strip() else []
        bundle = _assemble(leaf, key)
    except (TypeError, ValueError) as exc:
        raise BadReference(f"unusable certificate container: {exc}") from None
    return TlsBundle(bundle.certificate, bundle.private_key, tuple(_cert_pem(c) for c in chain))


# --- references ----------------------------------------------------------------------------------


def ref_id(ref: str) -> str:
    """The UUID a reference names: its last path segment, as python-barbicanclient reads it."""
    try:
        return str(uuid.UUID(ref.rstrip("/").rsplit("/", 1)[-1]))
    except (ValueError, AttributeError):
        raise BadReference(f"{ref!r} names no secret or container") from None


_Row = TypeVar("_Row", Secret, SecretContainer)


def _visible(row: _Row | None, project_id: str | None) -> TypeGuard[_Row]:
    return row is not None and (project_id is None or row.project_id == project_id)


async def load_secret(session: AsyncSession, secret_id: str, project_id: str | None = None) -> Secret | None:
    """The secret if it exists, belongs to ``project_id`` (any project when ``None``) and has not expired."""
    secret = await session.get(Secret, secret_id)
    if not _visible(secret, project_id) or (secret.expiration is not None and secret.expiration <= utcnow()):
        return None
    return secret


async def _payload(session: AsyncSession, secret_id: str, key: Keyring, project_id: str | None) -> bytes:
    secret = await load_secret(session, secret_id, project_id)
    if secret is None or secret.encrypted_payload is None:
        raise BadReference(f"secret {secret_id} not found or without payload")
    try:
        return key.decrypt(secret.id, secret.encrypted_payload)
    except DecryptionFailed as exc:
        logger.error("%s", exc)  # the deployment's keys are wrong: say so where operators look
        raise


async def resolve_secret(session: AsyncSession, ref: str, key: Keyring, *, project_id: str | None = None) -> bytes:
    """The payload of the secret ``ref`` names (Octavia's ``get_secret``: client CAs and CRLs).

    ``project_id`` restricts the lookup to that project's secrets (the API); the worker passes none.
    """
    return await _payload(session, ref_id(ref), key, project_id)


async def resolve(session: AsyncSession, ref: str, key: Keyring, *, project_id: str | None = None) -> TlsBundle:
    """The certificate bundle ``ref`` names (Octavia's ``get_cert``).

    A secret holds a PKCS12 (or PEM) bundle; a ``certificate`` container holds PEM secrets. Raises
    :class:`BadReference` or :class:`UnreadablePkcs12`.
    """
    ident = ref_id(ref)
    secret = await load_secret(session, ident, project_id)
    if secret is not None:
        return parse_bundle(await _payload(session, ident, key, project_id))
    container = await session.get(SecretContainer, ident)
    if not _visible(container, project_id) or container.type != "certificate":
        raise BadReference(f"{ident} is not a certificate secret or container")
    parts = {item.get("name"): item["secret_id"] for item in container.secret_refs or []}
    if "certificate" not in parts:
        raise BadReference(f"container {ident} has no certificate")
    loaded: dict[str, bytes | None] = {}
    for name in CERTIFICATE_PARTS:
        if name in parts:
            loaded[name] = await _payload(session, parts[name], key, container.project_id)
    return bundle_from_parts(
        loaded["certificate"] or b"",
        loaded.get("private_key"),
        loaded.get("intermediates"),
        loaded.get("private_key_passphrase"),
    )
