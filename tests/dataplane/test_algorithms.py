"""Load-balancing algorithms, with real traffic: ROUND_ROBIN (and weights), LEAST_CONNECTIONS, SOURCE_IP,
SOURCE_IP_PORT. One load balancer, a listener per algorithm."""

from __future__ import annotations

import collections
import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from dataplane_helpers import LoadBalancer, get, load_balancer, wait_until, who
from support import Rest


@pytest.fixture(scope="module")
def lb(api: Rest) -> Iterator[LoadBalancer]:
    with load_balancer(api, "algorithms") as handle:
        yield handle


def test_round_robin_and_weights(lb: LoadBalancer, backends) -> None:
    members = backends(3)
    listener = lb.listener(8001)
    pool = lb.pool(listener, algorithm="ROUND_ROBIN")
    lb.members(pool, members[:2])
    assert who(lb.vip, 8001, 20) == {"member0": 10, "member1": 10}
    ids = lb.members(pool, members)  # batch update: member2 joins
    lb.update_member(pool, ids["member2"], weight=2)
    assert who(lb.vip, 8001, 40) == {"member0": 10, "member1": 10, "member2": 20}


def test_least_connections(lb: LoadBalancer, backends) -> None:
    """A member busy with a slow request gets no new ones while the other member is idle."""
    members = backends(2)
    listener = lb.listener(8002)
    pool = lb.pool(listener, algorithm="LEAST_CONNECTIONS")
    lb.members(pool, members)
    assert set(who(lb.vip, 8002, 4)) == {"member0", "member1"}  # both serve when idle

    slow: list[str] = []
    holder = threading.Thread(target=lambda: slow.append(get(lb.vip, 8002, "/slow", timeout=15).who), daemon=True)
    holder.start()
    try:
        busy = wait_until(lambda: next((b for b in members if b.inflight), None), 5, "the slow request to arrive")
        idle = next(b for b in members if b is not busy)
        assert who(lb.vip, 8002, 10) == {idle.name: 10}
    finally:
        for member in members:
            member.release.set()
        holder.join(10)
    assert slow == [busy.name]


def test_source_ip(lb: LoadBalancer, backends) -> None:
    """Each client address sticks to one member; different addresses spread."""
    members = backends(3)
    listener = lb.listener(8003)
    pool = lb.pool(listener, algorithm="SOURCE_IP")
    lb.members(pool, members)
    chosen = {}
    for host in range(10, 22):
        source = f"127.0.0.{host}"
        answers = who(lb.vip, 8003, 4, source=source)
        assert len(answers) == 1, f"{source} was spread: {answers}"
        chosen[source] = next(iter(answers))
    assert len(set(chosen.values())) >= 2, f"every address went to the same member: {chosen}"
    assert set(chosen.values()) <= {b.name for b in members}


def _ports(source: str, count: int) -> list[int]:
    """``count`` source ports that are free on ``source`` now."""
    ports = []
    for _ in range(count):
        with socket.socket() as sock:
            sock.bind((source, 0))
            ports.append(sock.getsockname()[1])
    return ports


def test_source_ip_port(lb: LoadBalancer, backends) -> None:
    """The same source address and port always reach the same member; other ports of that address spread."""
    members = backends(3)
    listener = lb.listener(8004)
    pool = lb.pool(listener, algorithm="SOURCE_IP_PORT")
    lb.members(pool, members)
    source = "127.0.0.50"
    for port in _ports(source, 3):
        answers = who(lb.vip, 8004, 4, source=(source, port))
        assert len(answers) == 1, f"{source}:{port} was spread: {answers}"
    spread = collections.Counter(get(lb.vip, 8004, source=source).who for _ in range(24))
    assert len(spread) >= 2, f"one address on 24 ports always reached the same member: {spread}"
    assert set(spread) <= {b.name for b in members}


def _banner(address: str, port: int, source: tuple[str, int]) -> str:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # no TIME_WAIT: reuse the port
        sock.settimeout(5)
        sock.bind(source)
        sock.connect((address, port))
        data = b""
        while chunk := sock.recv(100):
            data += chunk
        return data.decode().strip()


def test_source_ip_port_on_a_tcp_listener(lb: LoadBalancer, tcp_backends) -> None:
    members = tcp_backends(3)
    listener = lb.listener(8005, protocol="TCP")
    lb.members(lb.pool(listener, protocol="TCP", algorithm="SOURCE_IP_PORT"), members)
    source = "127.0.0.51"
    for port in _ports(source, 3):
        answers = {_banner(lb.vip, 8005, (source, port)) for _ in range(4)}
        assert len(answers) == 1, f"{source}:{port} was spread: {answers}"
    spread = collections.Counter(_banner(lb.vip, 8005, (source, 0)) for _ in range(24))
    assert len(spread) >= 2, f"one address on 24 ports always reached the same member: {spread}"
