"""keystone mode over REST: Keystone tokens name the caller; nothing else does."""

from __future__ import annotations

import time

import pytest
import requests
from keystone_server import CACHE_TIME_S, TOKEN_LIFETIME_S, Keystone
from support import NEEDS_AUTH, SUBNET, Rest

from octavia_mesh.cli.mesh import Mesh

#: The first test also starts Keystone (~20 s, a one-time ~2 min bootstrap on a fresh machine) and meshes.
pytestmark = pytest.mark.timeout(300)


def as_token(mesh: Mesh, token: str, **headers: str) -> Rest:
    return Rest(mesh.endpoint, {"X-Auth-Token": token, **headers})


def assert_401(response: requests.Response, keystone: Keystone) -> None:
    assert response.status_code == 401, f"{response.status_code} {response.text}"
    assert response.headers["WWW-Authenticate"] == f'Keystone uri="{keystone.url}"'
    assert response.json() == NEEDS_AUTH


def test_a_valid_token_is_accepted_and_names_the_project(ks_mesh: Mesh, keystone: Keystone, people) -> None:
    rest = as_token(ks_mesh, keystone.token_of("member-a", "proj-a"))
    lb = rest.ok("POST", "/v2/lbaas/loadbalancers", {"loadbalancer": {"name": "ks-a", "vip_subnet_id": SUBNET}})
    assert lb["loadbalancer"]["project_id"] == people.project_a  # from the token: the body named none
    listed = rest.ok("GET", "/v2/lbaas/loadbalancers")["loadbalancers"]
    assert lb["loadbalancer"]["id"] in {item["id"] for item in listed}
    assert {item["project_id"] for item in listed} == {people.project_a}


def test_missing_garbage_and_revoked_tokens_get_401(ks_mesh: Mesh, keystone: Keystone, people) -> None:
    assert_401(Rest(ks_mesh.endpoint).get("/v2/lbaas/loadbalancers"), keystone)
    assert_401(as_token(ks_mesh, "garbage").get("/v2/lbaas/loadbalancers"), keystone)
    assert_401(as_token(ks_mesh, "gAAAAA" + "x" * 180).get("/v2/lbaas/loadbalancers"), keystone)
    # A revoked token is refused once the mesh's cached validation has aged out (keystonemiddleware's rule).
    token = keystone.token_of("member-a", "proj-a")
    rest = as_token(ks_mesh, token)
    rest.ok("GET", "/v2/lbaas/loadbalancers")
    keystone.revoke(token)
    revoked_at = time.monotonic()
    while rest.get("/v2/lbaas/loadbalancers").status_code == 200:
        assert time.monotonic() - revoked_at < CACHE_TIME_S + 3, "a revoked token outlived the cache time"
        time.sleep(0.2)
    assert_401(rest.get("/v2/lbaas/loadbalancers"), keystone)


