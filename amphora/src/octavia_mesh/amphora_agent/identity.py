"""The agent's own identity: the certificate and key it presents, replaceable while it runs.

The same pair is the agent's server identity towards the controller and its client identity towards the
health service. ``RotateCertificate`` replaces it without a restart and without touching HAProxy:

* the new pair is checked first (the key must match the certificate), so a bad request can never leave the
  agent unreachable;
* it is written over the files the agent started from, so a restarted agent comes back with it. Two files
  cannot be renamed at once: both are written in full and checked first, and an agent that died between
  the renames finishes the swap when it starts (:func:`finish_interrupted_swap`);
* gRPC asks :meth:`AgentIdentity.fetch` before every new TLS handshake (``dynamic_ssl_server_credentials``),
  so the next connection is served with the new certificate; open connections keep theirs;
* whoever else presents the identity (the heartbeat client) registers with :meth:`AgentIdentity.on_change`
  and reconnects, reading :attr:`AgentIdentity.certificate` and :attr:`AgentIdentity.private_key` again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import grpc

logger = logging.getLogger(__name__)

#: The largest certificate chain or key the agent accepts.
MAX_PEM = 64 * 1024


def _next(path: Path) -> Path:
    return path.with_name(f"{path.name}.next")


def _tmp(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp")


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) and flush it to disk before anyone renames it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def finish_interrupted_swap(cert_path: Path, key_path: Path) -> None:
    """Complete a rotation the agent died in the middle of (see the module docstring).

    A new pair is written as ``*.tmp`` and checked, then renamed to ``*.next`` (key first), then over the
    current files (key first). So a ``cert.next`` means a checked pair whose swap was under way: the renames
    left are done now. A lone ``key.next`` or any ``*.tmp`` is a rotation that died before its commit point:
    it is dropped.
    """
    for path in (cert_path, key_path):
        _tmp(path).unlink(missing_ok=True)
    cert_next, key_next = _next(cert_path), _next(key_path)
    if cert_next.exists():
        if key_next.exists():
            os.replace(key_next, key_path)
        os.replace(cert_next, cert_path)
        logger.warning("finished a certificate rotation interrupted by a restart")
    elif key_next.exists():
        key_next.unlink()


class AgentIdentity:
    """The certificate and key the agent presents, and the CA its clients must be signed by."""

    def __init__(self, cert_path: Path, key_path: Path, client_ca_path: Path) -> None:
        self._cert_path, self._key_path = cert_path, key_path
        finish_interrupted_swap(cert_path, key_path)
        self._certificate = cert_path.read_bytes()
        self._private_key = key_path.read_bytes()
        self._client_ca = client_ca_path.read_bytes()
        # gRPC calls fetch() from its own threads; replace() runs on the event loop.
        self._lock = threading.Lock()
        self._generation = 0
        self._served = 0
        self._listeners: list[Callable[[], None]] = []

    @property
    def certificate(self) -> bytes:
        return self._certificate

    @property
    def private_key(self) -> bytes:
        return self._private_key

    @property
    def certificate_sha256(self) -> str:
        return hashlib.sha256(self._certificate).hexdigest()

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self._private_key, self._certificate)], root_certificates=self._client_ca
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials that require a client certificate signed by the client CA, and present the current
        identity at every new handshake."""
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(),
            # grpc's stub says the fetcher never returns None; grpc documents None as "keep the current one".
            self.fetch,  # pyright: ignore[reportArgumentType]
            require_client_authentication=True,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's certificate fetcher: the new configuration once after a rotation, else None (no change)."""
        try:
            with self._lock:
                if self._served == self._generation:
                    return None
                self._served = self._generation
                return self._configuration()
        except Exception:  # raising into gRPC's core would fail the handshake; keep the current identity
            logger.exception("could not hand the new certificate to gRPC")
            return None

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) after every rotation."""
        self._listeners.append(callback)

    def replace(self, certificate: bytes, private_key: bytes) -> str:
        """Check, persist and present a new identity; returns the new certificate's SHA-256 (hex).

        Raises:
            ValueError: the pair is empty, too large, not PEM, or the key does not match the certificate.
        """
        if not certificate.strip() or not private_key.strip():
            raise ValueError("certificate and private_key are required")
        if len(certificate) > MAX_PEM or len(private_key) > MAX_PEM:
            raise ValueError(f"certificate and private_key may have at most {MAX_PEM} bytes each")
        cert_tmp, key_tmp = _tmp(self._cert_path), _tmp(self._key_path)
        cert_next, key_next = _next(self._cert_path), _next(self._key_path)
        _write(key_tmp, private_key)
        _write(cert_tmp, certificate)
        try:
            # OpenSSL loads the pair exactly as gRPC will, and refuses a key that is not the certificate's.
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_tmp, key_tmp)
        except (ssl.SSLError, OSError) as exc:
            cert_tmp.unlink(missing_ok=True)
            key_tmp.unlink(missing_ok=True)
            raise ValueError(f"not a usable certificate and key: {exc}") from None
        os.replace(key_tmp, key_next)
        os.replace(cert_tmp, cert_next)  # the commit point: from here a restart finishes the swap
        os.replace(key_next, self._key_path)
        os.replace(cert_next, self._cert_path)
        with self._lock:
            self._certificate, self._private_key = certificate, private_key
            self._generation += 1
        logger.info("certificate rotated (sha256 %s)", self.certificate_sha256)
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:
                logger.exception("a certificate-rotation listener failed")
        return self.certificate_sha256
