"""End to end through the REST edge with ``acme``, an out-of-tree provider driver found by entry point.

Every change travels API → outbox → JetStream (``octavia.provider.v1.acme.*``)
→ the acme agent, a child process of the driver agent, which reads the objects
through ``DriverAgent.Get*`` and reports through ``UpdateStatuses`` and
``UpdateStatistics``; the REST API shows what it reported.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

from acme_helpers import ACME_DESCRIPTION
from sqlalchemy import text
from support import PROJECT, SUBNET, Rest, mesh_engine, new_listener, new_pool, vip_at

LB = "/v2/lbaas/loadbalancers"


def acme_lb(rest: Rest, **fields: object) -> dict:
    return rest.create_lb(provider="acme", **fields)


def wait_gone(rest: Rest, path: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = rest.get(path)
        if response.status_code == 404:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} still there: {rest.get(path).text}")


def expected_stats(*ports: int) -> dict[str, int]:
    """What acme's two appliances (scales 1 and 2) report for listeners on ``ports``, summed."""
    return {
        "active_connections": 3 * len(ports),
        "bytes_in": sum(3000 * p for p in ports),
        "bytes_out": sum(6000 * p for p in ports),
        "request_errors": 3 * len(ports),
        "total_connections": sum(3 * p for p in ports),
    }


def test_acme_is_offered_and_its_agent_found_by_entry_point(acme_rest: Rest, acme_mesh, acme_journal) -> None:
    providers = acme_rest.ok("GET", "/v2/lbaas/providers")["providers"]
    assert {"name": "acme", "description": ACME_DESCRIPTION} in providers
    started = acme_journal.wait_for(lambda e: True, "started")
    assert started["name"] == "acme"
    assert started["driver_agent"] == acme_mesh.grpc_targets["driver-agent"]
    log = acme_mesh.supervisor.child("driver-agent").log_path.read_text()
    assert "provider agents: acme" in log


