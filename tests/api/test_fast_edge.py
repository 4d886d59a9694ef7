"""The fast tier's edge (``fastedge.py``) answers as the real Envoy edge does: the same requests through both,
the same statuses, headers and bodies (ids, addresses, times and hosts aside, which differ between two meshes).

It is also the REST pass that crosses the real Envoy for every resource kind (create, show, list with a filter,
update, delete), while the rest of ``tests/api`` runs on the fast tier. SQLite only: neither edge's rules
depend on the database, and the PostgreSQL and MariaDB runs test the API's behaviour on the fast tier.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from support import PROJECT, PROXY_SECRET, SUBNET, Rest
from tls_material import issue, p12

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?")
IPV4 = re.compile(r"\b127\.\d+\.\d+\.\d+(/\d+)?\b")
#: Response headers that must agree (Envoy's own, such as ``server`` and ``date``, are not the API's behaviour).
HEADERS = ("content-type", "www-authenticate", "location")
LBS = "/v2/lbaas/loadbalancers"
#: An id nothing has (fixed: every xdist worker must collect the same test ids).
NOBODY = "5f0c9e52-4d3b-4c43-9a34-0c2f1b7e6d11"
pytestmark = pytest.mark.sqlite_only


class Pair:
    """The same client on both edges: each request goes to Envoy, then to the fast edge, and must agree. With
    ``over_http``, also to the fast edge over HTTP (as openstacksdk reaches it) rather than through
    :class:`support.Rest`'s in-process adapter."""

    def __init__(self, envoy: Rest, fast: Rest, over_http: bool = False) -> None:
        self.sides = {"envoy": envoy, "fast": fast}
        if over_http:
            http = self.sides["fast-http"] = Rest(fast.base_url)
            http.session = requests.Session()
            http.session.headers.update(fast.session.headers)

    def normalize(self, side: str, text: str) -> str:
        base = self.sides[side].base_url
        text = text.replace(base, "<base>").replace(base.removeprefix("http://"), "<host>")
        text = UUID.sub("<id>", text)
        text = TIME.sub("<time>", text)
        return IPV4.sub("<ip>", text)

    def answer(self, side: str, response: requests.Response) -> tuple[int, dict[str, str], Any]:
        headers = {h: self.normalize(side, response.headers[h]) for h in HEADERS if h in response.headers}
        assert response.headers.get("x-openstack-request-id", "").startswith("req-") or response.status_code >= 500
        text = self.normalize(side, response.content.decode("utf-8", "replace"))
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        return response.status_code, headers, body

    def send(
        self,
        method: str,
        path: str | Callable[[str], str],
        body: Any = None,
        raw: bytes | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send to both; assert the same answer; return each side's decoded body (not normalized)."""
        answers, bodies = {}, {}
        for side, rest in self.sides.items():
            url = path(side) if callable(path) else path
            document = body(side) if callable(body) else body
            data = raw if raw is not None else (None if document is None else json.dumps(document))
            sent = {"Content-Type": "application/json"} if data is not None else {}
            response = rest.session.request(
                method, rest.base_url + url, data=data, headers={**sent, **(headers or {})}, timeout=30
            )
            answers[side] = self.answer(side, response)
            try:
                bodies[side] = response.json()
            except ValueError:
                bodies[side] = None
        for side in answers:
            assert answers[side] == answers["envoy"], f"{method} {path}: the {side} edge differs from Envoy"
        return bodies

    def wait(self, path: Callable[[str], str], key: str, status: str = "ACTIVE") -> None:
        for side, rest in self.sides.items():
            rest.wait_status(path(side), key, status)


@pytest.fixture(scope="module")
def pair(envoy_rest: Rest, rest: Rest) -> Pair:
    return Pair(envoy_rest, rest)


@pytest.fixture(scope="module")
def triple(envoy_rest: Rest, rest: Rest) -> Pair:
    return Pair(envoy_rest, rest, over_http=True)


STATELESS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/", {}),
    ("GET", "/v2", {}),
    ("GET", "/v2.0/", {}),
    ("GET", "/v2/lbaas/nothing", {}),
    ("GET", "//v2/lbaas/loadbalancers", {}),
    ("GET", f"{LBS}/?name=parity-nothing", {}),
    ("GET", "/v2/lbaas//loadbalancers?name=parity-nothing", {}),
    ("GET", f"{LBS}.json?name=parity-nothing", {}),
    ("GET", f"{LBS}?name=a+b%20c&name=%2B", {}),
    ("GET", f"{LBS}?bogus=1", {}),
    ("GET", f"{LBS}?limit=x", {}),
    ("GET", f"{LBS}?sort=name:sideways", {}),
    ("GET", f"{LBS}?name=%ff", {}),
    ("GET", f"{LBS}/%ff", {}),
    ("GET", f"{LBS}/a%2Fb", {}),
    ("GET", f"{LBS}/{NOBODY}", {}),
    ("GET", f"{LBS}/{NOBODY}/stats", {}),
    ("PATCH", f"{LBS}/{NOBODY}", {"body": {}}),
    ("TRACE", LBS, {}),
    ("POST", f"{LBS}/{NOBODY}", {"body": {}}),
    ("DELETE", LBS, {}),
    ("POST", LBS, {"raw": b"{not json", "headers": {"Content-Type": "application/json"}}),
    ("POST", LBS, {"raw": b"{}", "headers": {"Content-Type": "text/plain"}}),
    ("POST", LBS, {"raw": b'"\\ud800"'}),
    ("POST", LBS, {"body": {"loadbalancer": {"vip_subnet_id": SUBNET, "bogus": 1}}}),
    ("POST", LBS, {"body": {"loadbalancer": {"vip_subnet_id": SUBNET, "name": "x" * 300}}}),
    ("POST", LBS, {"raw": b" " * 114689}),
    ("GET", "/v2/lbaas/" + "x" * 1100, {}),
    ("GET", f"{LBS}?name=" + "x" * 33000, {}),
    ("GET", "/v1/" + "x" * 1100, {}),
    ("GET", "/v1/secrets?name=" + "x" * 33000, {}),
    ("POST", "/v1/secrets", {"raw": b" " * 114689}),
    ("GET", "/v1", {}),
    ("GET", "/v1/", {}),
    ("GET", "/key-manager", {}),
    ("GET", "/key-manager/v1/secrets?limit=1&name=parity-nothing", {}),
    ("GET", f"/v1/secrets/{NOBODY}", {}),
    ("GET", "/v1/nothing", {}),
    ("GET", "/v2.0/subnets", {}),
    ("GET", f"/v2.0/subnets/{SUBNET}", {}),
    ("GET", "/v2/networks", {}),
    ("GET", "/v2.0/floatingips?port_id=x", {}),
    ("GET", "/v2.0/floatingips/x", {}),
    ("GET", "/v2/lbaas/providers", {}),
    ("GET", "/v2/lbaas/providers/noop/flavor_capabilities", {}),
    ("GET", "/v2/lbaas/providers/nope/availability_zone_capabilities", {}),
    ("GET", "/v2/lbaas/quotas/defaults", {}),
    ("GET", "/v2/octavia/amphorae?status=nothing", {}),
    ("GET", "/v2/lbaas/availabilityzones?name=parity-nothing", {}),
    ("GET", "/v2/lbaas/flavors?name=parity-nothing", {}),
]


