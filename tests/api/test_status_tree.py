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
                "operating_status": "ONLINE",
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
            "operating_status": "ONLINE",
            "provisioning_status": "ACTIVE",
            "address": "192.0.2.10",
            "protocol_port": 8080,
        }
    ]
    assert p2["health_monitor"] is None and p2["members"] == []
    assert rest.delete(f"/v2/lbaas/loadbalancers/{lb['id']}?cascade=true").status_code == 204
    rest.wait_status(f"/v2/lbaas/loadbalancers/{lb['id']}", "loadbalancer", "DELETED")
    assert_fault(rest.get(f"/v2/lbaas/loadbalancers/{lb['id']}/status"), 404, f"Load Balancer {lb['id']} not found.")
