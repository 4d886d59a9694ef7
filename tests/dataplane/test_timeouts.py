"""Listener timeouts as traffic sees them: timeout_member_data bounds a slow member's answer (504),
timeout_client_data closes an idle client connection."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from dataplane_helpers import LoadBalancer, get, load_balancer
from support import Rest


@pytest.fixture(scope="module")
def lb(api: Rest) -> Iterator[LoadBalancer]:
    with load_balancer(api, "timeouts") as handle:
        yield handle


def test_member_data_timeout(lb: LoadBalancer, backends) -> None:
    (member,) = backends(1)
    listener = lb.listener(8111, timeout_member_data=500)
    lb.members(lb.pool(listener), [member])
    assert get(lb.vip, 8111).who == "member0"
    started = time.monotonic()
    try:
        response = get(lb.vip, 8111, "/slow", timeout=5)
    finally:
        member.release.set()
    took = time.monotonic() - started
    assert response.status == 504
    assert 0.4 <= took < 2.0, f"504 after {took:.2f}s"


def test_client_data_timeout(lb: LoadBalancer, backends) -> None:
    (member,) = backends(1)
    listener = lb.listener(8112, timeout_client_data=500)
    lb.members(lb.pool(listener), [member])
    with socket.create_connection((lb.vip, 8112), timeout=5) as sock:
        started = time.monotonic()
        while sock.recv(4096):  # HAProxy may say 408 before it closes
            pass
        took = time.monotonic() - started
    assert 0.4 <= took < 2.0, f"an idle client was closed after {took:.2f}s"
