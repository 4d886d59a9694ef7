"""The fully populated load balancer: one POST creates the whole tree, or nothing at all."""

from __future__ import annotations

import copy
from typing import Any

from support import PROJECT, SUBNET, Rest, assert_fault

LBS = "/v2/lbaas/loadbalancers"

# The tree real Octavia 19.0.0 accepted in our probe (names changed).
TREE: dict[str, Any] = {
    "loadbalancer": {
        "name": "full",
        "description": "full tree",
        "vip_subnet_id": SUBNET,
        "project_id": PROJECT,
        "tags": ["t1"],
        "listeners": [
            {
                "name": "full-l1",
                "protocol": "HTTP",
                "protocol_port": 80,
                "tags": ["lt"],
                "insert_headers": {"X-Forwarded-For": "true"},
                "default_pool": {
                    "name": "full-p1",
                    "protocol": "HTTP",
                    "lb_algorithm": "ROUND_ROBIN",
                    "session_persistence": {"type": "APP_COOKIE", "cookie_name": "sess"},
                    "members": [
                        {"name": "full-m1", "address": "192.0.2.10", "protocol_port": 8080, "weight": 3},
                        {"address": "192.0.2.11", "protocol_port": 8080, "subnet_id": SUBNET, "backup": True},
                    ],
                    "healthmonitor": {
                        "name": "full-hm",
                        "type": "HTTP",
                        "delay": 5,
                        "timeout": 3,
                        "max_retries": 3,
                        "url_path": "/healthz",
                        "expected_codes": "200",
                    },
                },
                "l7policies": [
                    {
                        "name": "full-pol",
                        "action": "REDIRECT_TO_POOL",
                        "redirect_pool": {"name": "full-p2"},
                        "rules": [
                            {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/api"},
                            {
                                "type": "HEADER",
                                "key": "X-Env",
                                "compare_type": "EQUAL_TO",
                                "value": "prod",
                                "invert": True,
                            },
                        ],
                    },
                    {
                        "name": "full-pol2",
                        "action": "REDIRECT_TO_URL",
                        "redirect_url": "http://example.com/",
                        "rules": [{"type": "HOST_NAME", "compare_type": "EQUAL_TO", "value": "old.example.com"}],
                    },
                ],
            }
        ],
        "pools": [
            {
                "name": "full-p2",
                "protocol": "HTTP",
                "lb_algorithm": "LEAST_CONNECTIONS",
                "members": [{"address": "192.0.2.20", "protocol_port": 80}],
            }
        ],
    }
}


def _tree(name: str) -> dict[str, Any]:
    body = copy.deepcopy(TREE)
    body["loadbalancer"]["name"] = name
    return body


def test_whole_tree_in_one_call(rest: Rest) -> None:
    lb = rest.ok("POST", LBS, _tree("full"))["loadbalancer"]
    # Octavia's nesting: full children first, without the back-references.
    assert list(lb)[:3] == ["listeners", "pools", "id"]
    (listener,) = lb["listeners"]
    assert list(listener)[0] == "l7policies" and "loadbalancers" not in listener
    assert [p["name"] for p in listener["l7policies"]] == ["full-pol", "full-pol2"]
    assert [r["type"] for r in listener["l7policies"][0]["rules"]] == ["PATH", "HEADER"]
    by_name = {p["name"]: p for p in lb["pools"]}
    assert set(by_name) == {"full-p1", "full-p2"}
    p1, p2 = by_name["full-p1"], by_name["full-p2"]
    assert list(p1)[:2] == ["members", "healthmonitor"] and "healthmonitor_id" not in p1 and "loadbalancers" not in p1
    assert p1["healthmonitor"]["name"] == "full-hm" and "pools" not in p1["healthmonitor"]
    assert [m["weight"] for m in p1["members"]] == [3, 1] and p2["healthmonitor"] is None
    assert listener["default_pool_id"] == p1["id"]
    assert listener["l7policies"][0]["redirect_pool_id"] == p2["id"]
    assert {o["provisioning_status"] for o in (lb, listener, p1, p2, *p1["members"])} == {"PENDING_CREATE"}

    rest.wait_lb_active(lb["id"])
    tree = rest.ok("GET", f"{LBS}/{lb['id']}/status")["statuses"]["loadbalancer"]
    assert [p["name"] for p in tree["listeners"][0]["pools"]] == ["full-p1", "full-p2"]
    assert tree["listeners"][0]["pools"][0]["health_monitor"]["provisioning_status"] == "ACTIVE"
    shown = rest.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]
    assert shown["listeners"] == [{"id": listener["id"]}] and len(shown["pools"]) == 2
    rules = rest.ok("GET", f"/v2/lbaas/l7policies/{listener['l7policies'][0]['id']}/rules")["rules"]
    assert [r["key"] for r in rules] == [None, "X-Env"]
    assert rest.delete(f"{LBS}/{lb['id']}?cascade=true").status_code == 204
    rest.wait_status(f"{LBS}/{lb['id']}", "loadbalancer", "DELETED")
    assert rest.ok("GET", f"/v2/lbaas/pools?loadbalancer_id={lb['id']}")["pools"] == []


