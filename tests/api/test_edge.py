"""What the Envoy edge adds to Octavia's wire format: statuses, fault shapes, headers, paths."""

from __future__ import annotations

import pytest
import requests
from support import PROJECT, SUBNET, Rest, assert_fault

LBS = "/v2/lbaas/loadbalancers"


@pytest.fixture(scope="module")
def rest(envoy_rest: Rest) -> Rest:
    """These tests pin the real Envoy edge (tests/api/conftest.py puts the rest of tests/api on the fast tier)."""
    return envoy_rest


def test_version_discovery(rest: Rest) -> None:
    versions = rest.ok("GET", "/")["versions"]
    assert versions[0]["id"] == "v2.0" and versions[-1] == {
        "id": "v2.30",
        "status": "CURRENT",
        "updated": "2025-02-26T00:00:00Z",
        "links": [{"href": f"{rest.base_url}/v2", "rel": "self"}],
    }
    assert all(v["status"] == "SUPPORTED" for v in versions[:-1]) and len(versions) == 31
    assert rest.ok("GET", "/v2") == "v2" and rest.ok("GET", "/v2.0") == "v2"


def test_unknown_route_and_method(rest: Rest) -> None:
    missing = rest.get("/v2/lbaas/nothing")
    assert missing.status_code == 404 and missing.json() == {"code": 404, "title": "Not Found", "description": ""}
    patch = rest.call("PATCH", f"{LBS}/00000000-0000-0000-0000-000000000001", {})
    assert patch.status_code == 405
    assert patch.json() == {"code": 405, "title": "Method Not Allowed", "description": ""}


def test_body_must_be_json(rest: Rest) -> None:
    body = b'{"loadbalancer": {"vip_subnet_id": "%s", "project_id": "%s"}}' % (SUBNET.encode(), PROJECT.encode())
    response = rest.session.post(rest.base_url + LBS, data=body, headers={"Content-Type": "text/plain"}, timeout=10)
    assert_fault(response, 415, "Unknown mimetype: text/plain")
    assert rest.get(f"{LBS}?name=never-created").json()["loadbalancers"] == []


def test_headers_and_json_suffix(rest: Rest) -> None:
    lb = rest.create_lb(name="edge-headers")
    response = rest.get(f"{LBS}/{lb['id']}.json")
    assert response.status_code == 200 and response.json()["loadbalancer"]["id"] == lb["id"]
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-openstack-request-id"].startswith("req-")
    assert not [h for h in response.headers if h.lower().startswith("grpc-") or h.lower() == "x-http-code"]
    listed = rest.get(f"{LBS}.json?name=edge-headers")
    assert [x["id"] for x in listed.json()["loadbalancers"]] == [lb["id"]]
    deleted = rest.delete(f"{LBS}/{lb['id']}")
    assert deleted.status_code == 204 and deleted.content == b"" and "content-type" not in deleted.headers


def test_query_string_reaches_the_service_intact(rest: Rest) -> None:
    name = "a b+c&d=é/?"
    lb = rest.create_lb(name=name)
    found = requests.get(f"{rest.base_url}{LBS}", params={"name": name}, timeout=10).json()["loadbalancers"]
    assert [x["id"] for x in found] == [lb["id"]]
    # A query parameter must not override the path's id (a known transcoder pitfall).
    other = rest.get(f"{LBS}/{lb['id']}?id=00000000-0000-0000-0000-000000000001")
    assert other.status_code == 400 or other.json()["loadbalancer"]["id"] == lb["id"]
