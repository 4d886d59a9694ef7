"""Octavia's default RBAC in trusted-headers mode (X-Project-Id and X-Roles, as keystonemiddleware passes them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lightmesh import start_light_mesh
from support import PROXY_SECRET, SUBNET, Rest, assert_fault

LBS = "/v2/lbaas/loadbalancers"
ALICE, BOB = "project-alice", "project-bob"
PROXY = "X-Octavia-Mesh-Proxy-Secret"


@pytest.fixture(scope="module")
def alice_lb(secure_rest: Rest) -> dict:
    alice = secure_rest.as_(ALICE, "member")
    lb = alice.ok("POST", LBS, {"loadbalancer": {"name": "alice-lb", "vip_subnet_id": SUBNET}})["loadbalancer"]
    assert lb["project_id"] == ALICE  # the project comes from the token, not the body
    return alice.wait_lb_active(lb["id"])


def test_no_identity_is_refused(secure_rest: Rest) -> None:
    response = secure_rest.get(LBS)
    assert response.status_code == 401


def test_owner_reads_and_writes(secure_rest: Rest, alice_lb: dict) -> None:
    alice = secure_rest.as_(ALICE, "member")
    assert alice.ok("GET", f"{LBS}/{alice_lb['id']}")["loadbalancer"]["name"] == "alice-lb"
    alice.ok("PUT", f"{LBS}/{alice_lb['id']}", {"loadbalancer": {"description": "mine"}})
    alice.wait_lb_active(alice_lb["id"])


def test_reader_reads_but_cannot_write(secure_rest: Rest, alice_lb: dict) -> None:
    reader = secure_rest.as_(ALICE, "reader")
    assert reader.ok("GET", f"{LBS}/{alice_lb['id']}")["loadbalancer"]["id"] == alice_lb["id"]
    assert [lb["id"] for lb in reader.ok("GET", LBS)["loadbalancers"]] == [alice_lb["id"]]
    assert_fault(
        reader.put(f"{LBS}/{alice_lb['id']}", {"loadbalancer": {"name": "x"}}),
        403,
        "Policy does not allow this request to be performed.",
    )
    assert_fault(reader.post(LBS, {"loadbalancer": {"vip_subnet_id": SUBNET}}), 403)
    assert_fault(reader.delete(f"{LBS}/{alice_lb['id']}"), 403)


def test_other_projects_are_refused(secure_rest: Rest, alice_lb: dict) -> None:
    """Octavia finds the object, then refuses the caller: 403 with its fault body (a missing object stays 404)."""
    lb_id = alice_lb["id"]
    bob = secure_rest.as_(BOB, "member")
    forbidden = "Policy does not allow this request to be performed."
    for path in (f"{LBS}/{lb_id}", f"{LBS}/{lb_id}/stats", f"{LBS}/{lb_id}/status"):
        assert_fault(bob.get(path), 403, forbidden)
        assert_fault(secure_rest.as_(BOB, "reader").get(path), 403, forbidden)
    assert_fault(bob.put(f"{LBS}/{lb_id}", {"loadbalancer": {"name": "x"}}), 403, forbidden)
    assert_fault(bob.delete(f"{LBS}/{lb_id}"), 403, forbidden)
    missing = "00000000-0000-0000-0000-000000000000"
    assert_fault(bob.get(f"{LBS}/{missing}"), 404, f"Load Balancer {missing} not found.")
    assert bob.ok("GET", LBS)["loadbalancers"] == []
    assert bob.ok("GET", f"{LBS}?project_id={BOB}")["loadbalancers"] == []
    assert_fault(bob.get(f"{LBS}?project_id={ALICE}"), 403, forbidden)  # Octavia's _auth_get_all
    # A member cannot create in another project's name, nor under another project's load balancer.
    assert_fault(bob.post(LBS, {"loadbalancer": {"vip_subnet_id": SUBNET, "project_id": ALICE}}), 403)
    listener = {"listener": {"loadbalancer_id": lb_id, "protocol": "HTTP", "protocol_port": 80}}
    assert_fault(bob.post("/v2/lbaas/listeners", listener), 403, forbidden)
    pool = {"pool": {"loadbalancer_id": lb_id, "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}}
    assert_fault(bob.post("/v2/lbaas/pools", pool), 403, forbidden)


def test_children_of_another_project(secure_rest: Rest, alice_lb: dict) -> None:
    """Every child resource answers the same: 403 for another project's, 404 for a missing one; the members of
    another project's pool too, with Octavia's fault body."""
    alice = secure_rest.as_(ALICE, "member")
    lb_id = alice_lb["id"]
    listener = alice.ok(
        "POST",
        "/v2/lbaas/listeners",
        {"listener": {"loadbalancer_id": lb_id, "protocol": "HTTP", "protocol_port": 8080}},
    )["listener"]
    alice.wait_lb_active(lb_id)
    pool = alice.ok(
        "POST",
        "/v2/lbaas/pools",
        {"pool": {"listener_id": listener["id"], "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN"}},
    )["pool"]
    alice.wait_lb_active(lb_id)
    member = alice.ok(
        "POST", f"/v2/lbaas/pools/{pool['id']}/members", {"member": {"address": "192.0.2.7", "protocol_port": 80}}
    )["member"]
    alice.wait_lb_active(lb_id)
    hm = alice.ok(
        "POST",
        "/v2/lbaas/healthmonitors",
        {"healthmonitor": {"pool_id": pool["id"], "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3}},
    )["healthmonitor"]
    alice.wait_lb_active(lb_id)
    policy = alice.ok(
        "POST", "/v2/lbaas/l7policies", {"l7policy": {"listener_id": listener["id"], "action": "REJECT"}}
    )["l7policy"]
    alice.wait_lb_active(lb_id)
    rule = alice.ok(
        "POST",
        f"/v2/lbaas/l7policies/{policy['id']}/rules",
        {"rule": {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/x"}},
    )["rule"]
    alice.wait_lb_active(lb_id)

    objects = {
        f"/v2/lbaas/listeners/{listener['id']}": {"listener": {"name": "x"}},
        f"/v2/lbaas/pools/{pool['id']}": {"pool": {"name": "x"}},
        f"/v2/lbaas/pools/{pool['id']}/members/{member['id']}": {"member": {"name": "x"}},
        f"/v2/lbaas/healthmonitors/{hm['id']}": {"healthmonitor": {"name": "x"}},
        f"/v2/lbaas/l7policies/{policy['id']}": {"l7policy": {"name": "x"}},
        f"/v2/lbaas/l7policies/{policy['id']}/rules/{rule['id']}": {"rule": {"value": "/y"}},
    }
    forbidden = "Policy does not allow this request to be performed."
    for caller in (secure_rest.as_(BOB, "member"), secure_rest.as_(BOB, "reader"), secure_rest.as_(ALICE)):
        for path, body in objects.items():
            assert_fault(caller.get(path), 403, forbidden)
            assert_fault(caller.put(path, body), 403, forbidden)
            assert_fault(caller.delete(path), 403, forbidden)
        assert_fault(caller.get(f"/v2/lbaas/listeners/{listener['id']}/stats"), 403, forbidden)
        assert_fault(caller.get(f"/v2/lbaas/pools/{pool['id']}/members"), 403, forbidden)
        assert_fault(caller.get(f"/v2/lbaas/l7policies/{policy['id']}/rules"), 403, forbidden)
        member_body = {"member": {"address": "192.0.2.8", "protocol_port": 80}}
        assert_fault(caller.post(f"/v2/lbaas/pools/{pool['id']}/members", member_body), 403, forbidden)
        assert_fault(caller.put(f"/v2/lbaas/pools/{pool['id']}/members", {"members": []}), 403, forbidden)
        rule_body = {"rule": {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/z"}}
        assert_fault(caller.post(f"/v2/lbaas/l7policies/{policy['id']}/rules", rule_body), 403, forbidden)
    # The owner's reader reads them all and changes nothing.
    reader = secure_rest.as_(ALICE, "reader")
    for path, body in objects.items():
        assert reader.get(path).status_code == 200
        assert_fault(reader.put(path, body), 403, forbidden)
    # A missing child is still a 404, whoever asks.
    missing = "00000000-0000-0000-0000-000000000000"
    bob = secure_rest.as_(BOB, "member")
    assert_fault(bob.get(f"/v2/lbaas/pools/{pool['id']}/members/{missing}"), 404, f"Member {missing} not found.")
    assert_fault(bob.get(f"/v2/lbaas/listeners/{missing}"), 404, f"Listener {missing} not found.")
    assert bob.ok("GET", "/v2/lbaas/listeners")["listeners"] == []
    assert_fault(bob.get(f"/v2/lbaas/pools?project_id={ALICE}"), 403, forbidden)


def test_no_role_no_access(secure_rest: Rest, alice_lb: dict) -> None:
    nobody = secure_rest.as_(ALICE)
    forbidden = "Policy does not allow this request to be performed."
    assert_fault(nobody.get(LBS), 403, forbidden)
    assert_fault(nobody.get(f"{LBS}/{alice_lb['id']}"), 403, forbidden)
    assert_fault(nobody.get("/v2/lbaas/flavors"), 403, forbidden)
    assert_fault(nobody.get(f"/v2/lbaas/quotas/{ALICE}"), 403, forbidden)


def test_caller_without_project(secure_rest: Rest, alice_lb: dict) -> None:
    """A token scoped to no project (its user and roles, no project): Octavia's answers for such a context."""
    unscoped = Rest(secure_rest.base_url, {"X-User-Id": "someone", "X-Roles": "member,reader", PROXY: PROXY_SECRET})
    forbidden = "Policy does not allow this request to be performed."
    assert_fault(unscoped.get(LBS), 403, forbidden)
    assert_fault(unscoped.get(f"{LBS}/{alice_lb['id']}"), 403, forbidden)
    assert_fault(
        unscoped.post(LBS, {"loadbalancer": {"vip_subnet_id": SUBNET}}),
        400,
        "Validation failure: Missing project ID in request where one is required. An administrator should check "
        "the keystone settings in the Octavia configuration.",
    )
    admin = Rest(secure_rest.base_url, {"X-User-Id": "ops", "X-Roles": "admin", PROXY: PROXY_SECRET})
    assert alice_lb["id"] in [lb["id"] for lb in admin.ok("GET", LBS)["loadbalancers"]]


