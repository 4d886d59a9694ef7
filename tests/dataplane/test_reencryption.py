"""Pool re-encryption through the API and a real amphora: HAProxy speaks TLS to members that check what they
receive (the CA that verifies them, their CRL, the client certificate presented to them, TLS versions, cipher
and ALPN). The TLS material comes from the mesh's secret store."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dataplane_helpers import Backend, LoadBalancer, get, load_balancer, who
from support import Rest, vip_at
from tls_material import Issued, Store, crl, issue, p12

PROJECT = "dataplane"  # the project of the data-plane mesh's load balancers (its noauth default)


@dataclass(frozen=True)
class Handshake:
    """What one member saw of HAProxy's side of a TLS connection."""

    version: str
    cipher: str
    alpn: str | None
    client_cn: str | None  # the CN of the certificate HAProxy presented, if any


class TlsMember(Backend):
    """An HTTPS member on loopback with its own certificate; it records every connection's handshake.

    It asks for a client certificate (optionally, so that a missing one is seen, not just refused) and accepts
    only those ``client_ca`` signed; it offers only ``http/1.1`` by ALPN.
    """

    def __init__(self, name: str, identity: Issued, client_ca: Issued, directory: Path, **options: Any) -> None:
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        cert.write_bytes(identity.cert_pem)
        key.write_bytes(identity.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        context.load_verify_locations(cadata=client_ca.cert_pem.decode())
        context.verify_mode = ssl.CERT_OPTIONAL
        context.set_alpn_protocols(["http/1.1"])
        if "ciphers" in options:
            context.set_ciphers(options["ciphers"])
        self.handshakes: list[Handshake] = []
        super().__init__(name, tls=context)

    def _answer(self, handler: Any) -> None:
        sock = handler.request
        peer = sock.getpeercert() or {}
        subject = dict(pair[0] for pair in peer.get("subject", ()))
        self.handshakes.append(
            Handshake(sock.version(), sock.cipher()[0], sock.selected_alpn_protocol(), subject.get("commonName"))
        )
        super()._answer(handler)


@dataclass
class Material:
    """A member CA (and its CRL revoking one member), a CA for the client certificate, refs to all of them."""

    directory: Path
    member_ca: Issued
    client_ca: Issued
    ca_ref: str
    crl_ref: str
    client_ref: str
    members: dict[str, Issued] = field(default_factory=dict)

    def member_identity(self, name: str) -> Issued:
        return self.members.setdefault(name, issue(f"{name}.members.test", self.member_ca))


@pytest.fixture(scope="module")
def material(api: Rest, tmp_path_factory: pytest.TempPathFactory) -> Material:
    store = Store(api.base_url, PROJECT)
    member_ca, client_ca = issue("Member CA", ca=True), issue("Member Client CA", ca=True)
    client = issue("haproxy-to-members", client_ca)
    out = Material(
        directory=tmp_path_factory.mktemp("members"),
        member_ca=member_ca,
        client_ca=client_ca,
        ca_ref=store.secret(member_ca.cert_pem, "member-ca.pem"),
        crl_ref="",
        client_ref=store.secret(p12(client), "member-client.p12"),
    )
    revoked = out.member_identity("revoked")
    out.crl_ref = store.secret(crl(member_ca, revoked), "member-ca.crl")
    return out


@pytest.fixture(scope="module")
def lb(api: Rest) -> Iterator[LoadBalancer]:
    # A VIP of its own rather than the lowest free one: ACTIVE_STANDBY tests of this mesh route the addresses
    # they get to their bridges while they run.
    with load_balancer(api, "reencryption", vip_address=vip_at(api, 201, 47)) as handle:
        yield handle


@pytest.fixture
def members(material: Material) -> Iterator[Callable[..., TlsMember]]:
    started: list[TlsMember] = []

    def make(name: str, identity: Issued | None = None, **options: Any) -> TlsMember:
        member = TlsMember(
            name, identity or material.member_identity(name), material.client_ca, material.directory, **options
        )
        started.append(member)
        return member

    yield make
    for member in started:
        member.close()


def _pool(lb: LoadBalancer, port: int, members: list[TlsMember], **tls: Any) -> dict[str, Any]:
    listener = lb.listener(port)
    pool = lb.pool(listener, tls_enabled=True, **tls)
    lb.members(pool, members)
    return pool


def test_members_verified_by_the_pool_ca_and_crl(lb: LoadBalancer, material: Material, members) -> None:
    good, revoked = members("good"), members("revoked")
    stranger = members("stranger", issue("stranger.members.test", issue("Another CA", ca=True)))
    _pool(lb, 8471, [good, revoked, stranger], ca_tls_container_ref=material.ca_ref, crl_container_ref=material.crl_ref)
    # Only the member whose certificate the CA signed and the CRL does not revoke serves: HAProxy refuses the
    # others' handshakes (retrying, then redispatching, which may land on another refused one: 503).
    seen = who(lb.vip, 8471, 6)
    assert set(seen) <= {"good", "503"} and seen["good"] >= 2, seen
    assert revoked.requests() == 0 and stranger.requests() == 0
    assert {h.client_cn for h in good.handshakes} == {None}  # no tls_container_ref: no client certificate


def test_no_ca_means_no_verification(lb: LoadBalancer, members) -> None:
    stranger = members("unverified", issue("unverified.members.test", issue("Unknown CA", ca=True)))
    _pool(lb, 8472, [stranger])
    assert who(lb.vip, 8472, 2) == {"unverified": 2}


def test_client_certificate_alpn_and_versions(lb: LoadBalancer, material: Material, members) -> None:
    member = members("strict")
    _pool(
        lb,
        8473,
        [member],
        ca_tls_container_ref=material.ca_ref,
        tls_container_ref=material.client_ref,
        tls_versions=["TLSv1.3"],
        alpn_protocols=["h2", "http/1.1"],
    )
    assert who(lb.vip, 8473, 2) == {"strict": 2}
    assert {(h.version, h.alpn, h.client_cn) for h in member.handshakes} == {
        ("TLSv1.3", "http/1.1", "haproxy-to-members")
    }


def test_tls12_cipher_choice(lb: LoadBalancer, material: Material, members) -> None:
    cipher = "ECDHE-ECDSA-AES128-GCM-SHA256"  # the members' keys are EC P-256
    member = members("tls12", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
    _pool(lb, 8474, [member], ca_tls_container_ref=material.ca_ref, tls_versions=["TLSv1.2"], tls_ciphers=cipher)
    assert who(lb.vip, 8474, 2) == {"tls12": 2}
    assert {(h.version, h.cipher, h.client_cn) for h in member.handshakes} == {("TLSv1.2", cipher, None)}


def test_a_member_that_demands_a_client_certificate(lb: LoadBalancer, material: Material, members) -> None:
    """Without ``tls_container_ref`` HAProxy presents no certificate; a member that requires one refuses it."""
    member = members("demanding")
    member.tls.verify_mode = ssl.CERT_REQUIRED
    pool = _pool(lb, 8475, [member], ca_tls_container_ref=material.ca_ref)
    # TLS 1.3: HAProxy's handshake completes, the member's alert comes with the answer to the request (502).
    assert get(lb.vip, 8475).status in (502, 503)
    assert member.requests() == 0
    lb.update(f"pools/{pool['id']}", "pool", tls_container_ref=material.client_ref)
    assert who(lb.vip, 8475, 2) == {"demanding": 2}
    assert {h.client_cn for h in member.handshakes} == {"haproxy-to-members"}
