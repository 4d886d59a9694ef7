"""Configuration changes under load are hitless: while keep-alive clients send requests, members are
added and removed and weights change through the API, and not one request fails."""

from __future__ import annotations

import collections
import http.client
import threading
import time
from dataclasses import dataclass, field

from dataplane_helpers import load_balancer, who
from support import Rest

CLIENTS = 3
LOAD_S = 5.0


@dataclass
class Load:
    """Keep-alive clients: each keeps its connection while the server does (HAProxy's old worker answers
    "Connection: close" after a reload; the client then opens a new one, as any HTTP client does)."""

    address: str
    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    connections: int = 0
    slowest: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self.address, self.port, timeout=5)
                with self.lock:
                    self.connections += 1
            started = time.monotonic()
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read().decode().strip()
                outcome = body if response.status == 200 else f"HTTP {response.status}"
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = None
            took = time.monotonic() - started
            with self.lock:
                self.slowest = max(self.slowest, took)
                if outcome.startswith("member"):
                    self.answers[outcome] += 1
                else:
                    self.failures.append(outcome)
        if conn is not None:
            conn.close()


def test_member_changes_under_load_fail_no_request(api: Rest, backends) -> None:
    members = backends(4)
    with load_balancer(api, "hitless") as lb:
        listener = lb.listener(8091)
        pool = lb.pool(listener)
        ids = lb.members(pool, members[:2])
        load = Load(lb.vip, 8091)
        threads = [threading.Thread(target=load.client, daemon=True) for _ in range(CLIENTS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        changes: list[tuple[str, float]] = []
        try:
            plan = [
                ("add member2", lambda: ids.update(member2=lb.member(pool, members[2]))),
                ("weight member0 = 3", lambda: lb.update_member(pool, ids["member0"], weight=3)),
                ("add member3", lambda: ids.update(member3=lb.member(pool, members[3], weight=2))),
                ("remove member1", lambda: lb.delete(f"pools/{pool['id']}/members/{ids['member1']['id']}")),
                ("weight member2 = 0", lambda: lb.update_member(pool, ids["member2"], weight=0)),
                ("member3 admin down", lambda: lb.update_member(pool, ids["member3"], admin_state_up=False)),
                (
                    "batch: member0, member1, member3",
                    lambda: ids.update(lb.members(pool, [members[i] for i in (0, 1, 3)])),
                ),
                ("weight member1 = 5", lambda: lb.update_member(pool, ids["member1"], weight=5)),
            ]
            for name, change in plan:
                time.sleep(0.3)
                change()
                changes.append((name, lb.last_change_s))
            while time.monotonic() - started < LOAD_S:
                time.sleep(0.05)
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(10)
        total = sum(load.answers.values()) + len(load.failures)
        print(
            f"\nhitless: {total} requests on {load.connections} connections in {time.monotonic() - started:.1f}s, "
            f"{len(changes)} changes ({', '.join(f'{n} {t:.2f}s' for n, t in changes)}), "
            f"slowest request {load.slowest * 1000:.0f} ms, answers {dict(load.answers)}"
        )
        assert load.failures == [], f"{len(load.failures)} of {total} requests failed: {load.failures[:5]}"
        assert len(changes) == len(plan)
        assert total >= 300, f"only {total} requests: the load did not run"
        assert set(load.answers) == {"member0", "member1", "member2", "member3"}
        assert load.connections > CLIENTS, "no reload ever closed a connection: was anything reloaded?"
        # The end state is served: member0, member1 (weight 5), member3 (weight 1); member2 was removed.
        assert who(lb.vip, 8091, 14) == {"member0": 2, "member1": 10, "member3": 2}