def test_admin_reads_everything_legacy_roles_grant_nothing(secure_rest: Rest, alice_lb: dict) -> None:
    admin = secure_rest.as_("ops", "admin")
    assert alice_lb["id"] in [lb["id"] for lb in admin.ok("GET", LBS)["loadbalancers"]]
    assert alice_lb["id"] in [lb["id"] for lb in admin.ok("GET", f"{LBS}?project_id={ALICE}")["loadbalancers"]]
    forbidden = "Policy does not allow this request to be performed."
    # Octavia 19 ignores its deprecated roles unless deprecated rules are switched on.
    legacy_admin = secure_rest.as_("ops", "load-balancer_admin")
    assert_fault(legacy_admin.put(f"{LBS}/{alice_lb['id']}", {"loadbalancer": {"name": "x"}}), 403, forbidden)
    observer = secure_rest.as_("audit", "load-balancer_global_observer")
    assert_fault(observer.get(f"{LBS}/{alice_lb['id']}"), 403, forbidden)
    assert_fault(observer.get(LBS), 403, forbidden)
    quota_admin = secure_rest.as_("ops", "load-balancer_quota_admin")
    assert_fault(quota_admin.put(f"/v2/lbaas/quotas/{ALICE}", {"quota": {"load_balancer": 5}}), 403, forbidden)
    assert_fault(secure_rest.as_(ALICE, "load-balancer_member").get(LBS), 403, forbidden)
    # Admin-only calls refuse members, even on their own objects.
    alice = secure_rest.as_(ALICE, "member")
    assert_fault(alice.put(f"{LBS}/{alice_lb['id']}/failover"), 403)
    assert admin.put(f"{LBS}/{alice_lb['id']}/failover").status_code == 202
    admin.wait_lb_active(alice_lb["id"])