@pytest.mark.parametrize(("method", "path", "extra"), STATELESS, ids=[f"{m} {p[:60]}" for m, p, _ in STATELESS])
def test_same_answers_without_state(triple: Pair, method: str, path: str, extra: dict[str, Any]) -> None:
    triple.send(method, path, **extra)


def test_same_answers_for_every_resource_kind(pair: Pair) -> None:
    """Create, show, list (filtered), update and delete every kind of resource through both edges."""
    name = f"parity-{uuid.uuid4().hex[:8]}"
    ids: dict[str, dict[str, str]] = {"envoy": {}, "fast": {}}

    def at(template: str) -> Callable[[str], str]:
        return lambda side: template.format(**ids[side])

    def create(kind: str, path: str, body: dict[str, Any]) -> None:
        bodies = pair.send("POST", at(path), lambda side: {kind: _fill(body, ids[side])})
        for side in ids:
            ids[side][kind] = bodies[side][kind].get("id", "")  # an availability zone has its name only

    def crud(kind: str, collection: str, update: dict[str, Any], wait: bool) -> None:
        item = collection + "/{" + kind + "}"
        if wait:
            pair.wait(at(item), kind)
            pair.wait(at(LBS + "/{loadbalancer}"), "loadbalancer")
        pair.send("GET", at(item))
        pair.send("GET", at(collection + f"?name={name}&fields=name&fields=id"))
        pair.send("GET", at(collection + f"?name={name}&limit=1&sort=created_at:desc"))
        pair.send("PUT", at(item), {kind: update})
        if wait:
            pair.wait(at(item), kind)
            pair.wait(at(LBS + "/{loadbalancer}"), "loadbalancer")
        pair.send("GET", at(item))

    create("loadbalancer", LBS, {"name": name, "vip_subnet_id": SUBNET, "project_id": PROJECT, "provider": "noop"})
    crud("loadbalancer", LBS, {"description": "d"}, wait=True)
    pair.send("GET", at(LBS + "/{loadbalancer}/status"))
    pair.send("GET", at(LBS + "/{loadbalancer}/stats"))
    pair.send("PUT", at(LBS + "/{loadbalancer}/failover"))  # the noop provider takes it: 202
    pair.wait(at(LBS + "/{loadbalancer}"), "loadbalancer")
    listener = {"name": name, "protocol": "HTTP", "protocol_port": 8080, "loadbalancer_id": "{loadbalancer}"}
    create("listener", "/v2/lbaas/listeners", listener)
    crud("listener", "/v2/lbaas/listeners", {"connection_limit": 5}, wait=True)
    pair.send("GET", at("/v2/lbaas/listeners/{listener}/stats"))
    pool = {"name": name, "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", "loadbalancer_id": "{loadbalancer}"}
    create("pool", "/v2/lbaas/pools", pool)
    crud("pool", "/v2/lbaas/pools", {"lb_algorithm": "LEAST_CONNECTIONS"}, wait=True)
    members = "/v2/lbaas/pools/{pool}/members"
    create("member", members, {"name": name, "address": "192.0.2.10", "protocol_port": 80})
    crud("member", members, {"weight": 3}, wait=True)
    pair.send("PUT", at(members), {"members": [{"address": "192.0.2.11", "protocol_port": 80, "name": name}]})
    pair.wait(at(LBS + "/{loadbalancer}"), "loadbalancer")
    monitor = {"name": name, "pool_id": "{pool}", "type": "HTTP", "delay": 5, "timeout": 3, "max_retries": 2}
    create("healthmonitor", "/v2/lbaas/healthmonitors", monitor)
    crud("healthmonitor", "/v2/lbaas/healthmonitors", {"delay": 7}, wait=True)
    policy = {"name": name, "listener_id": "{listener}", "action": "REJECT"}
    create("l7policy", "/v2/lbaas/l7policies", policy)
    crud("l7policy", "/v2/lbaas/l7policies", {"position": 1}, wait=True)
    rules = "/v2/lbaas/l7policies/{l7policy}/rules"
    create("rule", rules, {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/parity"})
    pair.wait(at(rules + "/{rule}"), "rule")
    pair.send("GET", at(rules + "/{rule}"))
    pair.send("GET", at(rules + "?type=PATH"))
    pair.send("PUT", at(rules + "/{rule}"), {"rule": {"value": "/parity2"}})
    pair.wait(at(rules + "/{rule}"), "rule")
    pair.send("GET", at(LBS + "/{loadbalancer}/status"))
    for kind, path in (
        ("rule", rules + "/{rule}"),
        ("l7policy", "/v2/lbaas/l7policies/{l7policy}"),
        ("healthmonitor", "/v2/lbaas/healthmonitors/{healthmonitor}"),
        ("member", members + "/{member}"),
        ("pool", "/v2/lbaas/pools/{pool}"),
        ("listener", "/v2/lbaas/listeners/{listener}"),
    ):
        pair.send("DELETE", at(path))
        pair.wait(at(path), kind, "DELETED")
        pair.wait(at(LBS + "/{loadbalancer}"), "loadbalancer")
    pair.send("DELETE", at(LBS + "/{loadbalancer}"))
    pair.wait(at(LBS + "/{loadbalancer}"), "loadbalancer", "DELETED")

    # Flavors, availability zones and their profiles (admin objects, no provider work).
    create("flavorprofile", "/v2/lbaas/flavorprofiles", {"name": name, "provider_name": "noop", "flavor_data": "{}"})
    crud("flavorprofile", "/v2/lbaas/flavorprofiles", {"flavor_data": '{"x": 1}'}, wait=False)
    create("flavor", "/v2/lbaas/flavors", {"name": name, "flavor_profile_id": "{flavorprofile}"})
    crud("flavor", "/v2/lbaas/flavors", {"description": "d"}, wait=False)
    azp = {"name": name, "provider_name": "noop", "availability_zone_data": "{}"}
    create("availability_zone_profile", "/v2/lbaas/availabilityzoneprofiles", azp)
    crud("availability_zone_profile", "/v2/lbaas/availabilityzoneprofiles", {"name": name}, wait=False)
    zone = {"name": name, "availability_zone_profile_id": "{availability_zone_profile}"}
    create("availability_zone", "/v2/lbaas/availabilityzones", zone)
    pair.send("GET", at(f"/v2/lbaas/availabilityzones/{name}"))
    pair.send("PUT", at(f"/v2/lbaas/availabilityzones/{name}"), {"availability_zone": {"description": "d"}})
    for path in (
        f"/v2/lbaas/availabilityzones/{name}",
        "/v2/lbaas/availabilityzoneprofiles/{availability_zone_profile}",
        "/v2/lbaas/flavors/{flavor}",
        "/v2/lbaas/flavorprofiles/{flavorprofile}",
    ):
        pair.send("DELETE", at(path))
        pair.send("GET", at(path))

    # Quotas.
    quota = f"/v2/lbaas/quotas/{name}"
    pair.send("PUT", quota, {"quota": {"load_balancer": 5}})
    pair.send("GET", quota)
    pair.send("GET", f"/v2/lbaas/quotas?project_id={name}")
    pair.send("DELETE", quota)

    # The secret store: a secret, its payload, a container; Barbican's faults.
    payload = p12(issue(f"{name}.example.com"))
    headers = {"X-Project-Id": PROJECT}
    secret = {"name": name, "payload": payload.hex(), "payload_content_type": "text/plain"}
    bodies = pair.send("POST", "/v1/secrets", secret, headers=headers)
    for side in ids:
        ids[side]["secret"] = UUID.findall(bodies[side]["secret_ref"])[-1]
    pair.send("GET", at("/v1/secrets/{secret}"), headers=headers)
    pair.send("GET", at("/v1/secrets/{secret}/payload"), headers={**headers, "Accept": "text/plain"})
    pair.send("GET", f"/v1/secrets?name={name}", headers=headers)
    container = {"name": name, "type": "generic", "secret_refs": [{"name": "a", "secret_ref": "{secret_ref}"}]}
    refs = {side: {"secret_ref": bodies[side]["secret_ref"]} for side in ids}
    for side, rest in pair.sides.items():  # the containers' refs name each side's own secret: no common body
        url = rest.base_url + "/v1/containers"
        created = rest.session.post(url, json=_fill(container, refs[side]), headers=headers, timeout=30)
        assert created.status_code == 201, created.text
        ids[side]["container"] = UUID.findall(created.json()["container_ref"])[-1]
    pair.send("GET", at("/v1/containers/{container}"), headers=headers)
    pair.send("DELETE", at("/v1/secrets/{secret}"), headers=headers)  # in a container: still deletable (Barbican)
    pair.send("DELETE", at("/v1/containers/{container}"), headers=headers)
    pair.send("GET", at("/v1/containers/{container}"), headers=headers)


def _fill(body: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """``body`` with its ``{name}`` placeholders filled from one side's ids."""
    text = json.dumps(body)
    for key, value in ids.items():
        text = text.replace("{" + key + "}", value)
    return json.loads(text)


@pytest.fixture(scope="module")
def secure_pair(envoy_secure_mesh: Any, secure_rest: Rest) -> Pair:
    return Pair(Rest(envoy_secure_mesh.endpoint), secure_rest, over_http=True)


SECURE: list[tuple[str, dict[str, str]]] = [
    ("GET", {}),
    ("GET", {"X-Project-Id": PROJECT, "X-Roles": "member"}),
    ("GET", {"X-Project-Id": PROJECT, "X-Roles": "member", "X-Octavia-Mesh-Proxy-Secret": "wrong"}),
    ("GET", {"X-Project-Id": PROJECT, "X-Roles": "reader", "X-Octavia-Mesh-Proxy-Secret": PROXY_SECRET}),
    ("POST", {"X-Project-Id": PROJECT, "X-Roles": "reader", "X-Octavia-Mesh-Proxy-Secret": PROXY_SECRET}),
    ("GET", {"X-Roles": "admin", "X-Octavia-Mesh-Proxy-Secret": PROXY_SECRET}),
]


@pytest.mark.parametrize(("method", "headers"), SECURE)
def test_same_answers_in_trusted_headers_mode(secure_pair: Pair, method: str, headers: dict[str, str]) -> None:
    body = {"loadbalancer": {"vip_subnet_id": SUBNET}} if method == "POST" else None
    secure_pair.send(method, LBS + "?name=parity-nothing", body, headers=headers)
    secure_pair.send(method, "/v1/secrets?name=parity-nothing", {} if method == "POST" else None, headers=headers)
    secure_pair.send("GET", "/", headers=headers)
