"""allowed_cidrs: a listener serves the clients it allows and refuses every other one as it connects."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from dataplane_helpers import LoadBalancer, get, load_balancer, refused
from support import Rest


@pytest.fixture(scope="module")
def lb(api: Rest) -> Iterator[LoadBalancer]:
    with load_balancer(api, "allowed-cidrs") as handle:
        yield handle


def test_http_listener(lb: LoadBalancer, backends) -> None:
    (member,) = backends(1)
    listener = lb.listener(8061, allowed_cidrs=["127.0.0.2/32"])
    lb.members(lb.pool(listener), [member])
    assert get(lb.vip, 8061, source="127.0.0.2").who == "member0"
    served = member.requests()
    assert refused(lb.vip, 8061, source="127.0.0.3")
    assert refused(lb.vip, 8061)  # from 127.0.0.1
    assert member.requests() == served

    lb.update(f"listeners/{listener['id']}", "listener", allowed_cidrs=["127.0.0.0/30", "127.0.0.200/32"])
    for allowed in ("127.0.0.2", "127.0.0.3", "127.0.0.200"):
        assert get(lb.vip, 8061, source=allowed).status == 200, allowed
    for denied in ("127.0.0.4", "127.0.0.201"):
        assert refused(lb.vip, 8061, source=denied), denied

    lb.update(f"listeners/{listener['id']}", "listener", allowed_cidrs=[])
    assert get(lb.vip, 8061, source="127.0.0.201").status == 200


def _banner(address: str, port: int, source: str) -> bytes:
    with socket.create_connection((address, port), timeout=3, source_address=(source, 0)) as sock:
        data = b""
        while chunk := sock.recv(100):
            data += chunk
        return data


def test_tcp_listener(lb: LoadBalancer, tcp_backends) -> None:
    (member,) = tcp_backends(1)
    listener = lb.listener(8062, protocol="TCP", allowed_cidrs=["127.0.0.2/32"])
    lb.members(lb.pool(listener, protocol="TCP"), [member])
    assert _banner(lb.vip, 8062, "127.0.0.2") == b"tcp0\n"
    try:
        answer = _banner(lb.vip, 8062, "127.0.0.3")
    except ConnectionResetError:
        answer = b""
    assert answer == b""
