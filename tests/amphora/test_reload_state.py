"""What a reload carries over to the new HAProxy worker: server health (filtered to health only) and stick
tables (through the local peer), and what it must not carry over: the old configuration."""

from __future__ import annotations

import http.client
import socket
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from amphora_testkit import AgentProcess, Backend, vip, wait_serving

from octavia_mesh.amphora_agent import hacli, serverstate
from octavia_mesh.protos.agent.v1 import agent_pb2

# ------------------------------------------------------------------------------------ the filter, alone

HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
    "srv_check_addr srv_agent_addr srv_agent_port"
)


def _state(*servers: tuple[str, int, int, int]) -> str:
    """``show servers state`` of backend ``b`` with (name, op state, admin state, weight) per server."""
    lines = [
        f"2 b {i} {name} 127.0.0.1 {op} {admin} {weight} {weight} 4 8 2 0 6 0 0 0 - 80{i} - 1 0 - - 0"
        for i, (name, op, admin, weight) in enumerate(servers, 1)
    ]
    return "\n".join(["1", HEADER, *lines]) + "\n"


def _config(*servers: str, checks: str = "    option httpchk\n") -> str:
    body = "".join(f"    server {line}\n" for line in servers)
    return f"global\n    maxconn 10\n\nbackend b\n    mode http\n{checks}{body}"


def _kept(text: str) -> dict[str, list[str]]:
    return {line.split()[3]: line.split() for line in text.splitlines()[2:]}


def test_health_is_kept_and_the_rest_neutralised() -> None:
    config = _config("s1 127.0.0.1:801 weight 3 check inter 2s", "s2 127.0.0.1:802 weight 1 check inter 2s")
    text = serverstate.carry_over(_state(("s1", 2, 0, 3), ("s2", 0, 0, 1)), config, config)
    assert text.splitlines()[0] == "1" and text.splitlines()[1].split()[-1] == "srvrecord"
    kept = _kept(text)
    assert set(kept) == {"s1", "s2"}
    s2 = kept["s2"]
    assert len(s2) == serverstate.MANDATORY_FIELDS  # no SSL use, check or agent address/port
    assert (s2[4], s2[5], s2[6], s2[7], s2[8], s2[17], s2[18]) == ("-", "0", "0", "1", "1", "-", "802")


def test_weight_backup_and_cookie_changes_keep_health() -> None:
    old = _config("s1 127.0.0.1:801 weight 3 check inter 2s")
    new = _config("s1 127.0.0.1:801 weight 0 backup cookie s1 check inter 2s")
    kept = _kept(serverstate.carry_over(_state(("s1", 0, 0, 3)), old, new))
    assert kept["s1"][5] == "0"  # still down
    assert kept["s1"][7] == kept["s1"][8] == "3"  # running weight = old configured one: the new config wins


@pytest.mark.parametrize(
    ("new_server", "checks"),
    [
        ("s1 127.0.0.1:801 weight 1", "    option httpchk\n"),  # monitor removed
        ("s1 127.0.0.1:801 weight 1 check inter 5s", "    option httpchk\n"),  # monitor changed
        ("s1 127.0.0.1:801 weight 1 check inter 2s", "    option httpchk\n    http-check expect rstatus 2..\n"),
        ("s1 127.0.0.1:801 weight 1 disabled check inter 2s", "    option httpchk\n"),  # member disabled
        ("s1 127.0.0.1:801 weight 1 check inter 2s port 9000", "    option httpchk\n"),  # monitor_port
        ("s9 127.0.0.1:801 weight 1 check inter 2s", "    option httpchk\n"),  # another member
    ],
)
def test_a_changed_check_starts_afresh(new_server: str, checks: str) -> None:
    old = _config("s1 127.0.0.1:801 weight 1 check inter 2s")
    assert serverstate.carry_over(_state(("s1", 0, 0, 1)), old, _config(new_server, checks=checks)) == ""


def test_servers_in_maintenance_and_unknown_formats_carry_nothing() -> None:
    config = _config("s1 127.0.0.1:801 weight 1 check inter 2s")
    assert serverstate.carry_over(_state(("s1", 0, 5, 1)), config, config) == ""
    assert serverstate.carry_over(_state(("s1", 0, 0, 1)).replace("1\n", "2\n", 1), config, config) == ""
    assert serverstate.carry_over("", config, config) == ""


