"""Health monitors through the REST edge: create, show, list, update, delete, the type matrix, and their faults."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from support import PROJECT, Rest, assert_fault, paused

LBS = "/v2/lbaas/loadbalancers"
POOLS = "/v2/lbaas/pools"
HMS = "/v2/lbaas/healthmonitors"
NOID = "00000000-0000-0000-0000-00000000abcd"
KEYS = [
    "id",
    "name",
    "type",
    "delay",
    "timeout",
    "max_retries",
    "max_retries_down",
    "http_method",
    "url_path",
    "expected_codes",
    "admin_state_up",
    "project_id",
    "pools",
    "provisioning_status",
    "operating_status",
    "created_at",
    "updated_at",
    "tags",
    "http_version",
    "domain_name",
    "tenant_id",
]
DOMAIN_PATTERN = r"^(?=.{1,253}\.?$)(?:(?!-|[^.]+_)[A-Za-z0-9-_]{1,63}(?<!-)(?:\.|$))+$"
CODES_PATTERN = r"^(\d{3}(\s*,\s*\d{3})*)$|^(\d{3}-\d{3})$"


def make_pool(rest: Rest, protocol: str = "HTTP", **lb_fields: Any) -> tuple[str, str]:
    """A fresh load balancer with one pool on it, both ACTIVE: (lb id, pool id)."""
    lb = rest.create_lb(**lb_fields)
    body = {"pool": {"protocol": protocol, "lb_algorithm": "ROUND_ROBIN", "loadbalancer_id": lb["id"]}}
    pool = rest.ok("POST", POOLS, body)["pool"]
    rest.wait_lb_active(lb["id"])
    return lb["id"], pool["id"]


def hm_body(pool: str | None, **fields: Any) -> dict[str, Any]:
    return {"healthmonitor": {"pool_id": pool, "type": "HTTP", "delay": 5, "timeout": 3, "max_retries": 3, **fields}}


def monitors_on(rest: Rest, pool_id: str) -> list[dict[str, Any]]:
    return rest.ok("GET", f"{HMS}?pool_id={pool_id}")["healthmonitors"]


@pytest.fixture(scope="module")
def pools(rest: Rest) -> dict[str, str]:
    """One load balancer with an empty pool per protocol (monitors are never left on them)."""
    lb = rest.create_lb()
    out = {"lb": lb["id"]}
    for protocol in ("HTTP", "TCP", "UDP", "SCTP"):
        body = {"pool": {"protocol": protocol, "lb_algorithm": "ROUND_ROBIN", "loadbalancer_id": lb["id"]}}
        out[protocol] = rest.ok("POST", POOLS, body)["pool"]["id"]
        rest.wait_lb_active(lb["id"])
    return out


def create_and_drop(rest: Rest, lb_id: str, body: dict[str, Any]) -> dict[str, Any]:
    hm = rest.ok("POST", HMS, body)["healthmonitor"]
    rest.wait_lb_active(lb_id)
    assert rest.delete(f"{HMS}/{hm['id']}").status_code == 204
    rest.wait_lb_active(lb_id)
    return hm


def test_create_show_update_delete(mesh, rest: Rest) -> None:
    lb_id, pool_id = make_pool(rest)
    body = hm_body(pool_id, name="hm1", url_path="/health", tags=["t"])
    created = rest.ok("POST", HMS, body)["healthmonitor"]
    assert list(created) == KEYS
    assert created["pools"] == [{"id": pool_id}] and created["project_id"] == PROJECT == created["tenant_id"]
    assert (created["http_method"], created["url_path"], created["expected_codes"]) == ("GET", "/health", "200")
    assert (created["max_retries_down"], created["http_version"], created["domain_name"]) == (3, None, None)
    assert created["provisioning_status"] == "PENDING_CREATE" and created["operating_status"] == "OFFLINE"
    assert created["updated_at"] is None and created["tags"] == ["t"]
    hm = rest.wait_status(f"{HMS}/{created['id']}", "healthmonitor")
    assert hm["operating_status"] == "ONLINE"
    assert rest.ok("GET", f"{POOLS}/{pool_id}")["pool"]["healthmonitor_id"] == created["id"]
    assert rest.ok("GET", f"{HMS}/{hm['id']}?fields=name&fields=type&bogus=1") == {
        "healthmonitor": {"name": "hm1", "type": "HTTP"}
    }
    assert_fault(rest.post(HMS, hm_body(pool_id, type="TCP")), 409, "This pool already has a health monitor")

    one = f"{HMS}/{hm['id']}"
    with paused(mesh):
        updated = rest.ok("PUT", one, {"healthmonitor": {"delay": 10, "http_version": 1.1, "domain_name": "a.com"}})
        updated = updated["healthmonitor"]
        assert updated["provisioning_status"] == "PENDING_UPDATE" and updated["delay"] == 10
        assert (updated["http_version"], updated["domain_name"]) == (1.1, "a.com")
        assert rest.ok("GET", f"{POOLS}/{pool_id}")["pool"]["provisioning_status"] == "PENDING_UPDATE"
        busy = f"Pool {pool_id} is immutable and cannot be updated."
        assert_fault(rest.put(one, {"healthmonitor": {"name": "x"}}), 409, busy)
        assert_fault(rest.delete(one), 409, busy)
    rest.wait_lb_active(lb_id)

    # Nulls reset the HTTP options to their defaults; a null tag list keeps the tags.
    nulls = dict.fromkeys(("http_method", "url_path", "expected_codes", "max_retries_down", "name", "tags"))
    reset = rest.ok("PUT", one, {"healthmonitor": {**nulls, "http_version": None}})["healthmonitor"]
    assert (reset["http_method"], reset["url_path"], reset["expected_codes"]) == ("GET", "/", "200")
    assert (reset["max_retries_down"], reset["name"], reset["tags"]) == (3, "", ["t"])
    assert (reset["http_version"], reset["domain_name"]) == (None, "a.com")  # Octavia lets this through
    rest.wait_lb_active(lb_id)
    change = {
        "url_path": "/z?x=1",
        "expected_codes": "200, 202",
        "http_method": "HEAD",
        "delay": 7,
        "timeout": 6,
        "max_retries": 2,
        "max_retries_down": 9,
        "admin_state_up": False,
        "tags": [],
        "domain_name": None,
    }
    changed = rest.ok("PUT", one, {"healthmonitor": change})["healthmonitor"]
    assert {k: changed[k] for k in change} == {**change, "tags": []}
    assert rest.wait_status(one, "healthmonitor")["operating_status"] == "OFFLINE"

    with paused(mesh):
        assert rest.delete(one).status_code == 204
        assert rest.ok("GET", one)["healthmonitor"]["provisioning_status"] == "PENDING_DELETE"
    rest.wait_status(one, "healthmonitor", "DELETED")
    assert_fault(rest.get(one), 404, f"Health Monitor {hm['id']} not found.")
    assert "healthmonitor_id" not in rest.ok("GET", f"{POOLS}/{pool_id}")["pool"]
    create_and_drop(rest, lb_id, hm_body(pool_id, type="TCP"))  # the pool takes a monitor again


def test_types_and_matrix(rest: Rest, pools: dict[str, str]) -> None:
    lb_id = pools["lb"]
    for hm_type in ("PING", "TCP", "TLS-HELLO"):
        hm = create_and_drop(rest, lb_id, hm_body(pools["HTTP"], type=hm_type))
        assert (hm["http_method"], hm["url_path"], hm["expected_codes"]) == (None, None, None)
    https = create_and_drop(rest, lb_id, hm_body(pools["HTTP"], type="HTTPS", http_version="1.1"))
    assert (https["http_method"], https["url_path"], https["expected_codes"], https["http_version"]) == (
        "GET",
        "/",
        "200",
        1.1,
    )
    assert create_and_drop(rest, lb_id, hm_body(pools["HTTP"], http_version=1))["http_version"] == 1.0
    for hm_type in ("UDP-CONNECT", "SCTP"):
        assert_fault(
            rest.post(HMS, hm_body(pools["TCP"], type=hm_type)),
            400,
            f"Validation failure: The {hm_type} type is only supported for pools of type UDP/SCTP.",
        )
    for protocol in ("UDP", "SCTP"):
        for hm_type in ("HTTPS", "PING", "TLS-HELLO"):
            assert_fault(
                rest.post(HMS, hm_body(pools[protocol], type=hm_type)),
                400,
                f"Validation failure: The associated pool protocol is {protocol}, so only a "
                "UDP-CONNECT/SCTP/TCP/HTTP health monitor is supported.",
            )
        for hm_type in ("UDP-CONNECT", "SCTP", "TCP", "HTTP"):
            create_and_drop(rest, lb_id, hm_body(pools[protocol], type=hm_type))
    assert_fault(
        rest.post(HMS, hm_body(pools["UDP"], type="UDP-CONNECT", delay=2)),
        400,
        "Validation failure: The request delay value 2 should be larger than 3 for UDP-CONNECT health monitor type.",
    )
    udp = rest.ok("POST", HMS, hm_body(pools["UDP"], type="UDP-CONNECT", delay=3))["healthmonitor"]
    rest.wait_lb_active(lb_id)
    assert_fault(
        rest.put(f"{HMS}/{udp['id']}", {"healthmonitor": {"delay": 1}}),
        400,
        "Validation failure: The request delay value 1 should be larger than 3 for UDP-CONNECT health monitor type.",
    )
    for field, value in (("http_method", None), ("url_path", "/x"), ("expected_codes", "200")):
        assert_fault(
            rest.put(f"{HMS}/{udp['id']}", {"healthmonitor": {field: value}}),
            400,
            f"{field} is not a valid option for health monitors of type UDP-CONNECT",
        )
    assert rest.delete(f"{HMS}/{udp['id']}").status_code == 204
    rest.wait_lb_active(lb_id)


BAD_CREATE = [
    ({"type": "TCP", "url_path": "/x"}, "url_path is not a valid option for health monitors of type TCP"),
    ({"type": "TCP", "http_method": "GET"}, "http_method is not a valid option for health monitors of type TCP"),
    (
        {"type": "PING", "expected_codes": "200"},
        "expected_codes is not a valid option for health monitors of type PING",
    ),
    ({"type": None}, "None is not a valid option for type"),
    ({"delay": None}, "None is not a valid option for delay"),
    ({"max_retries": None}, "None is not a valid option for max_retries"),
    (
        {"domain_name": "example.com"},
        "Validation failure: 'http_version' must be specified when 'domain_name' is provided.",
    ),
    (
        {"domain_name": "example.com", "http_version": 1.0},
        "http_version 1.0 is not a valid option for health monitors HTTP 1.1 domain name health check",
    ),
    ({"delay": -1}, "Invalid input for field/attribute delay. Value: '-1'. Value should be greater or equal to 0"),
    ({"timeout": -1}, "Invalid input for field/attribute timeout. Value: '-1'. Value should be greater or equal to 0"),
    (
        {"delay": 2**31},
        "Invalid input for field/attribute delay. Value: '2147483648'. Value should be lower or equal to 2147483647",
    ),
    (
        {"max_retries": 11},
        "Invalid input for field/attribute max_retries. Value: '11'. Value should be lower or equal to 10",
    ),
    (
        {"max_retries": 0},
        "Invalid input for field/attribute max_retries. Value: '0'. Value should be greater or equal to 1",
    ),
    (
        {"max_retries_down": 0},
        "Invalid input for field/attribute max_retries_down. Value: '0'. Value should be greater or equal to 1",
    ),
    (
        {"type": "BOGUS"},
        "Invalid input for field/attribute type. Value: 'BOGUS'. "
        "Value should be one of: TCP, HTTP, TLS-HELLO, UDP-CONNECT, SCTP, HTTPS, PING",
    ),
    (
        {"http_method": "get"},
        "Invalid input for field/attribute http_method. Value: 'get'. "
        "Value should be one of: PUT, DELETE, CONNECT, PATCH, HEAD, POST, TRACE, GET, OPTIONS",
    ),
    (
        {"http_version": 2.0},
        "Invalid input for field/attribute http_version. Value: '2.0'. Value should be one of: 1.0, 1.1",
    ),
    (
        {"url_path": "health"},
        "Invalid input for field/attribute url_path. Value: 'health'. Value must be a valid URL Path string",
    ),
    (
        {"url_path": "/a b"},
        "Invalid input for field/attribute url_path. Value: '/a b'. Value must be a valid URL Path string",
    ),
    (
        {"url_path": "/a\nb"},
        "Invalid input for field/attribute url_path. Value: '/a\nb'. Value must be a valid URL Path string",
    ),
    (
        {"url_path": "/a\tb"},
        "Invalid input for field/attribute url_path. Value: '/a\tb'. Value must be a valid URL Path string",
    ),
    (
        {"url_path": "//x"},
        "Invalid input for field/attribute url_path. Value: '//x'. Value must be a valid URL Path string",
    ),
    ({"url_path": ""}, "Invalid input for field/attribute url_path. Value: ''. Value must be a valid URL Path string"),
    (
        {"url_path": "http://x/health"},
        "Invalid input for field/attribute url_path. Value: 'http://x/health'. Value must be a valid URL Path string",
    ),
    *[
        (
            {"expected_codes": codes},
            f"Invalid input for field/attribute expected_codes. Value: '{codes}'. Value should match the pattern "
            f"{CODES_PATTERN}",
        )
        for codes in ("abc", "200-", "99", "200,abc", "200-204,300", "200,", "2000", "200\n", "200,\n201")
    ],
    *[
        (
            {"domain_name": name, "http_version": 1.1},
            f"Invalid input for field/attribute domain_name. Value: '{name}'. Value should match the pattern "
            f"{DOMAIN_PATTERN}",
        )
        for name in ("bad domain", "-a.com", "a_b.com", "a" * 64 + ".com", "a.com\n", "a.com\r")
    ],
    (
        {"domain_name": "", "http_version": 1.1},
        "Invalid input for field/attribute domain_name. Value: ''. "
        "Value should have a minimum character requirement of 1",
    ),
    (
        {"name": "n" * 256},
        f"Invalid input for field/attribute name. Value: '{'n' * 256}'. Value should have a maximum character "
        "requirement of 255",
    ),
    ({"tags": [1]}, "Invalid input for field/attribute tags. Value: '[1]'. Value should be string"),
    ({"pool": "x"}, "Invalid input for field/attribute pool_id. Value: 'x'. Value should be UUID format"),
    ({"foo": 1}, "Unknown attribute for argument health_monitor_.healthmonitor: foo"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_CREATE)
def test_create_faults(rest: Rest, pools: dict[str, str], fields: dict[str, Any], message: str) -> None:
    assert_fault(rest.post(HMS, hm_body(**{"pool": pools["HTTP"], **fields})), 400, message)
    assert monitors_on(rest, pools["HTTP"]) == []
    assert rest.ok("GET", f"{LBS}/{pools['lb']}")["loadbalancer"]["provisioning_status"] == "ACTIVE"


def test_body_faults(rest: Rest, pools: dict[str, str]) -> None:
    pool_id = pools["HTTP"]
    mandatory = "Invalid input for field/attribute {}. Value: 'None'. Mandatory field missing."
    assert_fault(rest.post(HMS, {"healthmonitor": {}}), 400, mandatory.format("type"))
    assert_fault(rest.post(HMS, {"healthmonitor": {"type": "HTTP"}}), 400, mandatory.format("delay"))
    assert_fault(rest.post(HMS, {"healthmonitor": {"type": "HTTP", "delay": 1}}), 400, mandatory.format("timeout"))
    body = {"type": "HTTP", "delay": 1, "timeout": 1}
    assert_fault(rest.post(HMS, {"healthmonitor": body}), 400, mandatory.format("max_retries"))
    assert_fault(rest.post(HMS, {"healthmonitor": {**body, "max_retries": 1}}), 400, mandatory.format("pool_id"))
    assert_fault(rest.post(HMS, raw=b"{bad"), 400, "Request is not in valid JSON format")
    assert_fault(rest.post(HMS, {}), 400, 'Missing argument: "health_monitor_"')
    assert_fault(
        rest.post(HMS, hm_body(pool_id, delay="x")),
        400,
        "Invalid input for field/attribute health_monitor_. Value: '{'healthmonitor': {'pool_id': "
        f"'{pool_id}', 'type': 'HTTP', 'delay': 'x', 'timeout': 3, 'max_retries': 3}}}}'. "
        "invalid literal for int() with base 10: 'x'",
    )
    assert_fault(
        rest.post(HMS, hm_body(pool_id, http_version="x")),
        400,
        "Invalid input for field/attribute health_monitor_. Value: '{'healthmonitor': {'pool_id': "
        f"'{pool_id}', 'type': 'HTTP', 'delay': 5, 'timeout': 3, 'max_retries': 3, 'http_version': 'x'}}}}'. "
        "could not convert string to float: 'x'",
    )
    assert_fault(rest.post(HMS, hm_body(NOID)), 404, f"Pool {NOID} not found.")
    assert_fault(rest.post(HMS, hm_body(None)), 404, "Pool None not found.")
    assert_fault(rest.post(f"{HMS}?bogus=1", hm_body(pool_id)), 400, 'Unknown argument: "bogus"')
    assert monitors_on(rest, pool_id) == []
    # Deprecated project ids are accepted and ignored.
    hm = create_and_drop(rest, pools["lb"], hm_body(pool_id, project_id="x", tenant_id="y"))
    assert hm["project_id"] == PROJECT


def test_update_faults(rest: Rest, pools: dict[str, str]) -> None:
    lb_id = pools["lb"]
    hm = rest.ok("POST", HMS, hm_body(pools["TCP"], type="TCP"))["healthmonitor"]
    rest.wait_lb_active(lb_id)
    one = f"{HMS}/{hm['id']}"
    before = rest.ok("GET", one)
    for key, value in (("type", "HTTP"), ("pool_id", pools["HTTP"]), ("project_id", PROJECT), ("tenant_id", "x")):
        message = f"Unknown attribute for argument health_monitor_.healthmonitor: {key}"
        assert_fault(rest.put(one, {"healthmonitor": {key: value}}), 400, message)
    for field in ("http_method", "url_path", "expected_codes"):
        assert_fault(
            rest.put(one, {"healthmonitor": {field: None}}),
            400,
            f"{field} is not a valid option for health monitors of type TCP",
        )
    for field in ("delay", "timeout", "max_retries"):
        assert_fault(rest.put(one, {"healthmonitor": {field: None}}), 400, f"None is not a valid option for {field}")
    assert_fault(
        rest.put(one, {"healthmonitor": {"domain_name": "a.com"}}),
        400,
        "Validation failure: 'http_version' must be specified when 'domain_name' is provided.",
    )
    assert_fault(rest.put(f"{one}?bogus=1", {"healthmonitor": {}}), 400, 'Unknown argument: "bogus"')
    assert_fault(rest.delete(f"{one}?bogus=1"), 400, 'Unknown argument: "bogus"')
    assert rest.ok("GET", one) == before
    # A TCP monitor takes a Host header setting (Octavia accepts it), and a 1.0 version is then refused.
    rest.ok("PUT", one, {"healthmonitor": {"domain_name": "a.com", "http_version": 1.1}})
    rest.wait_lb_active(lb_id)
    assert_fault(
        rest.put(one, {"healthmonitor": {"http_version": 1.0}}),
        400,
        "http_version 1.0 is not a valid option for health monitors HTTP 1.1 domain name health check",
    )
    for method in ("GET", "PUT", "DELETE"):
        body = {"healthmonitor": {}} if method == "PUT" else None
        assert_fault(rest.call(method, f"{HMS}/{NOID}", body), 404, f"Health Monitor {NOID} not found.")
    assert_fault(rest.get(f"{HMS}/notauuid"), 404, "Health Monitor notauuid not found.")
    assert rest.delete(one).status_code == 204
    rest.wait_lb_active(lb_id)


def test_list_filters_sort_pagination(rest: Rest) -> None:
    lb = rest.create_lb()
    ids = []
    for i, hm_type in enumerate(("HTTP", "TCP", "PING")):
        body = {"pool": {"protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "loadbalancer_id": lb["id"]}}
        pool_id = rest.ok("POST", POOLS, body)["pool"]["id"]
        rest.wait_lb_active(lb["id"])
        tag = uuid.uuid4().hex
        ids.append(
            rest.ok("POST", HMS, hm_body(pool_id, type=hm_type, delay=i + 1, tags=[tag, "hm-page"]))["healthmonitor"][
                "id"
            ]
        )
        rest.wait_lb_active(lb["id"])

    def listed(query: str) -> list[Any]:
        return rest.ok("GET", f"{HMS}?tags=hm-page&project_id={PROJECT}&{query}")["healthmonitors"]

    mine = [h for h in listed("") if h["id"] in ids]
    assert [h["id"] for h in mine] == ids
    assert [h["id"] for h in listed("type=TCP") if h["id"] in ids] == [ids[1]]
    assert [h["id"] for h in listed("delay=3") if h["id"] in ids] == [ids[2]]
    assert listed("delay=abc") == [] and listed("http_version=x") == []
    assert [h["id"] for h in listed("admin_state_up=maybe")] == []  # oslo: not a true word = false
    assert [h["id"] for h in listed("sort=delay:desc") if h["id"] in ids] == ids[::-1]
    assert listed(f"id={ids[0]}&fields=id&fields=pools")[0] == {"id": ids[0], "pools": mine[0]["pools"]}
    for query in ("bogus=1", "tenant_id=x", "pools=x"):
        assert_fault(rest.get(f"{HMS}?{query}"), 400, "One or more arguments are either duplicate or invalid")
    assert_fault(rest.get(f"{HMS}?sort=pools"), 400, "Supplied sort key 'pools' is not valid.")
    first = rest.ok("GET", f"{HMS}?tags=hm-page&limit=2")
    assert len(first["healthmonitors"]) == 2
    (link,) = first["healthmonitors_links"]
    assert link["rel"] == "next" and link["href"].startswith(rest.base_url + HMS + "?")


def test_quota_and_lb_busy(mesh, rest: Rest) -> None:
    project = uuid.uuid4().hex
    lb_id, pool_id = make_pool(rest, project_id=project)
    rest.ok("PUT", f"/v2/lbaas/quotas/{project}", {"quota": {"healthmonitor": 0}}, status=202)
    assert_fault(rest.post(HMS, hm_body(pool_id)), 403, "Quota has been met for resources: Health Monitor")
    rest.ok("PUT", f"/v2/lbaas/quotas/{project}", {"quota": {"healthmonitor": 1}}, status=202)
    with paused(mesh):
        rest.ok("PUT", f"{LBS}/{lb_id}", {"loadbalancer": {"description": "busy"}})
        assert_fault(
            rest.post(HMS, hm_body(pool_id)), 409, f"Load Balancer {lb_id} is immutable and cannot be updated."
        )
    rest.wait_lb_active(lb_id)
    assert monitors_on(rest, pool_id) == []
    create_and_drop(rest, lb_id, hm_body(pool_id))
    rest.ok("POST", HMS, hm_body(pool_id))  # the quota came back with the delete
    rest.wait_lb_active(lb_id)


def test_rbac(secure_rest: Rest) -> None:
    project, stranger = uuid.uuid4().hex, uuid.uuid4().hex
    owner = secure_rest.as_(project, "member")
    lb_id, pool_id = make_pool(owner, project_id=project)
    hm = owner.ok("POST", HMS, hm_body(pool_id))["healthmonitor"]
    owner.wait_lb_active(lb_id)
    one = f"{HMS}/{hm['id']}"
    reader = secure_rest.as_(project, "reader")
    assert reader.ok("GET", one)["healthmonitor"]["id"] == hm["id"]
    assert [h["id"] for h in reader.ok("GET", HMS)["healthmonitors"]] == [hm["id"]]
    forbidden = "Policy does not allow this request to be performed."
    assert_fault(reader.put(one, {"healthmonitor": {"name": "x"}}), 403, forbidden)
    assert_fault(reader.delete(one), 403, forbidden)
    other = secure_rest.as_(stranger, "member")
    assert other.ok("GET", HMS)["healthmonitors"] == []
    # Found, then refused: Octavia's 403.
    assert_fault(other.get(one), 403, forbidden)
    assert_fault(other.put(one, {"healthmonitor": {"name": "x"}}), 403, forbidden)
    assert_fault(other.delete(one), 403, forbidden)
    assert_fault(other.post(HMS, hm_body(pool_id, type="TCP")), 403, forbidden)
    assert_fault(other.get(f"{HMS}/{uuid.uuid4()}"), 404)
    admin = secure_rest.as_(stranger, "admin")
    assert admin.ok("GET", one)["healthmonitor"]["id"] == hm["id"]
    assert owner.delete(one).status_code == 204
    owner.wait_lb_active(lb_id)
