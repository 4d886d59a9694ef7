"""Generated hostile requests over every resource and verb, as a hostile client sends them (issue 10).

A seeded generator (``OCTAVIA_MESH_FUZZ_SEED`` picks another seed; the failing request is printed) mutates
valid requests: values of every kind in every attribute (huge strings around the body limit, lone surrogates,
control characters, quotes, numbers beyond 64 bits, deep nesting, wrong types), malformed JSON and bytes that
are not UTF-8, hostile ids (``%ff``, overlong, ``..``) and query strings. Meanwhile other clients send valid
requests. Asserted: no 5xx and no 429, no request slower than a bound, every 4xx in Octavia's fault shape (or
Barbican's on ``/v1``, or Octavia's unknown-route bodies), and every concurrent valid request answered 200.

Bounded: at most ``COUNT`` requests and ``BUDGET_S`` seconds.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
import requests
from support import SUBNET, Rest, new_listener, new_pool

COUNT = 1500
BUDGET_S = 60.0
#: Slowest answer allowed for one request (a loaded 2-core CI machine; answers take ~20 ms when idle).
SLOW_S = 10.0
PROJECT = "fuzz0000000000000000000000000000"
SEED = int(os.environ.get("OCTAVIA_MESH_FUZZ_SEED", "20261207"))
FAULT_KEYS = {"faultcode", "faultstring", "debuginfo"}
PECAN_KEYS = {"code", "title", "description"}  # unknown routes and methods (Octavia), every /v1 fault (Barbican)

HOSTILE_STRINGS = [
    "",
    " ",
    "x" * 256,
    "x" * 5000,
    "x" * 60_000,
    "x" * 120_000,
    "\ud800",
    "a\udfffb",
    "\x00",
    "line\nbreak",
    "tab\there",
    "\x85\u2028",
    "'",
    '"',
    "\\",
    "#",
    "$HOME",
    "%[src]",
    "%ff",
    "../../etc/passwd",
    "é中•",
    "\U0001f600",
    "^/\\u0061",
    "(?a)^/x",
    "NOT-A-CIPHER",
    "000",
    "600",
    "204-200",
    "a=b",
    "a'b",
    "true",
    "null",
    "-1",
    "1e309",
]
HOSTILE_VALUES: list[Any] = [
    *HOSTILE_STRINGS,
    None,
    True,
    False,
    0,
    -1,
    2**31,
    2**63,
    10**30,
    -(10**30),
    1.5,
    float("inf"),
    [],
    {},
    ["x"],
    [None],
    {"a": "b"},
    [[[[[[]]]]]],
    ["x"] * 1000,
]
HOSTILE_IDS = [
    "%ff",
    "%ed%a0%80",
    "%00",
    "a" * 2000,
    "a" * 9000,
    "..",
    "%2e%2e",
    "00000000-0000-0000-0000-000000000000",
    "not-a-uuid",
    "%C3%A9",
    "'",
    "%22",
    "x.json",
]
HOSTILE_QUERIES = [
    "name=%ff",
    "limit=99999999999999999999",
    "limit=-1",
    "marker=%ff",
    "sort=name:sideways",
    "fields=%00",
    "tags=" + "&tags=".join(f"t{i}" for i in range(1000)),
    "protocol_port=1e9",
    "id=" + "x" * 40_000,
    "a=" + "%" * 10,
    "&&&==",
    "connection_limit=9223372036854775808",
]


def paths(ids: dict[str, str]) -> list[tuple[str, str, str | None]]:
    """(collection, item path, body wrapper) for every resource."""
    v2 = "/v2/lbaas"
    return [
        (f"{v2}/loadbalancers", f"{v2}/loadbalancers/{{id}}", "loadbalancer"),
        (f"{v2}/listeners", f"{v2}/listeners/{{id}}", "listener"),
        (f"{v2}/pools", f"{v2}/pools/{{id}}", "pool"),
        (f"{v2}/pools/{ids['pool']}/members", f"{v2}/pools/{ids['pool']}/members/{{id}}", "member"),
        (f"{v2}/healthmonitors", f"{v2}/healthmonitors/{{id}}", "healthmonitor"),
        (f"{v2}/l7policies", f"{v2}/l7policies/{{id}}", "l7policy"),
        (f"{v2}/l7policies/{ids['l7policy']}/rules", f"{v2}/l7policies/{ids['l7policy']}/rules/{{id}}", "rule"),
        (f"{v2}/quotas", f"{v2}/quotas/{{id}}", "quota"),
        (f"{v2}/providers", f"{v2}/providers/{{id}}/flavor_capabilities", None),
        (f"{v2}/flavors", f"{v2}/flavors/{{id}}", "flavor"),
        (f"{v2}/flavorprofiles", f"{v2}/flavorprofiles/{{id}}", "flavorprofile"),
        (f"{v2}/availabilityzones", f"{v2}/availabilityzones/{{id}}", "availability_zone"),
        (f"{v2}/availabilityzoneprofiles", f"{v2}/availabilityzoneprofiles/{{id}}", "availability_zone_profile"),
        ("/v2/octavia/amphorae", "/v2/octavia/amphorae/{id}", None),
        ("/v1/secrets", "/v1/secrets/{id}", None),
        ("/v1/containers", "/v1/containers/{id}", None),
        ("/v2.0/subnets", "/v2.0/subnets/{id}", None),
        ("/v2.0/networks", "/v2.0/networks/{id}", None),
        (f"{v2}/loadbalancers", f"{v2}/loadbalancers/{{id}}/status", "loadbalancer"),
        (f"{v2}/loadbalancers", f"{v2}/loadbalancers/{{id}}/stats", "loadbalancer"),
        (f"{v2}/loadbalancers", f"{v2}/loadbalancers/{{id}}/failover", "loadbalancer"),
        (f"{v2}/listeners", f"{v2}/listeners/{{id}}/stats", "listener"),
        ("/v2/octavia/amphorae", "/v2/octavia/amphorae/{id}/config", None),
        ("/v1/secrets", "/v1/secrets/{id}/payload", None),
        ("/v2", "/v2.0", None),
    ]


def valid_bodies(ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    """A valid create body's attributes per wrapper: the generator mutates one or more of them."""
    return {
        "loadbalancer": {"vip_subnet_id": SUBNET, "project_id": PROJECT, "name": "fz"},
        "listener": {"loadbalancer_id": ids["lb"], "protocol": "HTTP", "protocol_port": 9001, "tls_ciphers": "HIGH"},
        "pool": {
            "loadbalancer_id": ids["lb"],
            "protocol": "HTTP",
            "lb_algorithm": "ROUND_ROBIN",
            "session_persistence": {"type": "APP_COOKIE", "cookie_name": "c"},
        },
        "member": {"address": "192.0.2.7", "protocol_port": 80, "weight": 1},
        "healthmonitor": {
            "pool_id": ids["pool"],
            "type": "HTTP",
            "delay": 5,
            "timeout": 3,
            "max_retries": 2,
            "expected_codes": "200",
            "url_path": "/",
        },
        "l7policy": {"listener_id": ids["listener"], "action": "REDIRECT_TO_URL", "redirect_url": "http://a/"},
        "rule": {"type": "PATH", "compare_type": "REGEX", "value": "^/x"},
        "quota": {"load_balancer": 5, "listener": 5},
        "flavor": {"name": "f", "flavor_profile_id": ids["lb"]},
        "flavorprofile": {"name": "p", "provider_name": "noop", "flavor_data": "{}"},
        "availability_zone": {"name": "z", "availability_zone_profile_id": ids["lb"]},
        "availability_zone_profile": {"name": "zp", "provider_name": "noop", "availability_zone_data": "{}"},
    }


def mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """``value`` with one or more attributes replaced, added or removed."""
    if isinstance(value, dict) and value and depth < 3:
        out = dict(value)
        for _ in range(rng.randint(1, 2)):
            choice = rng.random()
            key = rng.choice(list(out)) if out else "x"
            if choice < 0.6:
                out[key] = rng.choice(HOSTILE_VALUES)
            elif choice < 0.75:
                out[rng.choice(HOSTILE_STRINGS[:12])] = 1  # unknown or hostile attribute names
            elif choice < 0.85:
                out.pop(key, None)
            else:
                out[key] = mutate(rng, out.get(key), depth + 1)
        return out
    return rng.choice(HOSTILE_VALUES)


def encode(rng: random.Random, body: Any) -> bytes:
    choice = rng.random()
    if choice < 0.05:
        return b"[" * rng.choice([40, 1000, 5000]) + b"]" * 10
    if choice < 0.10:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    if choice < 0.15:
        return json.dumps(body, allow_nan=True).encode()[: rng.randint(0, 40)]  # cut short
    text = json.dumps(body, allow_nan=True)
    if choice < 0.20:  # invalid UTF-8 inside a string
        return text.replace('"', '"\xff', 1).encode("latin-1", "replace")
    return text.encode("utf-8", "surrogatepass")


def one_request(rng: random.Random, ids: dict[str, str]) -> tuple[str, str, bytes | None]:
    collection, item, wrapper = rng.choice(paths(ids))
    method = rng.choice(["GET", "GET", "POST", "PUT", "DELETE"])
    roll = rng.random()
    if roll < 0.4:
        target_id = rng.choice(HOSTILE_IDS)
    elif wrapper is not None and wrapper in ids and roll < 0.7:
        target_id = ids[wrapper]
    else:
        target_id = None
    path = item.replace("{id}", target_id) if target_id is not None else collection
    if rng.random() < 0.3:
        path += "?" + rng.choice(HOSTILE_QUERIES)
    body = None
    if method in ("POST", "PUT"):
        attributes = valid_bodies(ids).get(wrapper or "", {"name": "x"})
        document = {wrapper: mutate(rng, attributes)} if wrapper else mutate(rng, attributes)
        if rng.random() < 0.1:
            document = mutate(rng, document)
        body = encode(rng, document)
    return method, path, body


