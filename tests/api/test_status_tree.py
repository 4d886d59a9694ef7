"""``GET /v2/lbaas/loadbalancers/{id}/status``: the whole tree with both statuses at every node."""

from __future__ import annotations

from support import Rest, assert_fault


def test_status_tree(rest: Rest) -> None:
    lb = rest.create_lb(name="tree")
    empty = rest.ok("GET", f"/v2/lbaas/loadbalancers/{lb['id']}/status")
    assert empty == {
        "statuses": {
            "loadbalancer": {
                "id": lb["id"],
                "name": "tree",
                "operating_status": "OFFLINE",  # the noop provider, as Octavia's no-op drivers: nothing reports
                "provisioning_status": "ACTIVE",
                "listeners": [],
            }
        }
    }
    listener = rest.ok(
        "POST",
        "/v2/lbaas/listeners",
        {"listener": {"name": "l1", "protocol": "HTTP", "protocol_port": 80, "loadbalancer_id": lb["id"]}},
    )["listener"]
    rest.wait_lb_active(lb["id"])
    pool = rest.ok(
        "POST",
        "/v2/lbaas/pools",
        {"pool": {"name": "p1", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "listener_id": listener["id"]}},
    )["pool"]
    rest.wait_lb_active(lb["id"])
    other = rest.ok(
        "POST",
        "/v2/lbaas/pools",
        {"pool": {"name": "p2", "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "loadbalancer_id": lb["id"]}},
    )["pool"]
    rest.wait_lb_active(lb["id"])
    member = rest.ok(
        "POST",
        f"/v2/lbaas/pools/{pool['id']}/members",
        {"member": {"name": "m1", "address": "192.0.2.10", "protocol_port": 8080}},
    )["member"]
    rest.wait_lb_active(lb["id"])
    monitor = rest.ok(
        "POST",
        "/v2/lbaas/healthmonitors",
        {
            "healthmonitor": {
                "name": "hm1",
                "pool_id": pool["id"],
                "type": "HTTP",
                "delay": 5,
                "timeout": 3,
                "max_retries": 3,
            }
        },
    )["healthmonitor"]
    rest.wait_lb_active(lb["id"])
    rest.ok(
        "POST",
        "/v2/lbaas/l7policies",
        {"l7policy": {"listener_id": listener["id"], "action": "REDIRECT_TO_POOL", "redirect_pool_id": other["id"]}},
    )
    rest.wait_lb_active(lb["id"])

    tree = rest.ok("GET", f"/v2/lbaas/loadbalancers/{lb['id']}/status")["statuses"]["loadbalancer"]
    (l1,) = tree["listeners"]
    assert l1["id"] == listener["id"] and l1["provisioning_status"] == "ACTIVE"
    assert [p["id"] for p in l1["pools"]] == [pool["id"], other["id"]]  # default pool, then redirect targets
    p1, p2 = l1["pools"]
    assert p1["health_monitor"] == {
        "id": monitor["id"],
        "name": "hm1",
        "type": "HTTP",
        "provisioning_status": "ACTIVE",
        "operating_status": "ONLINE",
    }
    assert p1["members"] == [
        {
            "id": member["id"],
            "name": "m1",
            "operating_status": "NO_MONITOR",  # created before its pool had a monitor; nothing reports since
            "provisioning_status": "ACTIVE",
            "address": "192.0.2.10",
            "protocol_port": 8080,
        }
    ]
    assert p2["health_monitor"] is None and p2["members"] == []
    assert rest.delete(f"/v2/lbaas/loadbalancers/{lb['id']}?cascade=true").status_code == 204
    rest.wait_status(f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer", "DELETED")
    assert_fault(rest.get(f"/v2/lbaas/loadbalancers/{lb['id']}/status"), 404, f"Load Balancer {lb['id']} not found.")


def test_noop_statuses_are_octavias_noop(rest: Rest) -> None:
    """Octavia's no-op drivers report nothing: load balancers, listeners and pools stay OFFLINE; a member keeps
    the status it was created with (NO_MONITOR, or OFFLINE under a health monitor) whatever its admin_state_up;
    health monitors, L7 policies and rules are ONLINE when enabled and OFFLINE when not."""
    lb = rest.create_lb(name="noop-statuses")
    assert lb["operating_status"] == "OFFLINE"
    listener = rest.ok(
        "POST",
        "/v2/lbaas/listeners",
        {"listener": {"protocol": "HTTP", "protocol_port": 81, "loadbalancer_id": lb["id"]}},
    )["listener"]
    rest.wait_lb_active(lb["id"])
    pool = rest.ok(
        "POST",
        "/v2/lbaas/pools",
        {"pool": {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "listener_id": listener["id"]}},
    )["pool"]
    rest.wait_lb_active(lb["id"])
    members = f"/v2/lbaas/pools/{pool['id']}/members"
    off = rest.ok("POST", members, {"member": {"address": "192.0.2.1", "protocol_port": 80, "admin_state_up": False}})
    rest.wait_lb_active(lb["id"])
    on = rest.ok("POST", members, {"member": {"address": "192.0.2.2", "protocol_port": 80}})
    rest.wait_lb_active(lb["id"])
    for member in (off["member"], on["member"]):
        shown = rest.wait_status(f"{members}/{member['id']}", "member")
        assert shown["operating_status"] == "NO_MONITOR", shown
    rest.ok("PUT", f"{members}/{on['member']['id']}", {"member": {"admin_state_up": False}})
    rest.wait_lb_active(lb["id"])
    assert rest.ok("GET", f"{members}/{on['member']['id']}")["member"]["operating_status"] == "NO_MONITOR"
    hm = rest.ok(
        "POST",
        "/v2/lbaas/healthmonitors",
        {"healthmonitor": {"pool_id": pool["id"], "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3}},
    )["healthmonitor"]
    rest.wait_lb_active(lb["id"])
    assert rest.ok("GET", f"/v2/lbaas/healthmonitors/{hm['id']}")["healthmonitor"]["operating_status"] == "ONLINE"
    monitored = rest.ok("POST", members, {"member": {"address": "192.0.2.3", "protocol_port": 80}})["member"]
    rest.wait_lb_active(lb["id"])
    assert rest.ok("GET", f"{members}/{monitored['id']}")["member"]["operating_status"] == "OFFLINE"
    rest.ok("PUT", f"/v2/lbaas/healthmonitors/{hm['id']}", {"healthmonitor": {"admin_state_up": False}})
    rest.wait_lb_active(lb["id"])
    assert rest.ok("GET", f"/v2/lbaas/healthmonitors/{hm['id']}")["healthmonitor"]["operating_status"] == "OFFLINE"
    rest.ok("PUT", f"/v2/lbaas/loadbalancers/{lb['id']}", {"loadbalancer": {"admin_state_up": False}})
    rest.wait_lb_active(lb["id"])
    for path, key in (
        (f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer"),
        (f"/v2/lbaas/listeners/{listener['id']}", "listener"),
        (f"/v2/lbaas/pools/{pool['id']}", "pool"),
    ):
        assert rest.ok("GET", path)[key]["operating_status"] == "OFFLINE", path
    assert rest.delete(f"/v2/lbaas/loadbalancers/{lb['id']}?cascade=true").status_code == 204
