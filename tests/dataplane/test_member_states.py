"""What members, listeners and load balancers serve as their state changes: backup members, weight 0,
admin_state_up false on a member, a listener and the load balancer."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from dataplane_helpers import LoadBalancer, load_balancer, wait_until, who
from support import Rest

#: A check a second; one failure marks a member down, one success up.
FAST_TCP_MONITOR = {"delay": 1, "timeout": 1, "max_retries": 1, "max_retries_down": 1}


@pytest.fixture(scope="module")
def lb(api: Rest) -> Iterator[LoadBalancer]:
    with load_balancer(api, "member-states") as handle:
        yield handle


def port_closed(address: str, port: int) -> bool:
    """Whether nothing listens on ``address:port`` (the connection is refused)."""
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


def test_backup_members_only_when_all_others_are_down(lb: LoadBalancer, backends) -> None:
    normal = backends(2)
    backup = backends(2, prefix="backup")
    listener = lb.listener(8011)
    pool = lb.pool(listener)
    lb.members(pool, normal)
    for b in backup:
        lb.member(pool, b, backup=True)
    lb.monitor(pool, "TCP", **FAST_TCP_MONITOR)
    assert who(lb.vip, 8011, 12) == {"member0": 6, "member1": 6}

    normal[0].stop()
    # One normal member left: it takes everything (a refused request is redispatched to it at once, before
    # the monitor marks member0 down too), and the backups stay idle.
    assert who(lb.vip, 8011, 10) == {"member1": 10}
    assert sum(b.requests() for b in backup) == 0

    normal[1].stop()
    # Every normal member down: the backups serve, all of them (option allbackups, as Octavia renders).
    wait_until(lambda: set(who(lb.vip, 8011, 4)) <= {"backup2", "backup3"}, 10, "the backups to take over")
    assert who(lb.vip, 8011, 10) == {"backup2": 5, "backup3": 5}

    for b in normal:
        b.start()
    wait_until(lambda: who(lb.vip, 8011, 4) == {"member0": 2, "member1": 2}, 10, "the normal members to return")
    served = sum(b.requests() for b in backup)
    assert who(lb.vip, 8011, 10) == {"member0": 5, "member1": 5}
    assert sum(b.requests() for b in backup) == served


def test_weight_zero_drains(lb: LoadBalancer, backends) -> None:
    members = backends(3)
    listener = lb.listener(8012)
    pool = lb.pool(listener)
    ids = lb.members(pool, members)
    assert who(lb.vip, 8012, 9) == {"member0": 3, "member1": 3, "member2": 3}
    lb.update_member(pool, ids["member2"], weight=0)
    before = members[2].requests()
    assert who(lb.vip, 8012, 12) == {"member0": 6, "member1": 6}
    assert members[2].requests() == before
    lb.update_member(pool, ids["member2"], weight=1)
    assert who(lb.vip, 8012, 9) == {"member0": 3, "member1": 3, "member2": 3}


def test_weight_zero_keeps_existing_sessions(lb: LoadBalancer, backends) -> None:
    """Draining: a client whose session is on the member stays there; new clients go elsewhere."""
    members = backends(2)
    listener = lb.listener(8018)
    pool = lb.pool(listener, session_persistence={"type": "HTTP_COOKIE"})
    ids = lb.members(pool, members)
    lb.update_member(pool, ids["member1"], weight=0)
    session = {"Cookie": f"SRV={ids['member1']['id']}"}
    assert who(lb.vip, 8018, 4, headers=session) == {"member1": 4}
    assert who(lb.vip, 8018, 4) == {"member0": 4}


def test_pool_admin_state_down_answers_503(lb: LoadBalancer, backends) -> None:
    (member,) = backends(1)
    listener = lb.listener(8019)
    pool = lb.pool(listener)
    lb.members(pool, [member])
    lb.update(f"pools/{pool['id']}", "pool", admin_state_up=False)
    assert who(lb.vip, 8019, 2) == {"503": 2}
    lb.update(f"pools/{pool['id']}", "pool", admin_state_up=True)
    assert who(lb.vip, 8019, 2) == {"member0": 2}


def test_member_admin_state_down_gets_no_traffic(lb: LoadBalancer, backends) -> None:
    members = backends(3)
    listener = lb.listener(8013)
    pool = lb.pool(listener)
    ids = lb.members(pool, members)
    lb.update_member(pool, ids["member1"], admin_state_up=False)
    before = members[1].requests()
    assert who(lb.vip, 8013, 12) == {"member0": 6, "member2": 6}
    assert members[1].requests() == before
    lb.update_member(pool, ids["member1"], admin_state_up=True)
    assert who(lb.vip, 8013, 9) == {"member0": 3, "member1": 3, "member2": 3}


def test_listener_admin_state_down_closes_its_port(lb: LoadBalancer, backends) -> None:
    members = backends(2)
    first, second = lb.listener(8014), lb.listener(8015)
    lb.members(lb.pool(first), members[:1])
    lb.members(lb.pool(second), members[1:])
    assert who(lb.vip, 8014, 2) == {"member0": 2}
    assert who(lb.vip, 8015, 2) == {"member1": 2}
    lb.update(f"listeners/{second['id']}", "listener", admin_state_up=False)
    assert port_closed(lb.vip, 8015)
    assert who(lb.vip, 8014, 2) == {"member0": 2}  # the other listener serves on
    lb.update(f"listeners/{second['id']}", "listener", admin_state_up=True)
    assert who(lb.vip, 8015, 2) == {"member1": 2}


def test_load_balancer_admin_state_down_stops_everything(lb: LoadBalancer, backends) -> None:
    members = backends(2)
    first, second = lb.listener(8016), lb.listener(8017, protocol="TCP")
    lb.members(lb.pool(first), members[:1])
    lb.members(lb.pool(second, protocol="TCP"), members[1:])
    assert who(lb.vip, 8016, 2) == {"member0": 2}
    assert who(lb.vip, 8017, 2) == {"member1": 2}
    lb.update(f"loadbalancers/{lb.id}", "loadbalancer", admin_state_up=False)
    try:
        listeners = lb.api.ok("GET", f"/v2/lbaas/listeners?loadbalancer_id={lb.id}")["listeners"]
        ports = [listener["protocol_port"] for listener in listeners]
        assert {8016, 8017} <= set(ports)
        closed = {port: port_closed(lb.vip, port) for port in ports}
        assert all(closed.values()), f"ports still open while the load balancer is down: {closed}"
    finally:
        lb.update(f"loadbalancers/{lb.id}", "loadbalancer", admin_state_up=True)
    assert who(lb.vip, 8016, 2) == {"member0": 2}
    assert who(lb.vip, 8017, 2) == {"member1": 2}
