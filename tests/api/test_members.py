"""Members through the REST edge: create, show, list, update, delete, the batch update, and their faults."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text
from support import PROJECT, SUBNET, Rest, assert_fault, mesh_engine, paused

LBS = "/v2/lbaas/loadbalancers"
POOLS = "/v2/lbaas/pools"
HMS = "/v2/lbaas/healthmonitors"
NOID = "00000000-0000-0000-0000-00000000abcd"
KEYS = [
    "id",
    "name",
    "operating_status",
    "provisioning_status",
    "admin_state_up",
    "address",
    "protocol_port",
    "weight",
    "backup",
    "subnet_id",
    "project_id",
    "created_at",
    "updated_at",
    "monitor_address",
    "monitor_port",
    "tags",
    "vnic_type",
    "tenant_id",
]


def make_pool(rest: Rest, protocol: str = "HTTP", **lb_fields: Any) -> tuple[str, str]:
    """A fresh load balancer with one pool on it, both ACTIVE: (lb id, pool id)."""
    lb = rest.create_lb(**lb_fields)
    body = {"pool": {"protocol": protocol, "lb_algorithm": "ROUND_ROBIN", "loadbalancer_id": lb["id"]}}
    pool = rest.ok("POST", POOLS, body)["pool"]
    rest.wait_status(f"{POOLS}/{pool['id']}", "pool")
    rest.wait_lb_active(lb["id"])
    return lb["id"], pool["id"]


def members_of(rest: Rest, pool_id: str) -> list[dict[str, Any]]:
    return rest.ok("GET", f"{POOLS}/{pool_id}/members")["members"]


def wait_members(rest: Rest, lb_id: str, pool_id: str) -> list[dict[str, Any]]:
    rest.wait_lb_active(lb_id)
    return members_of(rest, pool_id)


def pool_missing(response: Any, pool_id: str) -> None:
    """A member call on a missing pool is Octavia's 404 fault (Octavia 19 leaks pecan's own body,
    ``{"code": 404, "title": "Bad Request", ...}``, which clients cannot read as a fault: issue 10)."""
    assert_fault(response, 404, f"Pool {pool_id} not found.")


def commands(mesh: Any, lb_id: str, subject: str) -> int:
    engine = mesh_engine(mesh)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text("SELECT count(*) FROM provider_command WHERE load_balancer_id = :lb AND subject LIKE :s"),
                {"lb": lb_id, "s": f"%.{subject}"},
            ).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def shared(rest: Rest) -> tuple[str, str]:
    return make_pool(rest)


def test_create_show_update_delete(mesh, rest: Rest) -> None:
    lb_id, pool_id = make_pool(rest)
    members = f"{POOLS}/{pool_id}/members"
    body = {"name": "m1", "address": "192.0.2.10", "protocol_port": 8080, "subnet_id": SUBNET, "weight": 5}
    created = rest.ok("POST", members, {"member": body})["member"]
    assert list(created) == KEYS
    assert created["provisioning_status"] == "PENDING_CREATE" and created["operating_status"] == "NO_MONITOR"
    assert created["updated_at"] is None and created["monitor_address"] is None and created["monitor_port"] is None
    assert (created["weight"], created["backup"], created["admin_state_up"]) == (5, False, True)
    assert created["project_id"] == PROJECT == created["tenant_id"] and created["vnic_type"] == "normal"
    member = rest.wait_status(f"{members}/{created['id']}", "member")
    assert member["operating_status"] == "NO_MONITOR" and member["updated_at"] is not None
    assert rest.ok("GET", f"{POOLS}/{pool_id}")["pool"]["members"] == [{"id": created["id"]}]
    assert rest.ok("GET", f"{members}/{created['id']}?fields=name&fields=weight&bogus=1") == {
        "member": {"name": "m1", "weight": 5}
    }
    assert rest.ok("GET", f"{members}/{created['id']}?fields=name,weight") == {"member": {}}  # no comma split

    with paused(mesh):
        updated = rest.ok("PUT", f"{members}/{created['id']}", {"member": {"weight": 10, "tags": ["a"]}})["member"]
        assert updated["provisioning_status"] == "PENDING_UPDATE" and updated["weight"] == 10
        assert updated["tags"] == ["a"] and updated["updated_at"] != member["updated_at"]
        # Octavia marks the pool too; the next change under it is refused with the pool's message.
        assert rest.ok("GET", f"{POOLS}/{pool_id}")["pool"]["provisioning_status"] == "PENDING_UPDATE"
        busy = f"Pool {pool_id} is immutable and cannot be updated."
        assert_fault(rest.put(f"{members}/{created['id']}", {"member": {"name": "x"}}), 409, busy)
        assert_fault(rest.post(members, {"member": {"address": "192.0.2.11", "protocol_port": 80}}), 409, busy)
        assert_fault(rest.delete(f"{members}/{created['id']}"), 409, busy)
        assert_fault(rest.put(members, {"members": []}), 409, busy)
    rest.wait_lb_active(lb_id)
    assert rest.ok("GET", f"{POOLS}/{pool_id}")["pool"]["provisioning_status"] == "ACTIVE"

    # Nulls fall back to Octavia's values; a null tag list keeps the tags.
    nulls = {"name": None, "weight": None, "backup": None, "admin_state_up": None, "tags": None}
    reset = rest.ok("PUT", f"{members}/{created['id']}", {"member": {**nulls, "monitor_port": None}})["member"]
    assert (reset["name"], reset["weight"], reset["backup"], reset["admin_state_up"]) == ("", 1, False, False)
    assert reset["tags"] == ["a"]
    rest.wait_lb_active(lb_id)
    full = {"name": "z", "weight": 256, "backup": True, "monitor_address": "192.0.2.99", "monitor_port": 99}
    changed = rest.ok("PUT", f"{members}/{created['id']}", {"member": {**full, "tags": [], "admin_state_up": True}})
    assert {k: changed["member"][k] for k in full} == full and changed["member"]["tags"] == []
    rest.wait_lb_active(lb_id)

    with paused(mesh):
        assert rest.delete(f"{members}/{created['id']}").status_code == 204
        gone = rest.ok("GET", f"{members}/{created['id']}")["member"]
        assert gone["provisioning_status"] == "PENDING_DELETE"
    rest.wait_status(f"{members}/{created['id']}", "member", "DELETED")
    assert_fault(rest.get(f"{members}/{created['id']}"), 404, f"Member {created['id']} not found.")
    assert rest.ok("GET", f"{POOLS}/{pool_id}")["pool"]["members"] == []


def test_lb_busy_and_monitored_pool(mesh, rest: Rest) -> None:
    lb_id, pool_id = make_pool(rest, "TCP")
    members = f"{POOLS}/{pool_id}/members"
    with paused(mesh):
        rest.ok("PUT", f"{LBS}/{lb_id}", {"loadbalancer": {"description": "busy"}})
        assert_fault(
            rest.post(members, {"member": {"address": "192.0.2.1", "protocol_port": 80}}),
            409,
            f"Load Balancer {lb_id} is immutable and cannot be updated.",
        )
    rest.wait_lb_active(lb_id)
    assert members_of(rest, pool_id) == []
    hm = {"pool_id": pool_id, "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3}
    rest.ok("POST", HMS, {"healthmonitor": hm})
    rest.wait_lb_active(lb_id)
    # With a monitor, a new member starts OFFLINE instead of NO_MONITOR.
    created = rest.ok("POST", members, {"member": {"address": "192.0.2.1", "protocol_port": 80}})["member"]
    assert created["operating_status"] == "OFFLINE"
    rest.wait_lb_active(lb_id)
    rest.ok("PUT", members, {"members": [{"address": "192.0.2.1", "protocol_port": 80}]}, status=202)
    rest.wait_lb_active(lb_id)


def test_listener_marked_while_pending(mesh, rest: Rest) -> None:
    lb = rest.create_lb()
    body = {"listener": {"protocol": "HTTP", "protocol_port": 80, "loadbalancer_id": lb["id"]}}
    listener = rest.ok("POST", "/v2/lbaas/listeners", body)["listener"]
    rest.wait_lb_active(lb["id"])
    body = {"pool": {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "listener_id": listener["id"]}}
    pool = rest.ok("POST", POOLS, body)["pool"]
    rest.wait_lb_active(lb["id"])
    with paused(mesh):
        rest.ok("POST", f"{POOLS}/{pool['id']}/members", {"member": {"address": "192.0.2.5", "protocol_port": 80}})
        # Octavia marks the listeners using the pool as well.
        shown = rest.ok("GET", f"/v2/lbaas/listeners/{listener['id']}")["listener"]
        assert shown["provisioning_status"] == "PENDING_UPDATE"
    rest.wait_lb_active(lb["id"])
    assert rest.ok("GET", f"/v2/lbaas/listeners/{listener['id']}")["listener"]["provisioning_status"] == "ACTIVE"


def test_duplicates_and_addresses(rest: Rest, shared: tuple[str, str]) -> None:
    lb_id, pool_id = shared
    members = f"{POOLS}/{pool_id}/members"
    rest.ok("POST", members, {"member": {"address": "192.0.2.20", "protocol_port": 80}})
    rest.wait_lb_active(lb_id)
    assert_fault(
        rest.post(members, {"member": {"address": "192.0.2.20", "protocol_port": 80, "weight": 3}}),
        409,
        "Another member on this pool is already using ip 192.0.2.20 on protocol_port 80",
    )
    # Octavia keeps the address as written: these are two members.
    first = rest.ok("POST", members, {"member": {"address": "2001:db8::0001", "protocol_port": 80}})["member"]
    assert first["address"] == "2001:db8::0001"
    rest.wait_lb_active(lb_id)
    rest.ok("POST", members, {"member": {"address": "2001:db8::1", "protocol_port": "80"}})
    rest.wait_lb_active(lb_id)
    assert_fault(
        rest.post(members, {"member": {"address": "169.254.169.254", "protocol_port": 80}}),
        400,
        "169.254.169.254 is not a valid option for member address",
    )
    assert_fault(
        rest.post(members, {"member": {"address": "192.0.2.21", "protocol_port": 80, "request_sriov": True}}),
        400,
        "The load balancer flavor does not allow SR-IOV member ports.",
    )
    # Deprecated project_id/tenant_id are accepted and ignored; WSME converts numbers and words.
    odd = {"address": "192.0.2.22", "protocol_port": 81, "project_id": "x", "tenant_id": "y", "weight": 2.7}
    made = rest.ok("POST", members, {"member": {**odd, "backup": "on", "admin_state_up": 0}})["member"]
    assert (made["project_id"], made["weight"], made["backup"], made["admin_state_up"]) == (PROJECT, 2, True, False)
    rest.wait_lb_active(lb_id)


def test_missing_pool_and_member(rest: Rest, shared: tuple[str, str]) -> None:
    _, pool_id = shared
    for method, path, body in (
        ("GET", f"{POOLS}/{NOID}/members", None),
        ("POST", f"{POOLS}/{NOID}/members", {"member": {"address": "192.0.2.1", "protocol_port": 80}}),
        ("PUT", f"{POOLS}/{NOID}/members", {"members": []}),
        ("GET", f"{POOLS}/{NOID}/members/{NOID}", None),
        ("PUT", f"{POOLS}/{NOID}/members/{NOID}", {"member": {}}),
        ("DELETE", f"{POOLS}/{NOID}/members/{NOID}", None),
        ("GET", f"{POOLS}/notauuid/members", None),
    ):
        pool_missing(rest.call(method, path, body), path.split("/")[4])
    for method in ("GET", "PUT", "DELETE"):
        body = {"member": {}} if method == "PUT" else None
        response = rest.call(method, f"{POOLS}/{pool_id}/members/{NOID}", body)
        assert_fault(response, 404, f"Member {NOID} not found.")
    # A member is only found under its own pool.
    other_lb, other_pool = make_pool(rest)
    other = rest.ok("POST", f"{POOLS}/{other_pool}/members", {"member": {"address": "192.0.2.9", "protocol_port": 1}})
    rest.wait_lb_active(other_lb)
    member_id = other["member"]["id"]
    assert_fault(rest.get(f"{POOLS}/{pool_id}/members/{member_id}"), 404, f"Member {member_id} not found.")
    assert_fault(rest.delete(f"{POOLS}/{pool_id}/members/{member_id}"), 404, f"Member {member_id} not found.")


BAD_CREATE = [
    ({"protocol_port": 80}, "Invalid input for field/attribute address. Value: 'None'. Mandatory field missing."),
    ({}, "Invalid input for field/attribute address. Value: 'None'. Mandatory field missing."),
    (
        {"address": "192.0.2.1"},
        "Invalid input for field/attribute protocol_port. Value: 'None'. Mandatory field missing.",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": None},
        "Invalid input for field/attribute protocol_port. Value: 'None'. Mandatory field missing.",
    ),
    (
        {"address": "1.2.3.256", "protocol_port": 80},
        "Invalid input for field/attribute address. Value: '1.2.3.256'. Value should be IPv4 or IPv6 format",
    ),
    (
        {"address": "example.com", "protocol_port": 80},
        "Invalid input for field/attribute address. Value: 'example.com'. Value should be IPv4 or IPv6 format",
    ),
    (
        {"address": " 192.0.2.8", "protocol_port": 80},
        "Invalid input for field/attribute address. Value: ' 192.0.2.8'. Value should be IPv4 or IPv6 format",
    ),
    (
        {"address": "fe80::1%eth0", "protocol_port": 80},
        "Invalid input for field/attribute address. Value: 'fe80::1%eth0'. Value should be IPv4 or IPv6 format",
    ),
    (
        {"address": 5, "protocol_port": 80},
        "Invalid input for field/attribute address. Value: '5'. Value should be IPv4 or IPv6 format",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 0},
        "Invalid input for field/attribute protocol_port. Value: '0'. Value should be greater or equal to 1",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 65536},
        "Invalid input for field/attribute protocol_port. Value: '65536'. Value should be lower or equal to 65535",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "weight": 257},
        "Invalid input for field/attribute weight. Value: '257'. Value should be lower or equal to 256",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "weight": -1},
        "Invalid input for field/attribute weight. Value: '-1'. Value should be greater or equal to 0",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "weight": "x"},
        "Invalid input for field/attribute member_. Value: '{'member': {'address': '192.0.2.1', "
        "'protocol_port': 80, 'weight': 'x'}}'. invalid literal for int() with base 10: 'x'",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "backup": "x"},
        "Invalid input for field/attribute member_. Value: '{'member': {'address': '192.0.2.1', "
        "'protocol_port': 80, 'backup': 'x'}}'. Value not an unambiguous boolean: x",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "admin_state_up": "TRUE"},
        "Invalid input for field/attribute member_. Value: '{'member': {'address': '192.0.2.1', "
        "'protocol_port': 80, 'admin_state_up': 'TRUE'}}'. Value not an unambiguous boolean: TRUE",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "tags": "x"},
        "Invalid input for field/attribute member_. Value: '{'member': {'address': '192.0.2.1', "
        "'protocol_port': 80, 'tags': 'x'}}'. Value not a valid list: x",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "tags": [1]},
        "Invalid input for field/attribute tags. Value: '[1]'. Value should be string",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "tags": ["t" * 256]},
        f"Invalid input for field/attribute tags. Value: '['{'t' * 256}']'. "
        "Value should have a maximum character requirement of 255",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "name": "n" * 256},
        f"Invalid input for field/attribute name. Value: '{'n' * 256}'. "
        "Value should have a maximum character requirement of 255",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "name": 5},
        "Invalid input for field/attribute name. Value: '5'. Value should be string",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "subnet_id": "x"},
        "Invalid input for field/attribute subnet_id. Value: 'x'. Value should be UUID format",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "monitor_port": 0},
        "Invalid input for field/attribute monitor_port. Value: '0'. Value should be greater or equal to 1",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "monitor_address": "x"},
        "Invalid input for field/attribute monitor_address. Value: 'x'. Value should be IPv4 or IPv6 format",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "foo": 1},
        "Unknown attribute for argument member_.member: foo",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "vnic_type": "normal"},
        "Unknown attribute for argument member_.member: vnic_type",
    ),
    (
        {"address": "192.0.2.1", "protocol_port": 80, "id": NOID},
        "Unknown attribute for argument member_.member: id",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_CREATE)
def test_create_faults(rest: Rest, shared: tuple[str, str], body: dict[str, Any], message: str) -> None:
    _, pool_id = shared
    before = members_of(rest, pool_id)
    assert_fault(rest.post(f"{POOLS}/{pool_id}/members", {"member": body}), 400, message)
    assert members_of(rest, pool_id) == before


def test_body_and_query_faults(rest: Rest, shared: tuple[str, str]) -> None:
    lb_id, pool_id = shared
    members = f"{POOLS}/{pool_id}/members"
    member = {"address": "192.0.2.30", "protocol_port": 80}
    before = members_of(rest, pool_id)
    assert_fault(rest.post(members, raw=b"{bad"), 400, "Request is not in valid JSON format")
    assert_fault(rest.post(members, {"mumber": {}}), 400, "Unknown attribute for argument member_: mumber")
    assert_fault(rest.post(members, {}), 400, 'Missing argument: "member_"')
    assert_fault(rest.post(f"{members}?foo=1", {"member": member}), 400, 'Unknown argument: "foo"')
    assert members_of(rest, pool_id) == before
    made = rest.ok("POST", members, {"member": member})["member"]
    rest.wait_lb_active(lb_id)
    one = f"{members}/{made['id']}"
    for key, value in (("address", "192.0.2.99"), ("protocol_port", 99), ("subnet_id", SUBNET)):
        message = f"Unknown attribute for argument member_.member: {key}"
        assert_fault(rest.put(one, {"member": {key: value}}), 400, message)
    for key in ("request_sriov", "project_id", "tenant_id", "vnic_type"):
        assert_fault(
            rest.put(one, {"member": {key: "x"}}), 400, f"Unknown attribute for argument member_.member: {key}"
        )
    assert_fault(
        rest.put(one, {"member": {"weight": 257}}),
        400,
        "Invalid input for field/attribute weight. Value: '257'. Value should be lower or equal to 256",
    )
    assert_fault(rest.put(f"{one}?foo=1", {"member": {"name": "x"}}), 400, 'Unknown argument: "foo"')
    assert_fault(rest.delete(f"{one}?foo=1"), 400, 'Unknown argument: "foo"')
    assert rest.ok("GET", one)["member"] == rest.wait_status(one, "member")
    assert rest.ok("GET", one)["member"]["provisioning_status"] == "ACTIVE"


def test_list_filters_sort_pagination(rest: Rest) -> None:
    lb_id, pool_id = make_pool(rest)
    members = f"{POOLS}/{pool_id}/members"
    ids = []
    for i, backup in enumerate((False, True, False)):
        body = {"address": f"192.0.2.{40 + i}", "protocol_port": 80, "backup": backup, "weight": i, "tags": [f"t{i}"]}
        ids.append(rest.ok("POST", members, {"member": body})["member"]["id"])
        rest.wait_lb_active(lb_id)
    assert [m["id"] for m in members_of(rest, pool_id)] == ids

    def listed(query: str) -> list[Any]:
        return rest.ok("GET", f"{members}?{query}")["members"]

    assert [m["id"] for m in listed("backup=true")] == [ids[1]]
    assert [m["id"] for m in listed("backup=maybe")] == [ids[0], ids[2]]  # oslo: not a true word = false
    assert [m["id"] for m in listed("address=192.0.2.42")] == [ids[2]]
    assert [m["id"] for m in listed("weight=1")] == [ids[1]]
    assert listed("weight=abc") == [] and listed("protocol_port=abc") == [] and listed("created_at=abc") == []
    assert [m["id"] for m in listed("tags=t0")] == [ids[0]]
    assert [m["id"] for m in listed("sort=address:desc")] == ids[::-1]
    assert listed("fields=address&fields=weight&weight=2") == [{"address": "192.0.2.42", "weight": 2}]
    assert listed("fields=id,name") == [{}, {}, {}]  # Octavia does not split fields on commas
    assert listed("name=") == []  # Octavia stores a missing name as null
    for query in ("bogus=1", "tenant_id=x", "pools=x"):
        assert_fault(rest.get(f"{members}?{query}"), 400, "One or more arguments are either duplicate or invalid")
    assert_fault(rest.get(f"{members}?sort=bogus"), 400, "Supplied sort key 'bogus' is not valid.")

    first = rest.ok("GET", f"{members}?limit=2")
    assert [m["id"] for m in first["members"]] == ids[:2]
    (link,) = first["members_links"]
    assert link["rel"] == "next" and link["href"].startswith(rest.base_url + members + "?")
    second = rest.session.get(link["href"], timeout=10).json()
    assert [m["id"] for m in second["members"]] == ids[2:]
    assert [x["rel"] for x in second["members_links"]] == ["previous"]


def test_batch_update(mesh, rest: Rest) -> None:
    lb_id, pool_id = make_pool(rest)
    members = f"{POOLS}/{pool_id}/members"
    start = [
        {"address": "192.0.2.10", "protocol_port": 80, "name": "a", "tags": ["x"], "weight": 5, "backup": True},
        {"address": "192.0.2.11", "protocol_port": 80, "monitor_port": 9},
    ]
    response = rest.put(members, {"members": start})
    assert response.status_code == 202 and response.content == b"", response.text
    created = {m["address"]: m for m in wait_members(rest, lb_id, pool_id)}
    assert set(created) == {"192.0.2.10", "192.0.2.11"}
    assert created["192.0.2.10"]["tags"] == ["x"] and created["192.0.2.10"]["weight"] == 5
    assert commands(mesh, lb_id, "member.batch_update") == 1

    # Unchanged members are updated too; left-out attributes with a default fall back to it, others are kept.
    with paused(mesh):
        rest.ok("PUT", members, {"members": [{"address": "192.0.2.10", "protocol_port": 80}, start[1]]}, status=202)
        pending = {m["address"]: m for m in members_of(rest, pool_id)}
        assert {m["provisioning_status"] for m in pending.values()} == {"PENDING_UPDATE"}
        assert rest.ok("GET", f"{POOLS}/{pool_id}")["pool"]["provisioning_status"] == "PENDING_UPDATE"
    after = {m["address"]: m for m in wait_members(rest, lb_id, pool_id)}
    kept = after["192.0.2.10"]
    assert (kept["name"], kept["tags"], kept["weight"], kept["backup"]) == ("a", ["x"], 1, False)
    assert kept["id"] == created["192.0.2.10"]["id"] and after["192.0.2.11"]["monitor_port"] == 9

    # The desired state: one new, one kept, one deleted; all in one command.
    with paused(mesh):
        desired = [{"address": "192.0.2.11", "protocol_port": 80}, {"address": "192.0.2.12", "protocol_port": 80}]
        rest.ok("PUT", members, {"members": desired}, status=202)
        states = {m["address"]: m["provisioning_status"] for m in members_of(rest, pool_id)}
        assert states == {
            "192.0.2.10": "PENDING_DELETE",
            "192.0.2.11": "PENDING_UPDATE",
            "192.0.2.12": "PENDING_CREATE",
        }
    assert {m["address"] for m in wait_members(rest, lb_id, pool_id)} == {"192.0.2.11", "192.0.2.12"}
    assert commands(mesh, lb_id, "member.batch_update") == 3

    # additive_only keeps the members left out; anything but a true word means false.
    rest.ok("PUT", f"{members}?additive_only=true", {"members": [{"address": "192.0.2.13", "protocol_port": 80}]}, 202)
    assert len(wait_members(rest, lb_id, pool_id)) == 3
    rest.ok("PUT", f"{members}?additive_only=maybe", {"members": [{"address": "192.0.2.13", "protocol_port": 80}]}, 202)
    assert [m["address"] for m in wait_members(rest, lb_id, pool_id)] == ["192.0.2.13"]
    rest.ok("PUT", members, {"members": []}, status=202)
    assert wait_members(rest, lb_id, pool_id) == []


def test_batch_faults(rest: Rest) -> None:
    lb_id, pool_id = make_pool(rest)
    members = f"{POOLS}/{pool_id}/members"
    rest.ok("PUT", members, {"members": [{"address": "192.0.2.13", "protocol_port": 80}]}, status=202)
    before = wait_members(rest, lb_id, pool_id)
    twice = [{"address": "192.0.2.13", "protocol_port": 80}, {"address": "192.0.2.13", "protocol_port": "80"}]
    cases = [
        ({"members": twice}, 400, "Validation failure: Member must be updated only once in the same request."),
        (
            {
                "members": [
                    {"address": "192.0.2.20", "protocol_port": 80},
                    {"address": "192.0.2.20", "protocol_port": 80},
                ]
            },
            409,
            "Another member on this pool is already using ip 192.0.2.20 on protocol_port 80",
        ),
        (
            {"members": [{"address": "169.254.169.254", "protocol_port": 80}]},
            400,
            "169.254.169.254 is not a valid option for member address",
        ),
        (
            {"members": [{"protocol_port": 80}]},
            400,
            "Invalid input for field/attribute address. Value: 'None'. Mandatory field missing.",
        ),
        (
            {"members": [{"address": "192.0.2.30"}]},
            400,
            "Invalid input for field/attribute protocol_port. Value: 'None'. Mandatory field missing.",
        ),
        (
            {"members": [{"address": "192.0.2.30", "protocol_port": 80, "foo": 1}]},
            400,
            "Unknown attribute for argument members_.members: foo",
        ),
        (
            {"members": "x"},
            400,
            "Invalid input for field/attribute members_. Value: '{'members': 'x'}'. Value not a valid list: x",
        ),
        (
            {"members": [{"address": "192.0.2.31", "protocol_port": 80, "weight": "x"}]},
            400,
            "Invalid input for field/attribute members_. Value: '{'members': [{'address': '192.0.2.31', "
            "'protocol_port': 80, 'weight': 'x'}]}'. invalid literal for int() with base 10: 'x'",
        ),
        (
            {"members": [{"address": "192.0.2.31", "protocol_port": 80, "weight": 500}]},
            400,
            "Invalid input for field/attribute weight. Value: '500'. Value should be lower or equal to 256",
        ),
        ({"members": [], "extra": 1}, 400, "Unknown attribute for argument members_: extra"),
        ({"member": {"address": "192.0.2.10"}}, 400, "Unknown attribute for argument members_: member"),
        ({}, 400, 'Missing argument: "members_"'),
        ({"members": None}, 400, 'Missing argument: "members_"'),
        (
            {"members": [{"address": "192.0.2.32", "protocol_port": 80, "request_sriov": True}]},
            400,
            "The load balancer flavor does not allow SR-IOV member ports.",
        ),
    ]
    for body, status, message in cases:
        assert_fault(rest.put(members, body), status, message)
    assert_fault(rest.put(f"{members}?additive_only=true&foo=1", {"members": []}), 400, 'Unknown argument: "foo"')
    assert_fault(rest.put(members, raw=b"[]"), 400, "Invalid input for argument members_")
    # Nothing was written: same members, still ACTIVE, the load balancer unlocked.
    assert members_of(rest, pool_id) == before
    assert rest.ok("GET", f"{LBS}/{lb_id}")["loadbalancer"]["provisioning_status"] == "ACTIVE"


def test_member_quota(rest: Rest) -> None:
    project = uuid.uuid4().hex
    lb_id, pool_id = make_pool(rest, project_id=project)
    members = f"{POOLS}/{pool_id}/members"
    rest.ok("PUT", f"/v2/lbaas/quotas/{project}", {"quota": {"member": 2}}, status=202)
    rest.ok("POST", members, {"member": {"address": "192.0.2.1", "protocol_port": 80}})
    rest.wait_lb_active(lb_id)
    two = [{"address": f"192.0.2.{i}", "protocol_port": 80} for i in (1, 2, 3)]
    assert_fault(rest.put(members, {"members": two}), 403, "Quota has been met for resources: Member")
    rest.ok("PUT", members, {"members": two[1:]}, status=202)  # one deleted, two new
    assert {m["address"] for m in wait_members(rest, lb_id, pool_id)} == {"192.0.2.2", "192.0.2.3"}
    assert_fault(
        rest.post(members, {"member": {"address": "192.0.2.4", "protocol_port": 80}}),
        403,
        "Quota has been met for resources: Member",
    )
    rest.ok("PUT", members, {"members": []}, status=202)
    wait_members(rest, lb_id, pool_id)
    rest.ok("POST", members, {"member": {"address": "192.0.2.4", "protocol_port": 80}})
    rest.wait_lb_active(lb_id)


def test_rbac(secure_rest: Rest) -> None:
    project, stranger = uuid.uuid4().hex, uuid.uuid4().hex
    owner = secure_rest.as_(project, "member")
    lb_id, pool_id = make_pool(owner, project_id=project)
    members = f"{POOLS}/{pool_id}/members"
    made = owner.ok("POST", members, {"member": {"address": "192.0.2.1", "protocol_port": 80}})["member"]
    owner.wait_lb_active(lb_id)
    reader = secure_rest.as_(project, "reader")
    assert [m["id"] for m in reader.ok("GET", members)["members"]] == [made["id"]]
    assert reader.ok("GET", f"{members}/{made['id']}")["member"]["id"] == made["id"]
    forbidden = "Policy does not allow this request to be performed."
    assert_fault(reader.post(members, {"member": {"address": "192.0.2.2", "protocol_port": 80}}), 403, forbidden)
    assert_fault(reader.put(f"{members}/{made['id']}", {"member": {"name": "x"}}), 403, forbidden)
    assert_fault(reader.delete(f"{members}/{made['id']}"), 403, forbidden)
    assert_fault(reader.put(members, {"members": []}), 403, forbidden)
    # Another project's pool is found and refused: Octavia's 403 fault (pecan's 404 body is for a missing pool).
    other = secure_rest.as_(stranger, "member")
    assert_fault(other.get(members), 403, forbidden)
    assert_fault(other.get(f"{members}/{made['id']}"), 403, forbidden)
    assert_fault(other.put(members, {"members": []}), 403, forbidden)
    assert_fault(other.delete(f"{members}/{made['id']}"), 403, forbidden)
    missing = str(uuid.uuid4())
    pool_missing(other.get(f"{POOLS}/{missing}/members"), missing)
    admin = secure_rest.as_(stranger, "admin")
    assert [m["id"] for m in admin.ok("GET", members)["members"]] == [made["id"]]
    assert [m["address"] for m in wait_members(owner, lb_id, pool_id)] == ["192.0.2.1"]