def test_load_balancer_and_children_through_acme(acme_rest: Rest, acme_journal) -> None:
    rest = acme_rest
    lb = acme_lb(rest, name="web")
    assert lb["provider"] == "acme"
    assert lb["operating_status"] == "ONLINE"
    seen = acme_journal.wait_for(lambda e: e["resource_id"] == lb["id"], "command")
    assert (seen["kind"], seen["operation"]) == ("RESOURCE_KIND_LOAD_BALANCER", "OPERATION_CREATE")
    assert seen["object"]["loadbalancer_id"] == lb["id"]
    assert seen["object"]["name"] == "web"
    assert seen["object"]["vip_address"] == lb["vip_address"]
    assert seen["object"]["provisioning_status"] == "PENDING_CREATE"

    listener = rest.ok(
        "POST",
        "/v2/lbaas/listeners",
        {"listener": {"loadbalancer_id": lb["id"], "protocol": "HTTP", "protocol_port": 8080, "name": "l1"}},
        status=201,
    )["listener"]
    listener = rest.wait_status(f"/v2/lbaas/listeners/{listener['id']}", "listener")
    assert listener["operating_status"] == "ONLINE"
    assert rest.wait_lb_active(lb["id"])["provisioning_status"] == "ACTIVE"
    seen = acme_journal.wait_for(lambda e: e["resource_id"] == listener["id"], "command")
    assert seen["object"]["protocol_port"] == 8080
    assert seen["object"]["loadbalancer_id"] == lb["id"]

    pool = rest.ok(
        "POST",
        "/v2/lbaas/pools",
        {"pool": {"listener_id": listener["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}},
    )["pool"]
    pool = rest.wait_status(f"/v2/lbaas/pools/{pool['id']}", "pool")
    rest.wait_lb_active(lb["id"])
    seen = acme_journal.wait_for(lambda e: e["resource_id"] == pool["id"], "command")
    assert seen["object"]["listener_id"] == listener["id"]
    assert seen["object"]["lb_algorithm"] == "ROUND_ROBIN"

    member = rest.ok(
        "POST", f"/v2/lbaas/pools/{pool['id']}/members", {"member": {"address": "192.0.2.10", "protocol_port": 80}}
    )["member"]
    member = rest.wait_status(f"/v2/lbaas/pools/{pool['id']}/members/{member['id']}", "member")
    assert member["operating_status"] == "ONLINE"
    rest.wait_lb_active(lb["id"])
    seen = acme_journal.wait_for(lambda e: e["resource_id"] == member["id"], "command")
    assert (seen["object"]["address"], seen["object"]["protocol_port"]) == ("192.0.2.10", 80)

    monitor = rest.ok(
        "POST",
        "/v2/lbaas/healthmonitors",
        {"healthmonitor": {"pool_id": pool["id"], "type": "HTTP", "delay": 5, "timeout": 3, "max_retries": 2}},
    )["healthmonitor"]
    rest.wait_status(f"/v2/lbaas/healthmonitors/{monitor['id']}", "healthmonitor")
    rest.wait_lb_active(lb["id"])
    seen = acme_journal.wait_for(lambda e: e["resource_id"] == monitor["id"], "command")
    assert (seen["object"]["type"], seen["object"]["delay"], seen["object"]["pool_id"]) == ("HTTP", 5, pool["id"])

    policy = rest.ok(
        "POST",
        "/v2/lbaas/l7policies",
        {"l7policy": {"listener_id": listener["id"], "action": "REJECT", "name": "deny"}},
    )["l7policy"]
    rest.wait_status(f"/v2/lbaas/l7policies/{policy['id']}", "l7policy")
    rest.wait_lb_active(lb["id"])
    rule = rest.ok(
        "POST",
        f"/v2/lbaas/l7policies/{policy['id']}/rules",
        {"rule": {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/admin"}},
    )["rule"]
    rest.wait_status(f"/v2/lbaas/l7policies/{policy['id']}/rules/{rule['id']}", "rule")
    rest.wait_lb_active(lb["id"])
    seen = acme_journal.wait_for(lambda e: e["resource_id"] == rule["id"], "command")
    assert (seen["object"]["l7policy_id"], seen["object"]["value"]) == (policy["id"], "/admin")

    # The status tree shows what acme reported for every object.
    tree = rest.ok("GET", f"{LB}/{lb['id']}/status")["statuses"]["loadbalancer"]
    assert tree["provisioning_status"] == "ACTIVE"
    assert tree["listeners"][0]["pools"][0]["members"][0]["operating_status"] == "ONLINE"
    assert tree["listeners"][0]["pools"][0]["health_monitor"]["provisioning_status"] == "ACTIVE"

    # Statistics acme reported for its two appliances, summed per listener and per load balancer.
    assert rest.ok("GET", f"/v2/lbaas/listeners/{listener['id']}/stats")["stats"] == expected_stats(8080)
    assert rest.ok("GET", f"{LB}/{lb['id']}/stats")["stats"] == expected_stats(8080)

    # Deletes, children first: each is gone once acme reports it DELETED.
    for path in (
        f"/v2/lbaas/l7policies/{policy['id']}/rules/{rule['id']}",
        f"/v2/lbaas/l7policies/{policy['id']}",
        f"/v2/lbaas/healthmonitors/{monitor['id']}",
        f"/v2/lbaas/pools/{pool['id']}/members/{member['id']}",
        f"/v2/lbaas/pools/{pool['id']}",
        f"/v2/lbaas/listeners/{listener['id']}",
    ):
        rest.ok("DELETE", path)
        wait_gone(rest, path)
        rest.wait_lb_active(lb["id"])
    assert rest.ok("GET", f"{LB}/{lb['id']}/stats")["stats"] == expected_stats()
    rest.ok("DELETE", f"{LB}/{lb['id']}")
    wait_gone(rest, f"{LB}/{lb['id']}")


LOCAL_SUBNET = "7a9d3c2e-5b1f-4e8a-9c6d-0f2b4a6e8d10"  # the API's default local VIP subnet id


def test_cascade_delete_gives_back_quota_and_vip(acme_rest: Rest) -> None:
    rest = acme_rest
    project = uuid.uuid4().hex
    rest.ok("PUT", f"/v2/lbaas/quotas/{project}", {"quota": {"load_balancer": 1, "listener": 1, "pool": 1}}, status=202)
    vip, other = vip_at(rest, 200, 7), vip_at(rest, 200, 8)
    body = {"provider": "acme", "project_id": project, "vip_subnet_id": LOCAL_SUBNET, "vip_address": vip}

    def build() -> dict:
        lb = rest.ok("POST", LB, {"loadbalancer": {**body, "name": "quota"}})["loadbalancer"]
        rest.wait_lb_active(lb["id"])
        listener = new_listener(rest, lb["id"], 80)
        new_pool(rest, lb["id"], listener_id=listener["id"])
        return lb

    lb = build()
    assert lb["vip_address"] == vip
    # The quota holds while the load balancer lives (so the check below can tell a release from no limit).
    refused = rest.post(LB, {"loadbalancer": {**body, "vip_address": other}})
    assert refused.status_code == 403, refused.text
    rest.ok("DELETE", f"{LB}/{lb['id']}?cascade=true")
    wait_gone(rest, f"{LB}/{lb['id']}")
    # acme reported the load balancer DELETED: its quota (and its children's) and its VIP address are free again.
    again = build()
    assert again["vip_address"] == vip
    rest.ok("DELETE", f"{LB}/{again['id']}?cascade=true")
    wait_gone(rest, f"{LB}/{again['id']}")


def test_single_call_create_and_member_batch(acme_rest: Rest, acme_journal) -> None:
    rest = acme_rest
    lb = rest.ok(
        "POST",
        LB,
        {
            "loadbalancer": {
                "provider": "acme",
                "project_id": PROJECT,
                "vip_subnet_id": SUBNET,
                "name": "graph",
                "listeners": [
                    {
                        "protocol": "HTTP",
                        "protocol_port": 80,
                        "default_pool": {
                            "protocol": "HTTP",
                            "lb_algorithm": "ROUND_ROBIN",
                            "members": [{"address": "192.0.2.1", "protocol_port": 80}],
                            "healthmonitor": {"type": "HTTP", "delay": 5, "timeout": 3, "max_retries": 3},
                        },
                    }
                ],
            }
        },
    )["loadbalancer"]
    rest.wait_lb_active(lb["id"])
    tree = rest.ok("GET", f"{LB}/{lb['id']}/status")["statuses"]["loadbalancer"]
    pool = tree["listeners"][0]["pools"][0]
    assert tree["listeners"][0]["provisioning_status"] == "ACTIVE"
    assert pool["provisioning_status"] == pool["members"][0]["provisioning_status"] == "ACTIVE"
    assert pool["health_monitor"]["provisioning_status"] == "ACTIVE"
    # acme got one command and read the whole graph through GetLoadBalancer.
    seen = acme_journal.wait_for(lambda e: e["resource_id"] == lb["id"], "command")["object"]
    assert seen["listeners"][0]["default_pool"]["members"][0]["address"] == "192.0.2.1"
    assert seen["pools"][0]["healthmonitor"]["type"] == "HTTP"

    # A member batch names the pool; acme reads it and settles the new, changed and removed members.
    members = f"/v2/lbaas/pools/{pool['id']}/members"
    batch = [{"address": "192.0.2.2", "protocol_port": 80}, {"address": "192.0.2.3", "protocol_port": 81}]
    assert rest.put(members, {"members": batch}).status_code == 202
    rest.wait_lb_active(lb["id"])
    listed = rest.ok("GET", members)["members"]
    assert sorted((m["address"], m["provisioning_status"]) for m in listed) == [
        ("192.0.2.2", "ACTIVE"),
        ("192.0.2.3", "ACTIVE"),
    ]
    seen = acme_journal.wait_for(
        lambda e: e["resource_id"] == pool["id"] and e["operation"] == "OPERATION_BATCH_UPDATE", "command"
    )["object"]
    assert sorted((m["address"], m["provisioning_status"]) for m in seen["members"]) == [
        ("192.0.2.1", "PENDING_DELETE"),
        ("192.0.2.2", "PENDING_CREATE"),
        ("192.0.2.3", "PENDING_CREATE"),
    ]
    rest.ok("DELETE", f"{LB}/{lb['id']}?cascade=true")
    wait_gone(rest, f"{LB}/{lb['id']}")


def test_provider_reports_error(acme_rest: Rest) -> None:
    rest = acme_rest
    created = rest.ok(
        "POST",
        LB,
        {"loadbalancer": {"provider": "acme", "project_id": PROJECT, "vip_subnet_id": SUBNET, "name": "acme-error-1"}},
    )["loadbalancer"]
    lb = rest.wait_status(f"{LB}/{created['id']}", "loadbalancer", "ERROR")
    assert lb["operating_status"] == "ERROR"
    rest.ok("DELETE", f"{LB}/{lb['id']}")  # Octavia lets an ERROR load balancer be deleted
    wait_gone(rest, f"{LB}/{lb['id']}")


def test_outbox_commands_are_completed_by_the_report(acme_rest: Rest, acme_mesh) -> None:
    """The report that settles a load balancer stamps its commands, so the API's relay does not re-publish them."""
    lb = acme_lb(acme_rest, name="outbox")
    engine = mesh_engine(acme_mesh)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT completed_at FROM provider_command WHERE load_balancer_id = :id"), {"id": lb["id"]}
            ).all()
    finally:
        engine.dispose()
    assert len(rows) == 1 and rows[0].completed_at is not None
    acme_rest.ok("DELETE", f"{LB}/{lb['id']}")
    wait_gone(acme_rest, f"{LB}/{lb['id']}")


def test_a_crashed_provider_agent_is_started_again(acme_rest: Rest, acme_journal) -> None:
    before = acme_journal.entries("consuming")[-1]
    os.kill(before["pid"], signal.SIGKILL)
    after = acme_journal.wait_for(lambda e: e["pid"] != before["pid"], "consuming", timeout=120)
    assert after["name"] == "acme"
    lb = acme_lb(acme_rest, name="after-crash")
    assert lb["provisioning_status"] == "ACTIVE"
    acme_rest.ok("DELETE", f"{LB}/{lb['id']}")
    wait_gone(acme_rest, f"{LB}/{lb['id']}")