def test_an_expired_token_gets_401(ks_mesh: Mesh, keystone: Keystone, people) -> None:
    token, body = keystone.token("member-a", "user-secret", "proj-a")
    rest = as_token(ks_mesh, token)
    rest.ok("GET", "/v2/lbaas/loadbalancers")
    expires = time.mktime(time.strptime(body["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert expires - time.time() <= TOKEN_LIFETIME_S + 1
    while time.time() < expires + 0.5:
        time.sleep(0.5)
    assert_401(rest.get("/v2/lbaas/loadbalancers"), keystone)  # cached as valid moments ago: expiry still wins


def test_identity_headers_from_a_client_are_ignored(ks_mesh: Mesh, keystone: Keystone, people) -> None:
    spoof = {"X-Project-Id": people.project_b, "X-Roles": "admin", "X-User-Id": "admin", "X-Tenant-Id": "x"}
    rest = as_token(ks_mesh, keystone.token_of("member-a", "proj-a"), **spoof)
    lb = rest.ok("POST", "/v2/lbaas/loadbalancers", {"loadbalancer": {"name": "spoof", "vip_subnet_id": SUBNET}})
    assert lb["loadbalancer"]["project_id"] == people.project_a
    assert rest.get("/v2/lbaas/flavorprofiles").status_code == 403  # admin only; X-Roles: admin did not count
    # Without a token the headers alone name nobody.
    assert_401(Rest(ks_mesh.endpoint, spoof).get("/v2/lbaas/loadbalancers"), keystone)


def test_roles_decide_what_a_token_may_do(ks_mesh: Mesh, keystone: Keystone, people) -> None:
    member = as_token(ks_mesh, keystone.token_of("member-a", "proj-a"))
    reader = as_token(ks_mesh, keystone.token_of("reader-a", "proj-a"))
    other = as_token(ks_mesh, keystone.token_of("member-b", "proj-b"))
    admin = as_token(ks_mesh, keystone.token_of("admin", "admin"))
    body = {"loadbalancer": {"name": "roles", "vip_subnet_id": SUBNET}}
    lb = member.ok("POST", "/v2/lbaas/loadbalancers", body)["loadbalancer"]
    path = f"/v2/lbaas/loadbalancers/{lb['id']}"
    member.wait_lb_active(lb["id"])
    # reader: reads its project's objects, changes nothing
    assert reader.ok("GET", path)["loadbalancer"]["id"] == lb["id"]
    assert reader.post("/v2/lbaas/loadbalancers", body).status_code == 403
    assert reader.put(path, {"loadbalancer": {"name": "x"}}).status_code == 403
    # member of another project: neither reads nor changes it
    assert other.get(path).status_code in (403, 404)
    assert other.put(path, {"loadbalancer": {"name": "x"}}).status_code in (403, 404)
    assert lb["id"] not in {item["id"] for item in other.ok("GET", "/v2/lbaas/loadbalancers")["loadbalancers"]}
    # a member may not create in another project; admin-only resources are refused
    foreign = {"loadbalancer": {"vip_subnet_id": SUBNET, "project_id": people.project_b}}
    assert member.post("/v2/lbaas/loadbalancers", foreign).status_code == 403
    assert member.get("/v2/lbaas/flavorprofiles").status_code == 403
    assert member.put(f"/v2/lbaas/quotas/{people.project_a}", {"quota": {"load_balancer": 5}}).status_code == 403
    # admin: sees every project's, may do admin-only calls
    assert lb["id"] in {item["id"] for item in admin.ok("GET", "/v2/lbaas/loadbalancers")["loadbalancers"]}
    admin.ok("GET", "/v2/lbaas/flavorprofiles")
    admin.ok("PUT", f"/v2/lbaas/quotas/{people.project_a}", {"quota": {"load_balancer": 50}}, status=202)
    assert member.ok("GET", f"/v2/lbaas/quotas/{people.project_a}")["quota"]["load_balancer"] == 50
    admin.ok("DELETE", f"/v2/lbaas/quotas/{people.project_a}", status=202)
    member.ok("DELETE", path, status=204)


def test_version_discovery_stays_public(ks_mesh: Mesh) -> None:
    anonymous = Rest(ks_mesh.endpoint)
    assert anonymous.ok("GET", "/")["versions"]
    assert anonymous.get("/v2").status_code == 200
    assert anonymous.get("/key-manager").status_code in (200, 300)


def test_keystone_unreachable_is_503_never_allowed(down_mesh: Mesh) -> None:
    response = as_token(down_mesh, "any-token").get("/v2/lbaas/loadbalancers")
    assert response.status_code == 503, response.text
    assert response.json() == {
        "faultcode": "Server",
        "faultstring": "The Keystone service is temporarily unavailable.",
        "debuginfo": None,
    }
    assert Rest(down_mesh.endpoint).get("/v2/lbaas/loadbalancers").status_code == 401  # no token: no need to ask
