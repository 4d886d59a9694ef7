"""Health monitors, observed through traffic only: HAProxy marks a failing member down and traffic avoids
it within delay x max_retries_down (plus slack); it comes back within delay x max_retries once healthy.

Seeing that HAProxy *marked* a stopped member down takes a trick: without a monitor, HAProxy already
redispatches a refused request to another member at once, so plain round-robin traffic looks the same.
A client whose persistence cookie names the stopped member, though, is retried on that member (about
2 s: the retry turn-around) until the member is marked down; from then on HAProxy ignores the cookie and
answers at once. Monitor timing is measured from the stop to the first request of the fast run that
follows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from dataplane_helpers import Backend, LoadBalancer, get, load_balancer, wait_until, who
from support import Rest

DELAY, TIMEOUT, RISE, FALL = 1, 1, 2, 2
#: Checks start at a random point of their interval, a stopped member's last check may have just passed,
#: and HAProxy needs a moment to act: one interval plus half a second of slack on top of the bound.
SLACK_S = DELAY + 0.5
MONITOR = {"delay": DELAY, "timeout": TIMEOUT, "max_retries": RISE, "max_retries_down": FALL}
#: A request that took this long was retried on a member that was stopped but not yet marked down.
SLOW_S = 0.5

measured: dict[str, float] = {}


@pytest.fixture(scope="module")
def lb(api: Rest) -> Iterator[LoadBalancer]:
    with load_balancer(api, "health-monitors") as handle:
        yield handle
    if measured:
        print("\nhealth monitor timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in measured.items()))


@dataclass(frozen=True, slots=True)
class Sample:
    sent: float
    took: float
    status: int
    who: str


def _hammer(lb: LoadBalancer, port: int, cookie: str, until: float, threads: int = 10) -> list[Sample]:
    """Requests carrying ``cookie`` from ``threads`` clients until ``until`` (monotonic).

    A retried request holds its client for a second; the clients start a tenth of a second apart, so
    that some client starts a request about every tenth of a second all along."""
    samples: list[Sample] = []
    lock = threading.Lock()

    def client(offset: float) -> None:
        time.sleep(offset)
        while time.monotonic() < until:
            sent = time.monotonic()
            try:
                response = get(lb.vip, port, headers={"Cookie": cookie}, timeout=8)
                status, answer = response.status, response.who
            except OSError as exc:
                status, answer = 0, repr(exc)
            with lock:
                samples.append(Sample(sent, time.monotonic() - sent, status, answer))
            time.sleep(0.02)

    workers = [threading.Thread(target=client, args=(i / threads,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(until - time.monotonic() + 10)
    return sorted(samples, key=lambda s: s.sent)


@pytest.mark.parametrize(("monitor_type", "port"), [("TCP", 8041), ("HTTP", 8042)])
def test_stopped_member_is_avoided_then_returns(lb: LoadBalancer, backends, monitor_type: str, port: int) -> None:
    members = backends(3)
    listener = lb.listener(port)
    pool = lb.pool(listener, session_persistence={"type": "HTTP_COOKIE"})
    ids = lb.members(pool, members)
    extra = {"url_path": "/health", "expected_codes": "200"} if monitor_type == "HTTP" else {}
    lb.monitor(pool, monitor_type, **MONITOR, **extra)
    # HAProxy starts a checked member one failure away from down; FALL - 1 passed checks make it fully up,
    # so that going down takes FALL failures, as the monitor says. (A TCP check leaves no trace on the
    # member, which is never handed the connection HAProxy resets: wait for the checks' interval instead.)
    if monitor_type == "HTTP":
        wait_until(lambda: len(members[0].checks) >= FALL, DELAY * (FALL + 1) + 1, f"{FALL} checks")
        assert {(c.method, c.path) for b in members for c in b.checks} == {("GET", "/health")}
    else:
        time.sleep(DELAY * FALL + 0.2)
    cookie = f"SRV={ids['member0']['id']}"
    assert who(lb.vip, port, 3, headers={"Cookie": cookie}) == {"member0": 3}

    bound = DELAY * FALL + SLACK_S
    stopped = time.monotonic()
    members[0].stop()
    samples = _hammer(lb, port, cookie, until=stopped + bound + 1.5)
    assert all(s.status == 200 for s in samples), [s for s in samples if s.status != 200][:5]
    assert not any(s.who == "member0" for s in samples)
    slow = [s for s in samples if s.took >= SLOW_S]
    assert slow, "no request was retried on the stopped member: the test saw nothing"
    # The member was marked down between the last slow request's start and the next request's start.
    last_slow = max(s.sent for s in slow)
    after = [s for s in samples if s.sent > last_slow]
    assert len(after) >= 20, f"too few requests after the member was avoided ({len(after)})"
    measured[f"{monitor_type} down"] = avoided = after[0].sent - stopped
    assert avoided <= bound, f"the stopped member was still tried {avoided:.2f}s after it stopped (bound {bound}s)"

    members[0].start()
    restarted = time.monotonic()
    wait_until(
        lambda: get(lb.vip, port, headers={"Cookie": cookie}).who == "member0",
        DELAY * RISE + SLACK_S + 2,
        "member0 to serve again",
        interval=0.05,
    )
    measured[f"{monitor_type} up"] = back = time.monotonic() - restarted
    assert back <= DELAY * RISE + SLACK_S, f"member0 came back after {back:.2f}s"


def test_http_monitor_uses_url_path_and_expected_codes(lb: LoadBalancer, backends) -> None:
    members = backends(3)
    for member in members:
        member.health_status = 202
    listener = lb.listener(8043)
    pool = lb.pool(listener)
    lb.members(pool, members)
    lb.monitor(pool, "HTTP", **MONITOR, http_method="GET", url_path="/health", expected_codes="201-203")
    wait_until(lambda: all(len(b.checks) >= FALL for b in members), DELAY * (FALL + 1) + 1, "members fully up")
    # 202 is in 201-203: everyone is up (HAProxy starts members up, so this is a baseline only).
    assert who(lb.vip, 8043, 6) == {"member0": 2, "member1": 2, "member2": 2}

    def member1_avoided(backend: Backend) -> bool:
        before = backend.requests()
        answers = who(lb.vip, 8043, 6)
        return backend.requests() == before and answers == {"member0": 3, "member2": 3}

    def timed(what: str, condition: object, timeout: float) -> float:
        started = time.monotonic()
        wait_until(condition, timeout, what, interval=0.05)
        measured[what] = took = time.monotonic() - started
        return took

    members[1].health_status = 500
    assert timed("HTTP 500 down", lambda: member1_avoided(members[1]), 10) <= DELAY * FALL + SLACK_S
    members[1].health_status = 200  # healthy to a person, not to this monitor: 200 is outside 201-203
    time.sleep(DELAY * RISE + SLACK_S)
    assert member1_avoided(members[1])
    members[1].health_status = 203
    took = timed("HTTP 203 up", lambda: who(lb.vip, 8043, 6) == {"member0": 2, "member1": 2, "member2": 2}, 10)
    assert took <= DELAY * RISE + SLACK_S
    paths = {(c.method, c.path) for c in members[1].checks}
    assert paths == {("GET", "/health")}


def test_http_monitor_method_version_and_host(lb: LoadBalancer, backends) -> None:
    (member,) = backends(1)
    listener = lb.listener(8046)
    pool = lb.pool(listener)
    lb.members(pool, [member])
    lb.monitor(
        pool,
        "HTTP",
        **MONITOR,
        http_method="HEAD",
        url_path="/health?deep=1",
        http_version=1.1,
        domain_name="health.example.com",
    )
    check = wait_until(lambda: member.checks and member.checks[-1], 2 * DELAY + 1, "an HTTP check")
    assert (check.method, check.path, check.version) == ("HEAD", "/health?deep=1", "HTTP/1.1")
    assert check.header("Host") == ["health.example.com"]
    assert who(lb.vip, 8046, 2) == {"member0": 2}


def test_monitor_address_and_port(lb: LoadBalancer, backends) -> None:
    """A member checked elsewhere (monitor_address/monitor_port) is marked down when that check fails, even
    though it serves on."""
    serving, other, health = backends(3)
    listener = lb.listener(8047)
    pool = lb.pool(listener)
    lb.members(pool, [other])
    lb.member(pool, serving, monitor_address=health.address, monitor_port=health.port)
    lb.monitor(pool, "HTTP", **MONITOR, url_path="/health")
    wait_until(lambda: len(health.checks) >= FALL, DELAY * (FALL + 1) + 1, "checks on the monitor port")
    assert serving.checks == []
    assert who(lb.vip, 8047, 4) == {"member0": 2, "member1": 2}
    health.stop()
    started = time.monotonic()
    wait_until(lambda: who(lb.vip, 8047, 4) == {"member1": 4}, 10, "member0 to be avoided", interval=0.05)
    measured["monitor_port down"] = took = time.monotonic() - started
    assert took <= DELAY * FALL + SLACK_S


def test_down_member_stays_down_across_an_unrelated_reload(api: Rest, backends) -> None:
    members = backends(3)
    with load_balancer(api, "reload-keeps-health") as lb:
        listener = lb.listener(8044)
        pool = lb.pool(listener, session_persistence={"type": "HTTP_COOKIE"})
        ids = lb.members(pool, members)
        lb.monitor(pool, "TCP", delay=3, timeout=1, max_retries=1, max_retries_down=1)
        # The member in the middle of the backend: HAProxy spreads the first checks after a start over the
        # interval by position, so its first check comes a second or more after the reload, never at once.
        victim = sorted(members, key=lambda b: ids[b.name]["id"])[1]
        cookie = {"Cookie": f"SRV={ids[victim.name]['id']}"}
        victim.stop()

        def answered_at_once() -> bool:
            started = time.monotonic()
            response = get(lb.vip, 8044, headers=cookie, timeout=8)
            return response.status == 200 and time.monotonic() - started < SLOW_S

        wait_until(answered_at_once, 3 * 1 + SLACK_S + 3, "the stopped member to be marked down")
        lb.listener(8045)  # an unrelated change: HAProxy reloads
        assert [answered_at_once() for _ in range(3)] == [True, True, True], "the dead member took traffic again"
