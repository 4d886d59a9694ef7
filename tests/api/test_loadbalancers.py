"""Load balancers through the REST edge: create, show, list, update, delete, and their faults."""

from __future__ import annotations

from support import PROJECT, SUBNET, Rest, assert_fault, paused

LBS = "/v2/lbaas/loadbalancers"


def test_create_show_update_delete(mesh, rest: Rest) -> None:
    created = rest.ok(
        "POST",
        LBS,
        {
            "loadbalancer": {
                "name": "lb1",
                "description": "d",
                "vip_subnet_id": SUBNET,
                "project_id": PROJECT,
                "tags": ["t1"],
            }
        },
    )["loadbalancer"]
    assert created["provisioning_status"] == "PENDING_CREATE"
    assert created["operating_status"] == "OFFLINE"
    assert created["updated_at"] is None and created["flavor_id"] is None
    assert created["tags"] == ["t1"] and created["tenant_id"] == PROJECT
    lb = rest.wait_lb_active(created["id"])
    assert lb["name"] == "lb1" and lb["vip_subnet_id"] == SUBNET
    with paused(mesh):
        updated = rest.ok("PUT", f"{LBS}/{lb['id']}", {"loadbalancer": {"description": "new"}})["loadbalancer"]
        assert updated["provisioning_status"] == "PENDING_UPDATE" and updated["description"] == "new"
        assert_fault(
            rest.put(f"{LBS}/{lb['id']}", {"loadbalancer": {"name": "x"}}),
            409,
            f"Invalid state PENDING_UPDATE of loadbalancer resource {lb['id']}",
        )
        assert_fault(
            rest.delete(f"{LBS}/{lb['id']}"), 409, f"Invalid state PENDING_UPDATE of loadbalancer resource {lb['id']}"
        )
    rest.wait_lb_active(lb["id"])
    assert rest.delete(f"{LBS}/{lb['id']}").status_code == 204
    rest.wait_status(f"{LBS}/{lb['id']}", "loadbalancer", "DELETED")
    assert_fault(rest.get(f"{LBS}/{lb['id']}"), 404, f"Load Balancer {lb['id']} not found.")


def test_create_faults(rest: Rest) -> None:
    assert_fault(rest.post(LBS, raw=b"{bad"), 400, "Request is not in valid JSON format")
    assert_fault(rest.post(LBS, {"name": "x"}), 400, "Unknown attribute for argument load_balancer: name")
    assert_fault(
        rest.post(LBS, {"loadbalancer": {"foo": 1, "vip_subnet_id": SUBNET, "project_id": PROJECT}}),
        400,
        "Unknown attribute for argument load_balancer.loadbalancer: foo",
    )
    assert_fault(
        rest.post(LBS, {"loadbalancer": {"vip_subnet_id": "not-a-uuid", "project_id": PROJECT}}),
        400,
        "Invalid input for field/attribute vip_subnet_id. Value: 'not-a-uuid'. Value should be UUID format",
    )
    assert_fault(
        rest.post(LBS, {"loadbalancer": {"project_id": PROJECT}}),
        400,
        "Validation failure: VIP must contain one of: vip_port_id, vip_network_id, vip_subnet_id.",
    )
    assert_fault(
        rest.post(LBS, {"loadbalancer": {"vip_subnet_id": SUBNET, "project_id": PROJECT, "provider": "nope"}}),
        400,
        "Provider 'nope' is not enabled.",
    )
    assert_fault(
        rest.post(LBS, {"loadbalancer": {"vip_subnet_id": SUBNET}}),
        400,
        "Validation failure: Missing project ID in request where one is required. An administrator should "
        "check the keystone settings in the Octavia configuration.",
    )
    assert_fault(rest.get(f"{LBS}?sort=bogus:asc"), 400, "Supplied sort key 'bogus' is not valid.")


def test_list_pagination_and_fields(rest: Rest) -> None:
    ids = [rest.create_lb(name=f"page-{i}", tags=["paging"])["id"] for i in range(3)]
    first = rest.ok("GET", f"{LBS}?limit=2&tags=paging")
    assert [lb["id"] for lb in first["loadbalancers"]] == ids[:2]
    (link,) = first["loadbalancers_links"]
    assert link["rel"] == "next" and link["href"].startswith(rest.base_url + LBS + "?")
    second = rest.session.get(link["href"], timeout=10).json()
    assert [lb["id"] for lb in second["loadbalancers"]] == ids[2:]
    assert [x["rel"] for x in second["loadbalancers_links"]] == ["previous"]
    only = rest.ok("GET", f"{LBS}?tags=paging&fields=id&fields=name")
    assert all(set(lb) == {"id", "name"} for lb in only["loadbalancers"])
    for lb_id in ids:
        assert rest.delete(f"{LBS}/{lb_id}").status_code == 204
