"""TERMINATED_HTTPS through a real amphora: certificates from the secret store, SNI, HTTP to the members."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest
from dataplane_helpers import LoadBalancer, load_balancer
from support import Rest
from tls_material import tls_refs

PROJECT = "dataplane"  # the project of the data-plane mesh's load balancers (its noauth default)


@pytest.fixture(scope="module")
def lb(api: Rest) -> Iterator[LoadBalancer]:
    with load_balancer(api, "tls") as handle:
        yield handle


def _get_with_sni(address: str, port: int, server_name: str, ca_pem: bytes) -> tuple[int, str, str]:
    """An HTTPS GET to ``address`` presenting ``server_name`` in SNI, verified against ``ca_pem``."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    raw = socket.create_connection((address, port), timeout=5)
    with context.wrap_socket(raw, server_hostname=server_name) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        subject = dict(pair[0] for pair in tls.getpeercert()["subject"])
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body.decode(), subject["commonName"]


def test_terminated_https_with_sni(api: Rest, lb: LoadBalancer, backends) -> None:
    refs = tls_refs(api.base_url, PROJECT)
    (member,) = backends(1)
    listener = lb.listener(
        8443, protocol="TERMINATED_HTTPS", default_tls_container_ref=refs.pkcs12, sni_container_refs=[refs.container]
    )
    lb.members(lb.pool(listener), [member])
    root_pem = refs.root.cert_pem
    status, body, cn = _get_with_sni(lb.vip, 8443, "www.example.com", root_pem)
    assert (status, body.strip(), cn) == (200, "member0", "www.example.com")
    status, body, cn = _get_with_sni(lb.vip, 8443, "sni.example.com", root_pem)
    assert (status, body.strip(), cn) == (200, "member0", "sni.example.com")
