"""Octavia's default RBAC in trusted-headers mode (X-Project-Id and X-Roles, as keystonemiddleware passes them)."""

from __future__ import annotations

import pytest
from support import SUBNET, Rest, assert_fault

LBS = "/v2/lbaas/loadbalancers"
ALICE, BOB = "project-alice", "project-bob"


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


def test_other_projects_see_nothing(secure_rest: Rest, alice_lb: dict) -> None:
    bob = secure_rest.as_(BOB, "member")
    assert_fault(bob.get(f"{LBS}/{alice_lb['id']}"), 404, f"Load Balancer {alice_lb['id']} not found.")
    assert_fault(bob.put(f"{LBS}/{alice_lb['id']}", {"loadbalancer": {"name": "x"}}), 404)
    assert_fault(bob.delete(f"{LBS}/{alice_lb['id']}"), 404)
    assert bob.ok("GET", LBS)["loadbalancers"] == []
    assert bob.ok("GET", f"{LBS}?project_id={ALICE}")["loadbalancers"] == []
    # A member cannot create in another project's name.
    assert_fault(bob.post(LBS, {"loadbalancer": {"vip_subnet_id": SUBNET, "project_id": ALICE}}), 403)


def test_no_role_no_access(secure_rest: Rest, alice_lb: dict) -> None:
    nobody = secure_rest.as_(ALICE)
    assert_fault(nobody.get(LBS), 403)
    assert_fault(nobody.get(f"{LBS}/{alice_lb['id']}"), 404)


def test_admin_and_global_observer(secure_rest: Rest, alice_lb: dict) -> None:
    admin = secure_rest.as_("ops", "admin")
    assert alice_lb["id"] in [lb["id"] for lb in admin.ok("GET", LBS)["loadbalancers"]]
    observer = secure_rest.as_("audit", "load-balancer_global_observer")
    assert alice_lb["id"] in [lb["id"] for lb in observer.ok("GET", f"{LBS}?project_id={ALICE}")["loadbalancers"]]
    assert_fault(observer.put(f"{LBS}/{alice_lb['id']}", {"loadbalancer": {"name": "x"}}), 403)
    # Admin-only calls refuse members, even on their own objects.
    alice = secure_rest.as_(ALICE, "member")
    assert_fault(alice.put(f"{LBS}/{alice_lb['id']}/failover"), 403)
    assert admin.put(f"{LBS}/{alice_lb['id']}/failover").status_code == 202
    admin.wait_lb_active(alice_lb["id"])
