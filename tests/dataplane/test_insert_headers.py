"""insert_headers: the headers HAProxy adds to requests, as the member receives them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dataplane_helpers import LoadBalancer, get, load_balancer
from support import Rest

#: What Octavia's API takes for an HTTP listener.
FORWARDED = ("X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto")
#: What octavia-lib also defines (and the amphora driver of Octavia silently ignores); our renderer renders them.
CLIENT_IP = ("X-Real-IP", "X-Client-IP", "X-Forwarded-IP")
ALL = FORWARDED + CLIENT_IP


@pytest.fixture(scope="module")
def lb(api: Rest) -> Iterator[LoadBalancer]:
    with load_balancer(api, "insert-headers") as handle:
        yield handle


def _seen(backend, names=ALL) -> dict[str, list[str]]:
    return {name: backend.seen[-1].header(name) for name in names}


def test_forwarded_headers_carry_the_right_values(lb: LoadBalancer, backends) -> None:
    (member,) = backends(1)
    listener = lb.listener(8051, insert_headers={name: "true" for name in FORWARDED})
    lb.members(lb.pool(listener), [member])
    assert get(lb.vip, 8051, source="127.0.0.7").who == "member0"
    assert _seen(member) == {
        "X-Forwarded-For": ["127.0.0.7"],
        "X-Forwarded-Port": ["8051"],
        "X-Forwarded-Proto": ["http"],
        "X-Real-IP": [],
        "X-Client-IP": [],
        "X-Forwarded-IP": [],
    }
    # Clients cannot forge them: HAProxy's values replace theirs; X-Forwarded-For is appended to (ours last).
    forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Port": "1", "X-Forwarded-Proto": "https"}
    assert get(lb.vip, 8051, headers=forged, source="127.0.0.8").status == 200
    assert _seen(member, FORWARDED) == {
        "X-Forwarded-For": ["6.6.6.6", "127.0.0.8"],
        "X-Forwarded-Port": ["8051"],
        "X-Forwarded-Proto": ["http"],
    }


def test_client_ip_headers_carry_the_client_address(lb: LoadBalancer, backends) -> None:
    (member,) = backends(1)
    listener = lb.listener(8052, insert_headers={name: "true" for name in CLIENT_IP})
    lb.members(lb.pool(listener), [member])
    forged = {name: "6.6.6.6" for name in CLIENT_IP}
    assert get(lb.vip, 8052, headers=forged, source="127.0.0.8").status == 200
    assert _seen(member, CLIENT_IP) == {name: ["127.0.0.8"] for name in CLIENT_IP}


def test_only_the_headers_asked_for(lb: LoadBalancer, backends) -> None:
    plain, some = backends(2)
    bare = lb.listener(8053)
    lb.members(lb.pool(bare), [plain])
    chosen = lb.listener(8054, insert_headers={"X-Forwarded-For": "false", "X-Forwarded-Port": "true"})
    lb.members(lb.pool(chosen), [some])
    assert get(lb.vip, 8053, source="127.0.0.9").status == 200
    assert get(lb.vip, 8054, source="127.0.0.9").status == 200
    assert _seen(plain) == {name: [] for name in ALL}
    assert _seen(some) == {name: [] for name in ALL} | {"X-Forwarded-Port": ["8054"]}
    # A listener's headers change with it.
    lb.update(f"listeners/{bare['id']}", "listener", insert_headers={"X-Forwarded-Proto": "True"})
    assert get(lb.vip, 8053, source="127.0.0.10").status == 200
    assert _seen(plain) == {name: [] for name in ALL} | {"X-Forwarded-Proto": ["http"]}
