"""The health service's side of the heartbeat plane's mutual TLS.

The service presents a server certificate naming ``server_identity`` (the name agents verify) and accepts
only client certificates chaining to the controller CA; the TLS handshake itself refuses certificates from
another CA and expired ones. Which amphora a certificate names, and whether it is that amphora's current
one, is decided per stream (:mod:`octavia_mesh.health.servicer`) from the peer certificate gRPC passes on.

Two ways to get the material: PEM files (``*_PATH`` settings: a Kubernetes secret, for instance), or the
local controller CA the worker keeps (``ca_dir``), from which the service issues itself a certificate at
every start.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from octavia_mesh.common import pki
from octavia_mesh.health.settings import HealthSettings

#: gRPC's auth-context key of the peer's verified certificate (PEM).
PEER_CERTIFICATE = "x509_pem_cert"
#: Validity of a certificate the service issues itself (renewed at every start).
SELF_ISSUED_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    certificate: bytes
    private_key: bytes
    client_ca: bytes


def load_identity(settings: HealthSettings) -> ServerIdentity:
    """The server certificate, its key and the client CA, from files or from the local CA."""
    paths = (settings.server_cert_path, settings.server_key_path, settings.client_ca_path)
    if any(paths):
        if not all(paths):
            raise ValueError("OCTAVIA_MESH_HEALTH_SERVER_CERT_PATH, _SERVER_KEY_PATH and _CLIENT_CA_PATH go together")
        cert, key, ca = (Path(p).read_bytes() for p in paths)
        return ServerIdentity(cert, key, ca)
    ca = pki.LocalCA(Path(settings.ca_dir))
    issued = ca.issue(settings.server_identity, [ExtendedKeyUsageOID.SERVER_AUTH], SELF_ISSUED_VALIDITY)
    return ServerIdentity(issued.certificate, issued.private_key, issued.ca_certificate)


def server_credentials(identity: ServerIdentity) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(identity.private_key, identity.certificate)], root_certificates=identity.client_ca, require_client_auth=True
    )


def peer_certificate(context: grpc.aio.ServicerContext) -> x509.Certificate | None:
    """The client's verified certificate; None without one."""
    pems = list(context.auth_context().get(PEER_CERTIFICATE) or [])
    if not pems:
        return None
    try:
        return x509.load_pem_x509_certificate(pems[0])
    except ValueError:
        return None