@pytest.fixture(scope="module")
def legacy_rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rest]:
    """A trusted-headers light mesh with Octavia's deprecated rules switched on (enforce_new_defaults = False)."""
    env = {"OCTAVIA_MESH_API_TRUSTED_PROXY_SECRET": PROXY_SECRET, "OCTAVIA_MESH_API_POLICY_LEGACY_ROLES": "true"}
    for mesh in start_light_mesh(tmp_path_factory, "trusted_headers", service_env=env):
        yield Rest(mesh.endpoint)


def test_legacy_roles_when_switched_on(legacy_rest: Rest) -> None:
    owner = legacy_rest.as_(ALICE, "load-balancer_member")
    lb = owner.ok("POST", LBS, {"loadbalancer": {"name": "legacy", "vip_subnet_id": SUBNET}})["loadbalancer"]
    owner.wait_lb_active(lb["id"])
    assert legacy_rest.as_(ALICE, "load-balancer_observer").ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]
    forbidden = "Policy does not allow this request to be performed."
    observer = legacy_rest.as_("audit", "load-balancer_global_observer")
    assert lb["id"] in [x["id"] for x in observer.ok("GET", LBS)["loadbalancers"]]
    assert_fault(observer.put(f"{LBS}/{lb['id']}", {"loadbalancer": {"name": "x"}}), 403, forbidden)
    quota_admin = legacy_rest.as_("ops", "load-balancer_quota_admin")
    assert quota_admin.ok("PUT", f"/v2/lbaas/quotas/{ALICE}", {"quota": {"pool": 7}}, status=202)["quota"]["pool"] == 7
    assert_fault(quota_admin.get(f"{LBS}/{lb['id']}"), 403, forbidden)
    legacy_admin = legacy_rest.as_("ops", "load-balancer_admin")
    assert legacy_admin.ok("PUT", f"{LBS}/{lb['id']}", {"loadbalancer": {"name": "renamed"}})
    legacy_admin.wait_lb_active(lb["id"])
    assert_fault(legacy_rest.as_(BOB, "load-balancer_member").get(f"{LBS}/{lb['id']}"), 403, forbidden)
    assert legacy_admin.delete(f"{LBS}/{lb['id']}").status_code == 204
