"""Octavia's operating-status rules (``status.evaluate``) and the agent's counter ledger, as pure functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from octavia_mesh.amphora_agent.counters import CounterLedger
from octavia_mesh.amphora_agent.heartbeat import build_report, parse_sample
from octavia_mesh.health.status import Node, Report, Tree, evaluate

LB, L1, L2, P1, P2, M1, M2, M3 = "lb", "l1", "l2", "p1", "p2", "m1", "m2", "m3"


def tree(lb_status: str = "ACTIVE", **admin: bool) -> Tree:
    """lb with listeners l1 (default pool p1: m1, m2) and l2, and pool p2 (m3) used by no listener."""

    def node(id_: str) -> Node:
        return Node(id_, "ONLINE", admin.get(id_, True), "ACTIVE")

    t = Tree(Node(LB, "ONLINE", admin.get(LB, True), lb_status), "project")
    t.listeners = {L1: node(L1), L2: node(L2)}
    t.pools = {P1: node(P1), P2: node(P2)}
    t.members = {P1: {M1: node(M1), M2: node(M2)}, P2: {M3: node(M3)}}
    return t


def report(m1: str = "UP", m2: str = "UP", backend: str = "UP", l1: str = "OPEN", l2: str | None = "OPEN") -> Report:
    listeners = [(L1, l1)] + ([(L2, l2)] if l2 else [])
    return Report.of(True, listeners, [(f"{P1}:{L1}", backend, {M1: m1, M2: m2})])


def changed(t: Tree, r: Report) -> dict[str, str]:
    return {c.id: c.status for c in evaluate(t, r)}


def test_all_up_changes_nothing_but_the_pool_no_listener_uses() -> None:
    # Octavia: a pool in no backend is OFFLINE; its members are not reported and keep their status.
    assert changed(tree(), report()) == {P2: "OFFLINE"}


def test_one_member_down_degrades_pool_and_load_balancer_only() -> None:
    assert changed(tree(), report(m1="DOWN")) == {M1: "ERROR", P1: "DEGRADED", LB: "DEGRADED", P2: "OFFLINE"}


@pytest.mark.parametrize(
    ("server", "member"),
    [
        ("UP 1/2", "ONLINE"),  # going down, not yet down
        ("DOWN 1/2", "ERROR"),  # coming back, not yet up
        ("DRAIN", "DRAINING"),
        ("MAINT", "OFFLINE"),
        ("MAINT (via p1/m2)", "OFFLINE"),
        ("no check", "NO_MONITOR"),
        ("NOLB", "ONLINE"),  # unknown to Octavia: left as it is
    ],
)
def test_server_words(server: str, member: str) -> None:
    got = changed(tree(), report(m1=server))
    assert got.get(M1, "ONLINE") == member


def test_backend_down_is_pool_and_load_balancer_error() -> None:
    got = changed(tree(), report(m1="DOWN", m2="DOWN", backend="DOWN"))
    assert got == {M1: "ERROR", M2: "ERROR", P1: "ERROR", LB: "ERROR", P2: "OFFLINE"}


def test_full_listener_degrades_and_missing_listener_is_error() -> None:
    assert changed(tree(), report(l1="FULL"))[L1] == "DEGRADED"
    got = changed(tree(), report(l2=None))
    assert got[L2] == "ERROR" and got[LB] == "DEGRADED"


def test_haproxy_down_is_load_balancer_error() -> None:
    got = changed(tree(), Report.of(False, [], []))
    assert got[L1] == got[L2] == got[LB] == "ERROR"
    assert got[P1] == "OFFLINE"
    assert M1 not in got and M2 not in got  # members of unreported pools keep their status


def test_disabled_objects_are_offline() -> None:
    got = changed(tree(**{M2: False, L2: False}), report(m2="MAINT", l2=None))
    assert got == {M2: "OFFLINE", L2: "OFFLINE", P2: "OFFLINE"}
    got = changed(tree(**{LB: False}), Report.of(True, [], []))
    assert got[LB] == got[L1] == got[L2] == "OFFLINE"


def test_member_missing_from_its_backend_goes_offline_unless_no_monitor() -> None:
    t = tree()
    t.members[P1][M2].operating_status = "NO_MONITOR"
    r = Report.of(True, [(L1, "OPEN"), (L2, "OPEN")], [(f"{P1}:{L1}", "UP", {})])
    got = changed(t, r)
    assert got[M1] == "OFFLINE" and M2 not in got


def test_shared_pool_counts_its_first_backend() -> None:
    backends = [(f"{P1}:{L1}", "UP", {M1: "UP", M2: "UP"}), (f"{P1}:{L2}", "DOWN", {})]
    assert P1 not in changed(tree(), Report.of(True, [(L1, "OPEN"), (L2, "OPEN")], backends))


@pytest.mark.parametrize("status", ["PENDING_CREATE", "PENDING_UPDATE", "PENDING_DELETE", "DELETED"])
def test_unsettled_load_balancers_are_left_alone(status: str) -> None:
    assert evaluate(tree(status), report(m1="DOWN", l2=None)) == []


def test_load_balancer_in_error_is_still_evaluated_and_missing_listeners_offline() -> None:
    got = changed(tree("ERROR"), report(l2=None))
    assert got[L2] == "OFFLINE"


def test_only_changes_are_reported() -> None:
    t = tree()
    for change in evaluate(t, report(m1="DOWN")):
        node = {LB: t.lb, **t.listeners, **t.pools, **t.members[P1], **t.members[P2]}[change.id]
        node.operating_status = change.status
    assert evaluate(t, report(m1="DOWN")) == []
    back = changed(t, report())
    assert back == {M1: "ONLINE", P1: "ONLINE", LB: "ONLINE"}


# ------------------------------------------------------------------------------------- the agent's side


STAT = (
    "Name: HAProxy\nPid: {pid}\nUptime_sec: 3\n\n"
    "# pxname,svname,status,type,scur,stot,bin,bout,ereq\n"
    "l1,FRONTEND,OPEN,0,{scur},{stot},{bin},{bout},{ereq}\n"
    "p1:l1,m1,UP,2,0,0,0,0,\n"
    "p1:l1,m2,DOWN 1/2,2,0,0,0,0,\n"
    "p1:l1,BACKEND,UP,1,0,0,0,0,\n"
)


def sample(pid: int, scur: int = 0, stot: int = 0, bin_: int = 0, bout: int = 0, ereq: int = 0) -> str:
    return STAT.format(pid=pid, scur=scur, stot=stot, bin=bin_, bout=bout, ereq=ereq)


def observe(ledger: CounterLedger, text: str) -> None:
    pid, rows = parse_sample(text)
    fields = ("bin", "bout", "stot", "ereq")
    ledger.observe("lb", pid, {r["pxname"]: tuple(int(r[f] or 0) for f in fields) for r in rows if r["type"] == "0"})


def counters(ledger: CounterLedger, text: str):  # noqa: ANN201 - a proto message
    _, rows = parse_sample(text)
    report = build_report("lb", True, rows, ledger)
    return report.listeners[0].counters


def test_report_carries_names_statuses_and_counters(tmp_path: Path) -> None:
    ledger = CounterLedger(tmp_path / "c.json")
    text = sample(100, scur=2, stot=5, bin_=50, bout=70, ereq=1)
    observe(ledger, text)
    _, rows = parse_sample(text)
    report = build_report("lb", True, rows, ledger)
    assert [(li.name, li.status) for li in report.listeners] == [("l1", "OPEN")]
    (pool,) = report.pools
    assert (pool.name, pool.status, [(m.name, m.status) for m in pool.members]) == (
        "p1:l1",
        "UP",
        [("m1", "UP"), ("m2", "DOWN 1/2")],
    )
    c = report.listeners[0].counters
    assert (c.bytes_in, c.bytes_out, c.active_connections, c.total_connections, c.request_errors) == (50, 70, 2, 5, 1)


def test_ledger_carries_totals_across_reloads_and_agent_restarts(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    ledger = CounterLedger(path)
    observe(ledger, sample(100, stot=10, bin_=1000))
    observe(ledger, sample(100, stot=15, bin_=1500))
    # A reload: a new worker counts from zero; the old worker's last values join the base.
    observe(ledger, sample(200, stot=2, bin_=200))
    assert counters(ledger, sample(200, stot=2, bin_=200)).total_connections == 17
    # A read of the old worker that raced the reload changes nothing.
    observe(ledger, sample(100, stot=16, bin_=1600))
    assert counters(ledger, sample(200, stot=2, bin_=200)).bytes_in == 1700
    ledger.save()
    # The agent restarts (and so does HAProxy): the saved ledger goes on from where it was.
    again = CounterLedger(path)
    observe(again, sample(300, stot=1, bin_=10))
    c = counters(again, sample(300, stot=1, bin_=10))
    assert (c.total_connections, c.bytes_in) == (18, 1710)
    # Counters that go down without a new worker (``clear counters``) are a reset too.
    observe(again, sample(300, stot=0, bin_=0))
    observe(again, sample(300, stot=4, bin_=40))
    assert counters(again, sample(300, stot=4, bin_=40)).total_connections == 22


def test_ledger_forgets_deleted_load_balancers(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    ledger = CounterLedger(path)
    observe(ledger, sample(100, stot=3))
    ledger.keep_only(set())
    ledger.save()
    assert CounterLedger(path).totals("lb", "l1") == (0, 0, 0, 0)