def check_answer(method: str, path: str, response: requests.Response, elapsed: float) -> None:
    where = f"{method} {path[:200]}"
    # 501 is Octavia's own answer for what a provider does not support (ProviderUnsupportedOptionError): no crash.
    assert response.status_code < 500 or response.status_code == 501, f"{where}: {response.status_code} {response.text}"
    assert response.status_code != 429, f"{where}: 429 {response.text[:500]}"
    assert elapsed < SLOW_S, f"{where}: {elapsed:.1f} s"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict), f"{where}: {body!r}"
        keys = set(body)
        if path.startswith("/v1"):
            assert keys == PECAN_KEYS, f"{where}: not Barbican's fault: {body}"
        else:
            assert keys == FAULT_KEYS or (keys == PECAN_KEYS and response.status_code in (404, 405)), f"{where}: {body}"
        # At most 8 KB of message, escaped (\\u0000) to 6 bytes a character at worst: small, whatever was sent.
        assert len(response.content) < 50_000, f"{where}: a {len(response.content)}-byte fault"
        for internal in ("x-octavia-path", "x-envoy", ":authority", "DecodeError", "Traceback"):
            assert internal not in response.text, f"{where}: {response.text[:300]}"


@pytest.fixture(scope="module")
def ids(rest: Rest) -> dict[str, str]:
    """Real objects for the generated requests to aim at (in a project of their own)."""
    lb = rest.create_lb(name="fuzz", project_id=PROJECT)
    listener = new_listener(rest, lb["id"], 9000)
    pool = new_pool(rest, lb["id"], listener_id=listener["id"])
    member = rest.ok(
        "POST", f"/v2/lbaas/pools/{pool['id']}/members", {"member": {"address": "192.0.2.1", "protocol_port": 80}}
    )
    rest.wait_lb_active(lb["id"])
    body = {"l7policy": {"listener_id": listener["id"], "action": "REJECT"}}
    policy = rest.ok("POST", "/v2/lbaas/l7policies", body)["l7policy"]
    rest.wait_lb_active(lb["id"])
    rule = rest.ok(
        "POST",
        f"/v2/lbaas/l7policies/{policy['id']}/rules",
        {"rule": {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/x"}},
    )
    rest.wait_lb_active(lb["id"])
    return {
        "lb": lb["id"],
        "loadbalancer": lb["id"],
        "listener": listener["id"],
        "pool": pool["id"],
        "member": member["member"]["id"],
        "l7policy": policy["id"],
        "rule": rule["rule"]["id"],
        "quota": PROJECT,
    }


@pytest.mark.timeout(300)  # the mesh's start, the objects, then at most BUDGET_S of requests
def test_generated_requests(rest: Rest, ids: dict[str, str]) -> None:
    rng = random.Random(SEED)
    # The valid clients read a load balancer the generator never aims at (it may delete its own).
    bystander = rest.create_lb(name="fuzz-bystander")["id"]
    stop = threading.Event()
    valid: Counter[int] = Counter()
    slowest = [0.0]

    def valid_client() -> None:
        session = requests.Session()
        while not stop.is_set():
            started = time.monotonic()
            status = session.get(f"{rest.base_url}/v2/lbaas/loadbalancers/{bystander}", timeout=30).status_code
            valid[status] += 1
            slowest[0] = max(slowest[0], time.monotonic() - started)

    clients = [threading.Thread(target=valid_client, daemon=True) for _ in range(2)]
    for client in clients:
        client.start()
    session = requests.Session()
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + BUDGET_S
    sent = 0
    try:
        while sent < COUNT and time.monotonic() < deadline:
            method, path, body = one_request(rng, ids)
            headers = {"Content-Type": "application/json", "X-Project-Id": PROJECT}
            started = time.monotonic()
            response = session.request(method, rest.base_url + path, data=body, headers=headers, timeout=30)
            check_answer(method, path, response, time.monotonic() - started)
            statuses[response.status_code] += 1
            sent += 1
    finally:
        stop.set()
        for client in clients:
            client.join(30)
    print(f"seed {SEED}: {sent} generated requests {dict(statuses)}; valid clients {dict(valid)}")
    assert sent >= 300, f"only {sent} requests in {BUDGET_S} s"
    assert set(valid) == {200} and valid[200] > 50, valid
    assert slowest[0] < SLOW_S
