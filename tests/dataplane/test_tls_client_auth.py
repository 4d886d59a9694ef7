"""Client-certificate authentication on TERMINATED_HTTPS listeners, through the API and a real amphora.

The client CA and its CRL are secrets of the mesh's secret store (Barbican's v1 API at the edge); clients
present certificates that CA signed (one of them revoked by the CRL), one from another CA, or none.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from dataplane_helpers import Backend, LoadBalancer, load_balancer
from support import Rest, vip_at
from tls_material import Issued, Store, crl, issue, tls_refs

PROJECT = "dataplane"  # the project of the data-plane mesh's load balancers (its noauth default)
SERVER_NAME = "www.example.com"  # the name tls_refs' default certificate carries
CLIENT_HEADERS = (
    "X-SSL-Client-Verify",
    "X-SSL-Client-Has-Cert",
    "X-SSL-Client-DN",
    "X-SSL-Client-CN",
    "X-SSL-Issuer",
    "X-SSL-Client-SHA1",
    "X-SSL-Client-Not-Before",
    "X-SSL-Client-Not-After",
)


@dataclass(frozen=True)
class Clients:
    """Client identities as PEM files, and the listener-side refs."""

    ca_ref: str
    crl_ref: str
    good: Issued
    revoked: Issued
    stranger: Issued
    files: dict[str, tuple[Path, Path]]  # name -> (certificate, key)
    server_root: bytes


@pytest.fixture(scope="module")
def clients(api: Rest, tmp_path_factory: pytest.TempPathFactory) -> Clients:
    refs = tls_refs(api.base_url, PROJECT)
    store = Store(api.base_url, PROJECT)
    ca = issue("Client Auth CA", ca=True)
    good, revoked = issue("good-client", ca), issue("revoked-client", ca)
    stranger = issue("stranger-client", issue("Other CA", ca=True))
    directory = tmp_path_factory.mktemp("clients")
    files = {}
    for name, identity in (("good", good), ("revoked", revoked), ("stranger", stranger)):
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        cert.write_bytes(identity.cert_pem)
        key.write_bytes(identity.key_pem)
        files[name] = (cert, key)
    return Clients(
        ca_ref=store.secret(ca.cert_pem, "client-auth-ca.pem"),
        crl_ref=store.secret(crl(ca, revoked), "client-auth-ca.crl"),
        good=good,
        revoked=revoked,
        stranger=stranger,
        files=files,
        server_root=refs.root.cert_pem,
    )


@pytest.fixture(scope="module")
def lb(api: Rest) -> Iterator[LoadBalancer]:
    # A VIP of its own rather than the lowest free one: ACTIVE_STANDBY tests of this mesh route the addresses
    # they get to their bridges while they run.
    with load_balancer(api, "tls-client-auth", vip_address=vip_at(api, 201, 46)) as handle:
        yield handle


@dataclass(frozen=True)
class Answer:
    status: int
    body: str


def _get(clients: Clients, address: str, port: int, identity: str | None) -> Answer | None:
    """An HTTPS GET presenting the client certificate ``identity`` (or none); None when the TLS layer refuses.

    With TLS 1.3 the server judges the client's certificate after the client's side of the handshake is
    done, so a refusal may surface on the first read rather than in the handshake: both count.
    """
    context = ssl.create_default_context(cadata=clients.server_root.decode())
    if identity is not None:
        context.load_cert_chain(*clients.files[identity])
    raw = socket.create_connection((address, port), timeout=5)
    try:
        with context.wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return None
    finally:
        raw.close()
    if not data:
        return None  # closed without an answer: refused after the handshake
    head, _, body = data.partition(b"\r\n\r\n")
    return Answer(int(head.split(b" ", 2)[1]), body.decode())


def _listener(lb: LoadBalancer, clients: Clients, port: int, mode: str, member: Backend) -> None:
    refs = tls_refs(lb.api.base_url, PROJECT)
    listener = lb.listener(
        port,
        protocol="TERMINATED_HTTPS",
        default_tls_container_ref=refs.pkcs12,
        client_authentication=mode,
        client_ca_tls_container_ref=clients.ca_ref,
        client_crl_container_ref=clients.crl_ref,
        insert_headers={name: "true" for name in CLIENT_HEADERS},
    )
    lb.members(lb.pool(listener), [member])


def _headers(member: Backend) -> dict[str, str]:
    seen = member.seen[-1]
    return {name: ", ".join(seen.header(name)) for name in CLIENT_HEADERS}


def _expected(identity: Issued) -> dict[str, str]:
    """The headers HAProxy inserts for a verified certificate (``%{+Q}`` adds no quotes in a header value)."""
    der = identity.cert.public_bytes(serialization.Encoding.DER)
    cn = identity.cert.subject.rfc4514_string().removeprefix("CN=")
    issuer = identity.cert.issuer.rfc4514_string().removeprefix("CN=")
    return {
        "X-SSL-Client-Verify": "0",
        "X-SSL-Client-Has-Cert": "1",
        "X-SSL-Client-DN": f"/CN={cn}",
        "X-SSL-Client-CN": cn,
        "X-SSL-Issuer": f"/CN={issuer}",
        "X-SSL-Client-SHA1": hashlib.sha1(der).hexdigest().upper(),  # noqa: S324 - what HAProxy sends
        "X-SSL-Client-Not-Before": identity.cert.not_valid_before_utc.strftime("%y%m%d%H%M%SZ"),
        "X-SSL-Client-Not-After": identity.cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ"),
    }


def test_mandatory_client_authentication(lb: LoadBalancer, clients: Clients, backends) -> None:
    (member,) = backends(1)
    _listener(lb, clients, 8461, "MANDATORY", member)
    answer = _get(clients, lb.vip, 8461, "good")
    assert answer == Answer(200, "member0\n")
    assert _headers(member) == _expected(clients.good)
    served = member.requests()
    for identity in (None, "revoked", "stranger"):
        assert _get(clients, lb.vip, 8461, identity) is None, f"a client with {identity or 'no'} certificate got in"
    assert member.requests() == served
    assert _get(clients, lb.vip, 8461, "good") == Answer(200, "member0\n")  # and the good client still does


def test_optional_client_authentication(lb: LoadBalancer, clients: Clients, backends) -> None:
    (member,) = backends(1)
    _listener(lb, clients, 8462, "OPTIONAL", member)
    # Without a certificate the client is served, and the member learns it presented none.
    assert _get(clients, lb.vip, 8462, None) == Answer(200, "member0\n")
    headers = _headers(member)
    assert (headers["X-SSL-Client-Has-Cert"], headers["X-SSL-Client-Verify"]) == ("0", "0")
    assert headers["X-SSL-Client-CN"] == headers["X-SSL-Client-DN"] == ""
    # With a good one it is served with the certificate's details.
    assert _get(clients, lb.vip, 8462, "good") == Answer(200, "member0\n")
    assert _headers(member) == _expected(clients.good)
    # A certificate that fails verification is refused even though presenting one is optional.
    served = member.requests()
    for identity in ("revoked", "stranger"):
        assert _get(clients, lb.vip, 8462, identity) is None, f"a {identity} certificate got in"
    assert member.requests() == served


def test_client_ca_is_required_and_refs_are_checked(lb: LoadBalancer, clients: Clients) -> None:
    """The API refuses what HAProxy could not serve, before anything is PENDING."""
    refs = tls_refs(lb.api.base_url, PROJECT)
    body = {
        "loadbalancer_id": lb.id,
        "protocol": "TERMINATED_HTTPS",
        "protocol_port": 8463,
        "default_tls_container_ref": refs.pkcs12,
        "client_authentication": "MANDATORY",
    }
    response = lb.api.call("POST", "/v2/lbaas/listeners", {"listener": body})
    assert response.status_code == 400, response.text
    body |= {"client_ca_tls_container_ref": f"{lb.api.base_url}/v1/secrets/00000000-0000-0000-0000-000000000000"}
    response = lb.api.call("POST", "/v2/lbaas/listeners", {"listener": body})
    assert response.status_code == 400, response.text
    assert lb.api.ok("GET", f"/v2/lbaas/loadbalancers/{lb.id}")["loadbalancer"]["provisioning_status"] == "ACTIVE"