def test_show_peers_and_show_table_parsing() -> None:
    peers = (
        "0x91e4680: [10/Jan/2027:14:27:56] id=local disabled=0 flags=0x33 resync_timeout=<PAST> task_calls=8\n"
        "  0x91e4b30: id=amphora(local,inactive) addr=unix:0 last_status=NONE last_hdshk=<NEVER>\n"
    )
    assert hacli.parse_show_peers(peers) == {"local": 0x33}
    tables = "# table: pool-1:listener-2, type: ipv6, size:10240, used:6\n# table: b, type: string, size:10, used:0\n"
    assert hacli.parse_table_usage(tables) == {"pool-1:listener-2": 6, "b": 0}


# ---------------------------------------------------------------------------------- a real agent

FAST_CHECK = "check inter 300ms fall 1 rise 1"


def _lb_config(address: str, port: int, backends: list[Backend], version: int, *, check: str, sticky: bool) -> str:
    servers = "\n".join(f"    server m{i} 127.0.0.1:{b.port} weight 1 {check}" for i, b in enumerate(backends))
    stick = "    stick-table type ipv6 size 10k peers local\n    stick on src\n" if sticky else ""
    return f"""global
    maxconn 2000

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    load-server-state-from-file global

frontend listener1
    bind {address}:{port}
    option idle-close-on-response
    http-response set-header X-Cfg v{version}
    default_backend pool1

backend pool1
    balance roundrobin
{stick}{servers}
"""


def _apply(agent: AgentProcess, lb: str, config: str) -> float:
    stub = agent.stub()
    stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config=config), timeout=30)
    started = time.monotonic()
    stub.Activate(agent_pb2.ActivateRequest(load_balancer_id=lb), timeout=30)
    return time.monotonic() - started


def _statuses(agent: AgentProcess, lb: str) -> dict[str, str]:
    status = agent.stub().GetStatus(agent_pb2.GetStatusRequest(load_balancer_id=lb), timeout=10)
    return {s.name: s.status.split()[0] for b in status.backends for s in b.servers}


def _who(address: str, port: int, source: str = "127.0.0.1") -> str:
    sock = socket.create_connection((address, port), timeout=3, source_address=(source, 0))
    conn = http.client.HTTPConnection(address, port, timeout=3)
    conn.sock = sock
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.read().decode().strip() if response.status == 200 else str(response.status)
    finally:
        conn.close()


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.02)


@pytest.fixture
def three() -> Iterator[list[Backend]]:
    started = [Backend(f"b{i}") for i in range(3)]
    yield started
    for backend in started:
        backend.close()


def test_a_down_server_stays_down_across_a_reload_until_its_check_changes(
    agent: AgentProcess, three: list[Backend]
) -> None:
    lb, (address, port) = str(uuid.uuid4()), vip()

    def config(version: int, check: str = FAST_CHECK) -> str:
        return _lb_config(address, port, three, version, check=check, sticky=False)

    _apply(agent, lb, config(1))
    wait_serving(address, port)
    three[1].close()
    _until(lambda: _statuses(agent, lb).get("m1") == "DOWN", 5, "m1 to be marked down")
    _apply(agent, lb, config(2))
    # Right after the reload, before any check of the new worker could have run again:
    assert _statuses(agent, lb) == {"m0": "UP", "m1": "DOWN", "m2": "UP"}
    assert {_who(address, port) for _ in range(6)} == {"b0", "b2"}
    # With checks slowed down (a different check), the new worker judges afresh: m1 starts UP.
    _apply(agent, lb, config(3, check="check inter 30s fall 3 rise 1"))
    assert _statuses(agent, lb)["m1"] == "UP"
    agent.stub().DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=30)


def test_stick_tables_survive_reloads_even_of_a_young_worker(agent: AgentProcess, three: list[Backend]) -> None:
    lb, (address, port) = str(uuid.uuid4()), vip()

    def config(version: int) -> str:
        return _lb_config(address, port, three, version, check="", sticky=True)

    _apply(agent, lb, config(1))
    wait_serving(address, port)
    clients = [f"127.0.0.{host}" for host in range(80, 86)]
    before = {c: _who(address, port, c) for c in clients}
    assert set(before.values()) == {"b0", "b1", "b2"}
    # The worker is seconds old: HAProxy 2.8 would not hand its tables over yet; the agent waits until it does.
    _apply(agent, lb, config(2))
    assert {c: _who(address, port, c) for c in reversed(clients)} == before
    # The next worker learned them from the previous one, so it hands them on at once: no wait.
    assert _apply(agent, lb, config(3)) < 2.0
    assert {c: _who(address, port, c) for c in clients} == before
    agent.stub().DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=30)