def _nothing_named(rest: Rest, name: str) -> None:
    assert rest.ok("GET", f"{LBS}?name={name}")["loadbalancers"] == []


def test_bad_object_anywhere_leaves_nothing(rest: Rest) -> None:
    body = _tree("bad-1")
    body["loadbalancer"]["listeners"][0]["default_pool"]["foo"] = 1
    assert_fault(
        rest.post(LBS, body),
        400,
        "Unknown attribute for argument load_balancer.loadbalancer.listeners.default_pool: foo",
    )
    body = _tree("bad-2")
    body["loadbalancer"]["listeners"][0]["l7policies"][0]["redirect_pool"] = {"name": "nope"}
    assert_fault(
        rest.post(LBS, body), 400, "Validation failure: Pool 'nope' was referenced but no full definition was found."
    )
    body = _tree("bad-3")
    body["loadbalancer"]["pools"][0]["listener_id"] = "59faf9c4-73d1-497c-af0e-b3c620b7c47b"
    assert_fault(
        rest.post(LBS, body), 400, "Unknown attribute for argument load_balancer.loadbalancer.pools: listener_id"
    )
    body = _tree("bad-4")
    body["loadbalancer"]["listeners"].append(copy.deepcopy(body["loadbalancer"]["listeners"][0]))
    body["loadbalancer"]["listeners"][1]["default_pool"] = {"name": "full-p2"}
    body["loadbalancer"]["listeners"][1]["l7policies"] = []
    assert_fault(
        rest.post(LBS, body),
        409,
        "Another Listener on this Load Balancer is already using protocol HTTP and protocol_port 80",
    )
    body = _tree("bad-5")
    body["loadbalancer"]["listeners"][0]["protocol_port"] = None
    del body["loadbalancer"]["listeners"][0]["protocol"]
    assert_fault(
        rest.post(LBS, body), 400, "Invalid input for field/attribute protocol. Value: 'None'. Mandatory field missing."
    )
    body = _tree("bad-6")
    body["loadbalancer"]["listeners"][0]["l7policies"][0]["rules"][0]["value"] = "/api\nbackend evil"
    assert rest.post(LBS, body).status_code == 400
    body = _tree("bad-7")
    body["loadbalancer"]["pools"][0]["members"][0]["address"] = "not-an-ip"
    assert rest.post(LBS, body).status_code == 400
    for i in range(1, 8):
        _nothing_named(rest, f"bad-{i}")
    assert rest.ok("GET", "/v2/lbaas/pools?name=full-p2&fields=id")["pools"] == []


def test_quota_counts_the_whole_tree(secure_rest: Rest) -> None:
    admin = secure_rest.as_("quota-admin", "admin")
    admin.ok("PUT", "/v2/lbaas/quotas/tree-project", {"quota": {"member": 2}}, status=202)
    owner = secure_rest.as_("tree-project", "member")
    body = _tree("over-quota")
    del body["loadbalancer"]["project_id"]
    assert_fault(owner.post(LBS, body), 403, "Quota has been met for resources: Member")
    assert owner.ok("GET", LBS)["loadbalancers"] == []
    body["loadbalancer"]["pools"][0]["members"] = []
    lb = owner.ok("POST", LBS, body)["loadbalancer"]
    owner.wait_lb_active(lb["id"])
