"""TCP listeners, HTTPS pass-through (TLS ends at the member, not at HAProxy) and PROXY protocol pools."""

from __future__ import annotations

import collections
import http.client
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from dataplane_helpers import Backend, LoadBalancer, get, load_balancer, self_signed, who
from support import Rest


@pytest.fixture(scope="module")
def lb(api: Rest) -> Iterator[LoadBalancer]:
    with load_balancer(api, "tcp-and-passthrough") as handle:
        yield handle


def _read_all(address: str, port: int, source: str = "127.0.0.1", send: bytes = b"") -> bytes:
    with socket.create_connection((address, port), timeout=5, source_address=(source, 0)) as sock:
        if send:
            sock.sendall(send)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data


def test_tcp_listener_relays_any_protocol(lb: LoadBalancer, tcp_backends) -> None:
    """Members that speak first (no HTTP proxy would relay that), balanced round-robin per connection."""
    members = tcp_backends(2)
    listener = lb.listener(8071, protocol="TCP")
    lb.members(lb.pool(listener, protocol="TCP"), members)
    banners = collections.Counter(_read_all(lb.vip, 8071) for _ in range(6))
    assert banners == {b"tcp0\n": 3, b"tcp1\n": 3}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    directory: Path = tmp_path_factory.mktemp("tls")
    return {name: self_signed(directory, name) for name in ("tls0", "tls1")}


@pytest.mark.parametrize(("pool_protocol", "port"), [("HTTPS", 8072), ("TCP", 8073)])
def test_https_pass_through(lb: LoadBalancer, certificates, pool_protocol: str, port: int) -> None:
    members = [Backend(name, tls=cert.server_context()) for name, cert in certificates.items()]
    try:
        listener = lb.listener(port, protocol="HTTPS")
        lb.members(lb.pool(listener, protocol=pool_protocol), members)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False  # which member answers is up to the balancing: trust both, check below
        for cert in certificates.values():
            client.load_verify_locations(cert.cert)
        seen = collections.Counter()
        for _ in range(4):
            conn = http.client.HTTPSConnection(lb.vip, port, timeout=5, context=client)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read().decode().strip()
                # The certificate is the member's own: the TLS session runs end to end, through HAProxy.
                subject = dict(item[0] for item in conn.sock.getpeercert()["subject"])
            finally:
                conn.close()
            assert (response.status, subject["commonName"]) == (200, body)
            seen[body] += 1
        assert seen == {"tls0": 2, "tls1": 2}
        assert all(m.seen[-1].header("X-Forwarded-For") == [] for m in members)
    finally:
        for member in members:
            member.close()


@pytest.mark.parametrize(("pool_protocol", "port", "version"), [("PROXY", 8074, 1), ("PROXYV2", 8075, 2)])
def test_proxy_protocol_pools(lb: LoadBalancer, tcp_backends, pool_protocol: str, port: int, version: int) -> None:
    (member,) = tcp_backends(1, mode="proxy")
    listener = lb.listener(port, protocol="TCP")
    lb.members(lb.pool(listener, protocol=pool_protocol), [member])
    answer = _read_all(lb.vip, port, source="127.0.0.11", send=b"hello\n").decode()
    assert answer.startswith("tcp0 127.0.0.11:"), answer
    header = member.headers[-1]
    assert header["version"] == version
    assert (header["source"], header["destination"], header["destination_port"]) == ("127.0.0.11", lb.vip, port)
    assert answer.strip() == f"tcp0 127.0.0.11:{header['source_port']}"


def test_http_listener_with_a_proxy_pool(lb: LoadBalancer, tcp_backends) -> None:
    """An HTTP listener may use a PROXY pool: the member reads the client's address, then the request."""
    (member,) = tcp_backends(1, mode="proxy")
    listener = lb.listener(8076)
    lb.members(lb.pool(listener, protocol="PROXY"), [member])
    response = get(lb.vip, 8076, source="127.0.0.12")
    assert response.status == 200 and response.who.startswith("tcp0 127.0.0.12:"), response
    assert member.headers[-1]["destination_port"] == 8076


def test_tcp_listener_with_an_http_pool(lb: LoadBalancer, backends) -> None:
    """A TCP listener may use an HTTP pool (HAProxy then speaks HTTP to the members)."""
    members = backends(2)
    listener = lb.listener(8077, protocol="TCP")
    lb.members(lb.pool(listener, protocol="HTTP"), members)
    assert who(lb.vip, 8077, 4) == {"member0": 2, "member1": 2}
