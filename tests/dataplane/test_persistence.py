"""Session persistence with real traffic: SOURCE_IP, HTTP_COOKIE and APP_COOKIE over round-robin pools."""

from __future__ import annotations

import collections
from collections.abc import Iterator

import pytest
from dataplane_helpers import LoadBalancer, get, load_balancer, who
from support import Rest


@pytest.fixture(scope="module")
def lb(api: Rest) -> Iterator[LoadBalancer]:
    with load_balancer(api, "persistence") as handle:
        yield handle


def test_source_ip_persistence(lb: LoadBalancer, backends) -> None:
    members = backends(3)
    listener = lb.listener(8021)
    pool = lb.pool(listener, session_persistence={"type": "SOURCE_IP"})
    lb.members(pool, members)
    first = {}
    for host in range(60, 66):
        source = f"127.0.0.{host}"
        answers = who(lb.vip, 8021, 5, source=source)
        assert len(answers) == 1, f"{source} was not kept on one member: {answers}"
        first[source] = next(iter(answers))
    # A new client is placed round-robin, then kept: six clients cover all three members twice.
    assert collections.Counter(first.values()) == {"member0": 2, "member1": 2, "member2": 2}


def test_http_cookie_persistence(lb: LoadBalancer, backends) -> None:
    members = backends(3)
    listener = lb.listener(8022)
    pool = lb.pool(listener, session_persistence={"type": "HTTP_COOKIE"})
    ids = lb.members(pool, members)
    member_of = {m["id"]: name for name, m in ids.items()}
    clients = []
    for _ in range(3):
        response = get(lb.vip, 8022)
        cookie = response.headers.get("set-cookie", "")
        name, _, value = cookie.split(";")[0].partition("=")
        assert name == "SRV", f"no persistence cookie: {response.headers}"
        assert member_of[value] == response.who  # the cookie names the member that answered
        clients.append((value, response.who))
    assert {w for _, w in clients} == {"member0", "member1", "member2"}
    for value, member in clients:
        answers = who(lb.vip, 8022, 6, headers={"Cookie": f"SRV={value}"})
        assert answers == {member: 6}, f"cookie {value} did not keep the client on {member}: {answers}"
    # "indirect": HAProxy keeps its cookie to itself.
    assert all("SRV" not in seen.cookies() for b in members for seen in b.seen)
    # Without the cookie, round robin as usual.
    assert who(lb.vip, 8022, 6) == {"member0": 2, "member1": 2, "member2": 2}


def test_app_cookie_persistence(lb: LoadBalancer, backends) -> None:
    members = backends(3)
    listener = lb.listener(8023)
    pool = lb.pool(listener, session_persistence={"type": "APP_COOKIE", "cookie_name": "JSESSIONID"})
    lb.members(pool, members)
    sessions = []
    for _ in range(3):
        response = get(lb.vip, 8023, "/login")
        cookie = response.headers.get("set-cookie", "").split(";")[0]
        assert cookie.startswith(f"JSESSIONID={response.who}-"), response.headers
        sessions.append((cookie, response.who))
    assert {w for _, w in sessions} == {"member0", "member1", "member2"}
    for cookie, member in sessions:
        answers = who(lb.vip, 8023, 6, headers={"Cookie": f"other=1; {cookie}"})
        assert answers == {member: 6}, f"{cookie} did not stick to {member}: {answers}"
    # A session the members never issued is not stuck anywhere.
    assert len(who(lb.vip, 8023, 6, headers={"Cookie": "JSESSIONID=unknown"})) == 3


def test_source_ip_persistence_survives_a_reload(lb: LoadBalancer, backends) -> None:
    members = backends(3)
    listener = lb.listener(8024)
    pool = lb.pool(listener, session_persistence={"type": "SOURCE_IP"})
    lb.members(pool, members)
    clients = [f"127.0.0.{host}" for host in range(70, 76)]
    before = {c: next(iter(who(lb.vip, 8024, 1, source=c))) for c in clients}
    lb.listener(8025)  # an unrelated change: HAProxy reloads
    # In reverse order: a fresh round robin could not give every client its old member back by chance.
    after = {c: next(iter(who(lb.vip, 8024, 1, source=c))) for c in reversed(clients)}
    assert after == before
