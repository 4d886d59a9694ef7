"""The exact requests of issue 10, each once, through the real edge (Envoy) and API: a 4xx fault, at once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
import requests
from sqlalchemy import text
from support import PROJECT, SUBNET, Rest, assert_fault, mesh_engine, new_listener, new_pool

LBS = "/v2/lbaas/loadbalancers"
POOLS = "/v2/lbaas/pools"
ZERO = "00000000-0000-0000-0000-000000000001"
UTF8 = "Invalid input: the request's path, query or body is not valid UTF-8 text."
NO_ROUTE = {"code": 404, "title": "Not Found", "description": ""}
TOO_LARGE = "Request is too large. Larger than max_request_body_size (114688)."


def raw(rest: Rest, method: str, path: str, body: bytes, **kwargs: Any) -> requests.Response:
    headers = {"Content-Type": "application/json", **rest.session.headers}
    return rest.session.request(method, rest.base_url + path, data=body, headers=headers, timeout=15, **kwargs)


@pytest.fixture(scope="module")
def lb(rest: Rest) -> dict[str, Any]:
    return rest.create_lb(name="badinput-regressions")


def test_large_bodies_are_413_at_the_edge(rest: Rest) -> None:
    big = {"pool": {"name": "x" * 200_000}}
    assert_fault(rest.put(f"{POOLS}/{ZERO}", big), 413, TOO_LARGE)

    def chunked() -> Any:  # no Content-Length: the buffer filter cuts it off
        yield b'{"pool": {"name": "'
        for _ in range(20):
            yield b"x" * 10_000
        yield b'"}}'

    assert_fault(raw(rest, "PUT", f"{POOLS}/{ZERO}", chunked()), 413, TOO_LARGE)  # type: ignore[arg-type]


def test_an_invalid_value_is_quoted_truncated(rest: Rest, lb: dict[str, Any]) -> None:
    pool = new_pool(rest, lb["id"], name="quoted")
    response = rest.put(f"{POOLS}/{pool['id']}", {"pool": {"name": "x" * 100_000}})
    assert_fault(response, 400)
    faultstring = response.json()["faultstring"]
    assert len(faultstring) < 4400 and f"Value: '{'x' * 4200}...'" in faultstring


def test_large_invalid_bodies_leave_concurrent_requests_alone(rest: Rest) -> None:
    """20 invalid ~110 KB bodies (the size that once reset the shared upstream connection) among valid GETs."""
    bad: list[int] = []
    good: list[int] = []

    def send_bad() -> None:
        session = requests.Session()
        for _ in range(5):
            body = {"pool": {"name": "x" * 110_000}}
            bad.append(session.put(f"{rest.base_url}{POOLS}/{ZERO}", json=body, timeout=15).status_code)

    def send_good() -> None:
        session = requests.Session()
        for _ in range(40):
            good.append(session.get(f"{rest.base_url}{LBS}?limit=1", timeout=15).status_code)

    threads = [threading.Thread(target=send_bad) for _ in range(4)] + [
        threading.Thread(target=send_good) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert Counter(bad) == {400: 20} and Counter(good) == {200: 160}


def test_lone_surrogates_are_400_at_once(rest: Rest, lb: dict[str, Any]) -> None:
    cases = [
        ("POST", LBS, b'{"loadbalancer": {"vip_subnet_id": "x\\ud800", "project_id": "p"}}'),
        ("PUT", f"/v2/lbaas/l7policies/{ZERO}", b'{"l7policy": {"action": "REJECT\\ud800"}}'),
        ("POST", LBS, b'{"loadbalancer": {"vip_subnet_id": "%s", "name": "a\\ud800"}}' % SUBNET.encode()),
        ("PUT", f"{LBS}/{lb['id']}", b'{"loadbalancer": {"name": "\\udc00"}}'),
        ("PUT", f"/v2/lbaas/flavors/{ZERO}", b'{"flavor": {"name": "\\ud83d"}}'),
        ("PUT", f"/v2/lbaas/flavorprofiles/{ZERO}", b'{"flavorprofile": {"name": "\\ud83d"}}'),
    ]
    for method, path, body in cases:
        started = time.monotonic()
        assert_fault(raw(rest, method, path, body), 400, UTF8)
        assert time.monotonic() - started < 5
    # A valid pair is one character, and fine.
    pair = raw(rest, "PUT", f"{LBS}/{lb['id']}", b'{"loadbalancer": {"name": "\\ud83d\\ude00"}}')
    assert pair.status_code == 200 and pair.json()["loadbalancer"]["name"] == "\U0001f600"
    rest.wait_lb_active(lb["id"])
    assert_fault(raw(rest, "PUT", f"{LBS}/{lb['id']}", b'{"loadbalancer": {"name": "\xff"}}'), 400, UTF8)


@pytest.mark.parametrize(
    "path",
    [
        f"{LBS}/%ff",
        f"{POOLS}/%ff",
        f"{POOLS}/%ff/members",
        f"{POOLS}/{ZERO}/members/%ed%a0%80",
        "/v2/lbaas/l7policies/%c3",
    ],
)
def test_invalid_utf8_in_an_id(rest: Rest, path: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = rest.call(method, path, {} if method == "PUT" else None)
        assert response.status_code in (400, 404), response.text
        assert "DecodeError" not in response.text and "protobuf" not in response.text
        if response.json() != NO_ROUTE:  # DELETE on a collection has no route: Octavia's unknown-path 404
            assert_fault(response, response.status_code)


def test_invalid_utf8_in_the_query(rest: Rest) -> None:
    assert_fault(rest.get(f"{LBS}?name=%ff"), 400, "Invalid query string: a value is not valid UTF-8 text")


def test_integers_beyond_the_database(rest: Rest, lb: dict[str, Any]) -> None:
    for value in (9223372036854775808, 10**30, -(2**31) - 1):
        body = {"listener": {"loadbalancer_id": lb["id"], "protocol": "HTTP", "protocol_port": 81}}
        body["listener"]["connection_limit"] = value
        response = rest.post("/v2/lbaas/listeners", body)
        assert_fault(response, 400)
        assert "connection_limit" in response.json()["faultstring"]
    assert_fault(rest.get("/v2/lbaas/listeners?protocol_port=99999999999999999999"), 400)


def test_list_filters_of_any_length(rest: Rest, lb: dict[str, Any]) -> None:
    tagged = rest.create_lb(name="badinput-tagged", tags=["t0", "t1"])
    # 1,000 tags: the load balancer has two of them, so it has not all (tags, not-tags) but some (tags-any).
    for key, has_tagged in (("tags", False), ("tags-any", True), ("not-tags", True), ("not-tags-any", False)):
        query = "&".join(f"{key}=t{i}" for i in range(1000))
        ids = [x["id"] for x in rest.ok("GET", f"{LBS}?{query}&fields=id")["loadbalancers"]]
        assert (tagged["id"] in ids) == has_tagged, key
        assert (lb["id"] in ids) == key.startswith("not-"), key
    two = rest.ok("GET", f"{LBS}?tags=t0&tags=t1&fields=id")["loadbalancers"]
    assert [x["id"] for x in two] == [tagged["id"]]
    ids = "&".join(f"id={ZERO[:-4]}{i:04d}" for i in range(700))  # 28 KB: any list that fits the limit works
    assert rest.ok("GET", f"{LBS}?{ids}")["loadbalancers"] == []


def test_deep_json(rest: Rest) -> None:
    deep = b"[" * 1000 + b"]" * 1000
    response = raw(rest, "POST", "/v1/secrets", deep)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"code", "title", "description"}  # Barbican's fault shape on /v1
    assert_fault(raw(rest, "POST", LBS, b'{"loadbalancer": ' + b"[" * 1000 + b"]" * 1000 + b"}"), 400)


def test_long_paths_and_queries(rest: Rest) -> None:
    for length in (5000, 9000):
        response = rest.get(f"{POOLS}/{'a' * length}")
        assert_fault(response, 400, "Request path is longer than 1024 bytes.")
        assert "x-octavia-path" not in response.text and ":authority" not in response.text
    assert_fault(rest.get(f"{LBS}?name={'a' * 40000}"), 400, "Request query string is longer than 32768 bytes.")
    # Just under the limits works (ids this long are simply unknown).
    assert_fault(rest.get(f"{POOLS}/{'a' * 900}"), 404)
    assert rest.get(f"{LBS}?name={'a' * 30000}").status_code == 200


def test_large_headers_reach_the_api(rest: Rest) -> None:
    """Headers up to Envoy's own limit pass: gRPC's 8 KiB metadata default once answered them with a 429."""
    response = rest.session.get(f"{rest.base_url}{LBS}?limit=1", headers={"X-Big": "b" * 40_000}, timeout=15)
    assert response.status_code == 200, response.text


def test_barbican_errors_in_barbicans_format(rest: Rest) -> None:
    for response in (
        rest.get("/v1/secrets/%ff"),
        raw(rest, "POST", "/v1/secrets", b'{"name": "\\ud800"}'),
        rest.get(f"/v1/secrets/{'a' * 2000}"),
        rest.get(f"/key-manager/v1/containers?name={'a' * 40000}"),
        rest.post("/v1/secrets", {"name": "x" * 200_000}),
        rest.get("/v1/nothing-here"),
    ):
        assert 400 <= response.status_code < 500, response.text
        assert set(response.json()) == {"code", "title", "description"}, response.text
        assert response.json()["code"] == response.status_code


def test_members_of_a_missing_pool(rest: Rest) -> None:
    for method in ("GET", "POST"):
        response = rest.call(method, f"{POOLS}/{ZERO}/members", {"member": {}} if method == "POST" else None)
        assert_fault(response, 404, f"Pool {ZERO} not found.")


def test_error_is_no_dead_end(mesh: Any, rest: Rest, lb: dict[str, Any]) -> None:
    """A pool and its monitor in ERROR (as a failed change leaves them): both can be fixed or deleted, and the load
    balancer takes new children."""
    listener = new_listener(rest, lb["id"], 8081)
    pool = new_pool(rest, lb["id"], listener_id=listener["id"])
    monitor = rest.ok(
        "POST",
        "/v2/lbaas/healthmonitors",
        {"healthmonitor": {"pool_id": pool["id"], "type": "HTTP", "delay": 5, "timeout": 3, "max_retries": 2}},
    )["healthmonitor"]
    rest.wait_lb_active(lb["id"])
    engine = mesh_engine(mesh)
    try:
        with engine.begin() as conn:
            for table, row in (("pool", pool["id"]), ("health_monitor", monitor["id"])):
                conn.execute(text(f"UPDATE {table} SET provisioning_status = 'ERROR' WHERE id = :i"), {"i": row})
    finally:
        engine.dispose()
    hm_url = f"/v2/lbaas/healthmonitors/{monitor['id']}"
    rest.ok("PUT", hm_url, {"healthmonitor": {"expected_codes": "200-204"}})
    assert rest.wait_status(hm_url, "healthmonitor")["expected_codes"] == "200-204"
    assert rest.wait_status(f"{POOLS}/{pool['id']}", "pool")["provisioning_status"] == "ACTIVE"
    new_listener(rest, lb["id"], 8082)
    engine = mesh_engine(mesh)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE pool SET provisioning_status = 'ERROR' WHERE id = :i"), {"i": pool["id"]})
    finally:
        engine.dispose()
    assert rest.delete(hm_url).status_code == 204
    rest.wait_status(hm_url, "healthmonitor", "DELETED")
    assert rest.delete(f"{POOLS}/{pool['id']}").status_code == 204
    rest.wait_status(f"{POOLS}/{pool['id']}", "pool", "DELETED")
    assert rest.ok("GET", f"{LBS}/{lb['id']}")["loadbalancer"]["provisioning_status"] == "ACTIVE"


def test_ordinary_requests_pass_the_limits(rest: Rest) -> None:
    """The edge limits do not touch ordinary requests: a create with a body and a query still works."""
    created = rest.ok("POST", LBS, {"loadbalancer": {"vip_subnet_id": SUBNET, "project_id": PROJECT, "name": "ok"}})
    assert created["loadbalancer"]["name"] == "ok"
