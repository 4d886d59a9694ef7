"""L7 policies and rules through the REST edge: CRUD, positions, actions, rule validation, limits, RBAC."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from support import PROJECT, Rest, assert_fault, assert_unauthenticated, mesh_engine, paused

LBS = "/v2/lbaas/loadbalancers"
LISTENERS = "/v2/lbaas/listeners"
POOLS = "/v2/lbaas/pools"
L7P = "/v2/lbaas/l7policies"
QUOTAS = "/v2/lbaas/quotas"
NOID = "00000000-0000-0000-0000-00000000abcd"
FORBIDDEN = "Policy does not allow this request to be performed."
POLICY_KEYS = [
    "id",
    "name",
    "description",
    "provisioning_status",
    "operating_status",
    "admin_state_up",
    "project_id",
    "action",
    "listener_id",
    "redirect_pool_id",
    "redirect_url",
    "redirect_prefix",
    "position",
    "rules",
    "created_at",
    "updated_at",
    "tags",
    "redirect_http_code",
    "tenant_id",
]
RULE_KEYS = [
    "id",
    "type",
    "compare_type",
    "key",
    "value",
    "invert",
    "provisioning_status",
    "operating_status",
    "created_at",
    "updated_at",
    "project_id",
    "admin_state_up",
    "tags",
    "tenant_id",
]


def path_rule(**fields: Any) -> dict[str, Any]:
    return {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/api", **fields}


class Env:
    """A load balancer with an HTTP and a TCP listener, HTTP and TCP pools, and a pool on another load balancer."""

    def __init__(self, rest: Rest) -> None:
        self.rest = rest
        self.lb = rest.create_lb(name="l7-module")["id"]
        self.listener = self._make(LISTENERS, "listener", protocol="HTTP", protocol_port=80, loadbalancer_id=self.lb)
        self.tcp_listener = self._make(LISTENERS, "listener", protocol="TCP", protocol_port=81, loadbalancer_id=self.lb)
        self.pool = self._make(POOLS, "pool", protocol="HTTP", lb_algorithm="ROUND_ROBIN", loadbalancer_id=self.lb)
        self.tcp_pool = self._make(POOLS, "pool", protocol="TCP", lb_algorithm="ROUND_ROBIN", loadbalancer_id=self.lb)
        self.other_lb = rest.create_lb(name="l7-other")["id"]
        self.other_pool = self._make(
            POOLS, "pool", protocol="HTTP", lb_algorithm="ROUND_ROBIN", loadbalancer_id=self.other_lb
        )

    def _make(self, collection: str, key: str, **body: Any) -> str:
        created = self.rest.ok("POST", collection, {key: body})[key]
        self.rest.wait_lb_active(body["loadbalancer_id"])
        return created["id"]

    def policy(self, listener: str | None = None, **fields: Any) -> dict[str, Any]:
        """Create a policy (REJECT by default) and wait until the load balancer settles."""
        body = {"listener_id": listener or self.listener, "action": "REJECT", **fields}
        created = self.rest.ok("POST", L7P, {"l7policy": body})["l7policy"]
        self.rest.wait_lb_active(self.lb)
        return created

    def rule(self, policy_id: str, **fields: Any) -> dict[str, Any]:
        created = self.rest.ok("POST", f"{L7P}/{policy_id}/rules", {"rule": path_rule(**fields)})["rule"]
        self.rest.wait_lb_active(self.lb)
        return created

    def delete(self, policy_id: str) -> None:
        assert self.rest.delete(f"{L7P}/{policy_id}").status_code == 204
        self.rest.wait_lb_active(self.lb)

    def positions(self) -> dict[str, int]:
        listing = self.rest.ok("GET", f"{L7P}?listener_id={self.listener}")["l7policies"]
        return {p["name"]: p["position"] for p in listing}

    def count(self) -> int:
        return len(self.rest.ok("GET", f"{L7P}?listener_id={self.listener}")["l7policies"])

    def clear(self) -> None:
        for policy in self.rest.ok("GET", f"{L7P}?listener_id={self.listener}")["l7policies"]:
            self.delete(policy["id"])


@pytest.fixture(scope="module")
def env(rest: Rest) -> Env:
    return Env(rest)


@pytest.fixture
def clean(env: Env) -> Any:
    env.clear()
    yield env
    env.clear()


# --- policies -------------------------------------------------------------------


def test_policy_lifecycle(mesh: Any, rest: Rest, clean: Env) -> None:
    env = clean
    body = {
        "name": "pol1",
        "description": "d",
        "listener_id": env.listener,
        "action": "REDIRECT_TO_URL",
        "redirect_url": "https://example.com/new?a=1",
        "tags": ["t1"],
    }
    with paused(mesh):
        created = rest.ok("POST", L7P, {"l7policy": body})["l7policy"]
        assert list(created) == POLICY_KEYS
        assert created["provisioning_status"] == "PENDING_CREATE" and created["operating_status"] == "OFFLINE"
        assert created["updated_at"] is None and created["position"] == 1 and created["rules"] == []
        assert created["redirect_http_code"] == 302 and created["tags"] == ["t1"]
        assert created["project_id"] == created["tenant_id"] == PROJECT
        listener = rest.ok("GET", f"{LISTENERS}/{env.listener}")["listener"]
        assert listener["provisioning_status"] == "PENDING_UPDATE"
        assert listener["l7policies"] == [{"id": created["id"]}]
        immutable = f"Load Balancer {env.lb} is immutable and cannot be updated."
        assert_fault(rest.post(L7P, {"l7policy": {**body, "name": "x"}}), 409, immutable)
        assert_fault(rest.put(f"{L7P}/{created['id']}", {"l7policy": {"name": "x"}}), 409, immutable)
        assert_fault(rest.delete(f"{L7P}/{created['id']}"), 409, immutable)
    url = f"{L7P}/{created['id']}"
    shown = rest.wait_status(url, "l7policy")
    assert shown["operating_status"] == "ONLINE" and shown["redirect_url"] == body["redirect_url"]
    assert rest.ok("GET", f"{LISTENERS}/{env.listener}")["listener"]["provisioning_status"] == "ACTIVE"
    assert rest.ok("GET", f"{url}?fields=id&fields=position") == {"l7policy": {"id": created["id"], "position": 1}}
    with paused(mesh):
        updated = rest.ok("PUT", url, {"l7policy": {"name": "new", "description": None, "redirect_http_code": 308}})
        updated = updated["l7policy"]
        assert updated["provisioning_status"] == "PENDING_UPDATE" and updated["name"] == "new"
        assert updated["description"] == "" and updated["redirect_http_code"] == 308
        assert updated["updated_at"] is not None
    rest.wait_lb_active(env.lb)
    assert rest.delete(url).status_code == 204
    rest.wait_status(url, "l7policy", "DELETED")
    assert_fault(rest.get(url), 404, f"L7 Policy {created['id']} not found.")
    assert_fault(rest.get(f"{L7P}/notauuid"), 404, "L7 Policy notauuid not found.")
    assert_fault(rest.put(f"{L7P}/{NOID}", {"l7policy": {"name": "x"}}), 404, f"L7 Policy {NOID} not found.")
    assert_fault(rest.delete(f"{L7P}/{NOID}"), 404, f"L7 Policy {NOID} not found.")


def test_positions(mesh: Any, rest: Rest, clean: Env) -> None:
    env = clean
    ids = {name: env.policy(name=name)["id"] for name in "ABC"}
    assert env.positions() == {"A": 1, "B": 2, "C": 3}
    ids["D"] = env.policy(name="D", position=1)["id"]
    assert env.positions() == {"A": 2, "B": 3, "C": 4, "D": 1}
    ids["E"] = env.policy(name="E", position=3)["id"]
    assert env.positions() == {"A": 2, "B": 4, "C": 5, "D": 1, "E": 3}
    assert env.policy(name="F", position=2147483647)["position"] == 6
    env.delete(env.policy(name="G", position=99)["id"])
    with paused(mesh):  # while B is being deleted, everyone keeps their number
        assert rest.delete(f"{L7P}/{ids['B']}").status_code == 204
        assert env.positions() == {"A": 2, "B": 4, "C": 5, "D": 1, "E": 3, "F": 6}
    rest.wait_status(f"{L7P}/{ids['B']}", "l7policy", "DELETED")
    assert env.positions() == {"A": 2, "C": 4, "D": 1, "E": 3, "F": 5}
    listing = rest.ok("GET", f"{L7P}?listener_id={env.listener}&sort=position:asc")["l7policies"]
    assert [p["name"] for p in listing] == ["D", "A", "E", "C", "F"]
    listener = rest.ok("GET", f"{LISTENERS}/{env.listener}")["listener"]
    assert listener["l7policies"] == [{"id": ids[n]} for n in "DAEC"] + [{"id": listing[-1]["id"]}]
    assert [p["name"] for p in rest.ok("GET", f"{L7P}?position=3&listener_id={env.listener}")["l7policies"]] == ["E"]
    moved = rest.ok("PUT", f"{L7P}/{ids['C']}", {"l7policy": {"position": 1}})["l7policy"]
    assert moved["position"] == 1
    rest.wait_lb_active(env.lb)
    assert env.positions() == {"A": 3, "C": 1, "D": 2, "E": 4, "F": 5}
    assert rest.ok("PUT", f"{L7P}/{ids['C']}", {"l7policy": {"position": 99}})["l7policy"]["position"] == 5
    rest.wait_lb_active(env.lb)
    assert env.positions() == {"A": 2, "C": 5, "D": 1, "E": 3, "F": 4}
    assert rest.ok("PUT", f"{L7P}/{ids['A']}", {"l7policy": {"position": None}})["l7policy"]["position"] == 2
    rest.wait_lb_active(env.lb)
    with paused(mesh):  # D, made after A, keeps the first place until it is gone
        assert rest.delete(f"{L7P}/{ids['D']}").status_code == 204
        assert env.positions() == {"A": 2, "C": 5, "D": 1, "E": 3, "F": 4}
    rest.wait_status(f"{L7P}/{ids['D']}", "l7policy", "DELETED")
    assert env.positions() == {"A": 1, "C": 4, "E": 2, "F": 3}
    assert [p["name"] for p in rest.ok("GET", f"{L7P}?position=1&listener_id={env.listener}")["l7policies"]] == ["A"]


def test_create_action_variants(rest: Rest, clean: Env) -> None:
    env = clean

    def redirects(**fields: Any) -> tuple[Any, ...]:
        p = env.policy(**fields)
        return p["action"], p["redirect_url"], p["redirect_prefix"], p["redirect_pool_id"], p["redirect_http_code"]

    url, prefix = "http://a.example.com", "https://b.example.com"
    assert redirects(redirect_http_code=301) == ("REJECT", None, None, None, 301)
    assert redirects(action="REDIRECT_TO_POOL", redirect_pool_id=env.pool, redirect_http_code=301) == (
        "REDIRECT_TO_POOL",
        None,
        None,
        env.pool,
        None,
    )
    assert redirects(action="REDIRECT_TO_URL", redirect_url=url, redirect_pool_id=env.pool) == (
        "REDIRECT_TO_URL",
        url,
        None,
        None,
        302,
    )
    assert redirects(action="REDIRECT_PREFIX", redirect_url=url, redirect_prefix=prefix)[0] == "REDIRECT_TO_URL"
    assert redirects(action="REDIRECT_TO_POOL", redirect_pool_id=env.pool, redirect_url=url)[:2] == (
        "REDIRECT_TO_POOL",
        None,
    )
    assert redirects(redirect_pool_id=env.pool) == ("REJECT", None, None, None, None)
    assert redirects(redirect_prefix=prefix) == ("REDIRECT_PREFIX", None, prefix, None, 302)
    assert redirects(action="REDIRECT_TO_URL", redirect_url=url, redirect_http_code="307")[-1] == 307
    v6 = "http://[::1]:8080/x/y?q=%20&r=(1)"
    assert redirects(action="REDIRECT_TO_URL", redirect_url=v6) == ("REDIRECT_TO_URL", v6, None, None, 302)
    extra = env.policy(position="3", admin_state_up=None, project_id="ignored", name=None)
    assert extra["admin_state_up"] is False and extra["project_id"] == PROJECT and extra["name"] == ""


def test_update_action_changes(rest: Rest, clean: Env) -> None:
    env = clean
    policy = env.policy(action="REDIRECT_TO_URL", redirect_url="http://a.com", redirect_http_code=301)
    url = f"{L7P}/{policy['id']}"

    def put(**fields: Any) -> tuple[Any, ...]:
        p = rest.ok("PUT", url, {"l7policy": fields})["l7policy"]
        rest.wait_lb_active(env.lb)
        return p["action"], p["redirect_url"], p["redirect_prefix"], p["redirect_pool_id"], p["redirect_http_code"]

    assert put(action="REDIRECT_PREFIX", redirect_prefix="http://p.com") == (
        "REDIRECT_PREFIX",
        None,
        "http://p.com",
        None,
        302,
    )
    assert_fault(
        rest.put(url, {"l7policy": {"action": "REDIRECT_TO_URL"}}),
        400,
        "Invalid L7 Policy arguments: redirect_url must not be None",
    )
    assert put(redirect_url="http://c.com") == ("REDIRECT_TO_URL", "http://c.com", None, None, 302)
    assert put(action="REDIRECT_TO_POOL", redirect_pool_id=env.pool) == ("REDIRECT_TO_POOL", None, None, env.pool, None)
    assert put(redirect_url="http://d.com") == ("REDIRECT_TO_URL", "http://d.com", None, None, 302)
    assert put(action="REJECT") == ("REJECT", None, None, None, None)
    assert put(redirect_http_code=303) == ("REJECT", None, None, None, 303)
    assert put(redirect_prefix="http://e.com") == ("REDIRECT_PREFIX", None, "http://e.com", None, 302)
    assert put(redirect_http_code=None) == ("REDIRECT_PREFIX", None, "http://e.com", None, None)
    assert put(redirect_pool_id=env.pool) == ("REDIRECT_TO_POOL", None, None, env.pool, None)
    faults = [
        ({}, "Invalid L7 Policy arguments: Invalid update options"),
        ({"action": None}, "Invalid L7 Policy action specified: None"),
        ({"listener_id": env.listener}, "Unknown attribute for argument l7policy_.l7policy: listener_id"),
        ({"project_id": PROJECT}, "Unknown attribute for argument l7policy_.l7policy: project_id"),
        ({"rules": []}, "Unknown attribute for argument l7policy_.l7policy: rules"),
        (
            {"redirect_pool_id": env.pool, "redirect_url": "http://a.com"},
            "Invalid L7 Policy arguments: Cannot specify redirect_pool_id and redirect_url or redirect_prefix at "
            "the same time",
        ),
        (
            {"redirect_pool_id": env.tcp_pool},
            "Validation failure: The pool protocol 'TCP' is invalid while the listener protocol is 'HTTP'.",
        ),
        ({"redirect_pool_id": env.other_pool}, f"Pool {env.other_pool} not found."),
        # Octavia would leave a REDIRECT_TO_POOL policy without a pool; we refuse.
        ({"redirect_pool_id": None}, "Invalid L7 Policy arguments: redirect_pool_id or redirect_pool must not be None"),
        (
            {"position": 0},
            "Invalid input for field/attribute position. Value: '0'. Value should be greater or equal to 1",
        ),
        (
            {"redirect_url": "http://a.com/\nx"},
            "Invalid input for field/attribute redirect_url. Value: "
            "'http://a.com/\nx'. Value must be a valid URL string",
        ),
    ]
    before = rest.ok("GET", url)["l7policy"]
    for fields, message in faults:
        status = 404 if message.startswith("Pool ") else 400
        assert_fault(rest.put(url, {"l7policy": fields}), status, message)
    assert rest.ok("GET", url)["l7policy"] == before  # nothing written
    assert put(action="REJECT") == ("REJECT", None, None, None, None)
    updated = rest.ok("PUT", url, {"l7policy": {"admin_state_up": None, "tags": ["a", "b"], "name": "n"}})
    assert updated["l7policy"]["admin_state_up"] is False and updated["l7policy"]["tags"] == ["a", "b"]
    rest.wait_lb_active(env.lb)
    assert rest.ok("PUT", url, {"l7policy": {"tags": None}})["l7policy"]["tags"] == []
    rest.wait_lb_active(env.lb)


def _body_repr(fields: dict[str, Any]) -> str:
    return str({"l7policy": fields})


CREATE_FAULTS = [
    ({"action": "REDIRECT_TO_URL"}, "Invalid L7 Policy arguments: redirect_url must not be None"),
    ({"action": "REDIRECT_PREFIX"}, "Invalid L7 Policy arguments: redirect_prefix must not be None"),
    (
        {"action": "REDIRECT_PREFIX", "redirect_url": "http://a.com"},
        "Invalid L7 Policy arguments: redirect_prefix must not be None",
    ),
    ({"action": "REDIRECT_TO_POOL"}, "Invalid L7 Policy arguments: redirect_pool_id or redirect_pool must not be None"),
    ({"action": None}, "Invalid L7 Policy action specified: None"),
    (
        {"action": "BOGUS"},
        "Invalid input for field/attribute action. Value: 'BOGUS'. Value should be one of: "
        "REDIRECT_PREFIX, REDIRECT_TO_URL, REJECT, REDIRECT_TO_POOL",
    ),
    (
        {"action": 5},
        "Invalid input for field/attribute action. Value: '5'. Value should be one of: "
        "REDIRECT_PREFIX, REDIRECT_TO_URL, REJECT, REDIRECT_TO_POOL",
    ),
    (
        {"action": "REDIRECT_TO_URL", "redirect_url": "not a url"},
        "Invalid input for field/attribute redirect_url. Value: 'not a url'. Value must be a valid URL string",
    ),
    (
        {"action": "REDIRECT_TO_URL", "redirect_url": "example.com/x"},
        "Invalid input for field/attribute redirect_url. Value: 'example.com/x'. Value must be a valid URL string",
    ),
    (
        {"action": "REDIRECT_TO_URL", "redirect_url": "ftp://a.com"},
        "Invalid input for field/attribute redirect_url. Value: 'ftp://a.com'. Value must be a valid URL string",
    ),
    (
        {"action": "REDIRECT_TO_URL", "redirect_url": 5},
        "Invalid input for field/attribute redirect_url. Value: '5'. expected string or bytes-like object, got 'int'",
    ),
    (
        {"action": "REDIRECT_PREFIX", "redirect_prefix": "/foo"},
        "Invalid input for field/attribute redirect_prefix. Value: '/foo'. Value must be a valid URL string",
    ),
    (
        {"action": "REDIRECT_PREFIX", "redirect_prefix": "bad prefix"},
        "Invalid input for field/attribute redirect_prefix. Value: 'bad prefix'. Value must be a valid URL string",
    ),
    (
        {"action": "REDIRECT_TO_URL", "redirect_url": "http://a.com", "redirect_http_code": 304},
        "Invalid input for "
        "field/attribute redirect_http_code. Value: '304'. Value should be one of: 301, 302, 303, 307, 308",
    ),
    (
        {"action": "REDIRECT_TO_URL", "redirect_url": "http://a.com", "redirect_http_code": True},
        "Invalid input for "
        "field/attribute redirect_http_code. Value: '1'. Value should be one of: 301, 302, 303, 307, 308",
    ),
    ({"position": 0}, "Invalid input for field/attribute position. Value: '0'. Value should be greater or equal to 1"),
    (
        {"position": -1},
        "Invalid input for field/attribute position. Value: '-1'. Value should be greater or equal to 1",
    ),
    (
        {"position": 2147483648},
        "Invalid input for field/attribute position. Value: '2147483648'. Value should be lower or equal to 2147483647",
    ),
    ({"name": 5}, "Invalid input for field/attribute name. Value: '5'. Value should be string"),
    (
        {"name": "x" * 256},
        f"Invalid input for field/attribute name. Value: '{'x' * 256}'. Value should have a "
        "maximum character requirement of 255",
    ),
    ({"description": {}}, "Invalid input for field/attribute description. Value: '{}'. Value should be string"),
    ({"tags": [5]}, "Invalid input for field/attribute tags. Value: '[5]'. Value should be string"),
    ({"listener_id": "x"}, "Invalid input for field/attribute listener_id. Value: 'x'. Value should be UUID format"),
    (
        {"redirect_pool_id": 5},
        "Invalid input for field/attribute redirect_pool_id. Value: '5'. Value should be UUID format",
    ),
    ({"foo": 1}, "Unknown attribute for argument l7policy_.l7policy: foo"),
    ({"redirect_pool": {"protocol": "HTTP"}}, "Unknown attribute for argument l7policy_.l7policy: redirect_pool"),
    (
        {"rules": [{"type": "PATH", "compare_type": "EQUAL_TO", "value": "/", "foo": 1}]},
        "Unknown attribute for argument l7policy_.l7policy.rules: foo",
    ),
    (
        {"rules": [{"compare_type": "EQUAL_TO", "value": "x"}]},
        "Invalid input for field/attribute type. Value: 'None'. Mandatory field missing.",
    ),
    (
        {"rules": [{"type": "HEADER", "compare_type": "EQUAL_TO", "value": "x"}]},
        "Error parsing L7Rule: Invalid L7 Rule: L7 rule type requires a key",
    ),
    (
        {"rules": [{"type": "HEADER", "key": "X\nA", "compare_type": "EQUAL_TO", "value": "x"}]},
        "Error parsing "
        "L7Rule: Invalid input for field/attribute key. Value: 'X\nA'. Value should match the pattern ^[^\\r\\n]*$",
    ),
    (
        {"rules": [{"type": "PATH", "compare_type": "REGEX", "value": "a\nb"}]},
        "Error parsing L7Rule: Invalid input "
        "for field/attribute value. Value: 'a\nb'. Value should match the pattern ^[^\\r\\n]*$",
    ),
    # beyond Octavia: characters that would break or comment out the HAProxy line
    (
        {"action": "REDIRECT_TO_URL", "redirect_url": 'http://a.com/a"b'},
        "Invalid input for field/attribute redirect_url. Value: 'http://a.com/a\"b'. Value must be a valid URL string",
    ),
    (
        {"action": "REDIRECT_TO_URL", "redirect_url": "http://a.com/a#b"},
        "Invalid input for field/attribute redirect_url. Value: 'http://a.com/a#b'. Value must be a valid URL string",
    ),
    (
        {"action": "REDIRECT_PREFIX", "redirect_prefix": "http://a.com/'x"},
        "Invalid input for field/attribute redirect_prefix. Value: 'http://a.com/'x'. Value must be a valid URL string",
    ),
    (
        {"action": "REDIRECT_TO_URL", "redirect_url": "http://a.com/a\tb"},
        "Invalid input for field/attribute redirect_url. Value: 'http://a.com/a\tb'. Value must be a valid URL string",
    ),
]


@pytest.mark.parametrize(("fields", "message"), CREATE_FAULTS)
def test_create_faults(rest: Rest, env: Env, fields: dict[str, Any], message: str) -> None:
    before = env.count()
    body = {"listener_id": env.listener, "action": "REJECT", **fields}
    assert_fault(rest.post(L7P, {"l7policy": body}), 400, message)
    assert env.count() == before


def test_body_level_faults(rest: Rest, env: Env) -> None:
    cases = [
        ({"admin_state_up": "x"}, "Value not an unambiguous boolean: x"),
        ({"admin_state_up": "True"}, "Value not an unambiguous boolean: True"),
        ({"position": "abc"}, "invalid literal for int() with base 10: 'abc'"),
        ({"position": [1]}, "int() argument must be a string, a bytes-like object or a real number, not 'list'"),
        ({"tags": "x"}, "Value not a valid list: x"),
        ({"rules": {"a": 1}}, "Value not a valid list: {'a': 1}"),
        ({"rules": [path_rule(invert="x")]}, "Value not an unambiguous boolean: x"),
    ]
    for fields, detail in cases:
        body = {"listener_id": env.listener, "action": "REJECT", **fields}
        message = f"Invalid input for field/attribute l7policy_. Value: '{_body_repr(body)}'. {detail}"
        assert_fault(rest.post(L7P, {"l7policy": body}), 400, message)
    missing = "Invalid input for field/attribute {}. Value: 'None'. Mandatory field missing."
    assert_fault(rest.post(L7P, {"l7policy": {"listener_id": env.listener}}), 400, missing.format("action"))
    assert_fault(rest.post(L7P, {"l7policy": {"action": "REJECT"}}), 400, missing.format("listener_id"))
    assert_fault(rest.post(L7P, raw=b"{bad"), 400, "Request is not in valid JSON format")
    assert_fault(rest.post(L7P, {"policy": {}}), 400, "Unknown attribute for argument l7policy_: policy")
    assert_fault(rest.post(L7P), 400, 'Missing argument: "l7policy_"')
    assert_fault(rest.post(L7P, {"l7policy": {"listener_id": env.listener, "rules": ["x"]}}), 400)
    for value in ("5", 1.5, True, " 2 "):  # WSME's int() conversion accepts these
        created = env.policy(position=value)
        assert isinstance(created["position"], int)
        env.delete(created["id"])


def test_relations(rest: Rest, env: Env) -> None:
    before = env.count()

    def post(**fields: Any) -> Any:
        return rest.post(L7P, {"l7policy": {"listener_id": env.listener, "action": "REJECT", **fields}})

    assert_fault(post(listener_id=NOID), 404, f"Listener {NOID} not found.")
    assert_fault(post(listener_id=None), 404, "Listener None not found.")
    pool = {"action": "REDIRECT_TO_POOL"}
    assert_fault(post(**pool, redirect_pool_id=NOID), 404, f"Pool {NOID} not found.")
    assert_fault(post(**pool, redirect_pool_id=env.other_pool), 404, f"Pool {env.other_pool} not found.")
    assert_fault(
        post(**pool, redirect_pool_id=env.tcp_pool),
        400,
        "Validation failure: The pool protocol 'TCP' is invalid while the listener protocol is 'HTTP'.",
    )
    assert_fault(
        post(listener_id=env.tcp_listener),
        501,
        "Provider 'noop' does not support a requested option: TCP protocol listeners do not support L7 policies",
    )
    assert env.count() == before
    assert rest.ok("GET", f"{L7P}?listener_id={env.tcp_listener}")["l7policies"] == []
    # a pool used by a policy cannot go away
    policy = env.policy(action="REDIRECT_TO_POOL", redirect_pool_id=env.pool, rules=[path_rule()])
    assert_fault(rest.delete(f"{POOLS}/{env.pool}"), 409, f"Pool {env.pool} is in use by L7 policy {policy['id']}")
    env.delete(policy["id"])


def test_list_filters_pagination(rest: Rest, clean: Env) -> None:
    env = clean
    made = [env.policy(name=f"page-{i}", tags=["l7page"])["id"] for i in range(3)]
    first = rest.ok("GET", f"{L7P}?limit=2&tags=l7page")
    assert [p["id"] for p in first["l7policies"]] == made[:2]
    (link,) = first["l7policies_links"]
    assert link["rel"] == "next" and link["href"].startswith(rest.base_url + L7P + "?")
    second = rest.session.get(link["href"], timeout=10).json()
    assert [p["id"] for p in second["l7policies"]] == made[2:]
    assert [x["rel"] for x in second["l7policies_links"]] == ["previous"]
    only = rest.ok("GET", f"{L7P}?tags=l7page&fields=id&fields=position")["l7policies"]
    assert [set(p) for p in only] == [{"id", "position"}] * 3
    assert [p["id"] for p in rest.ok("GET", f"{L7P}?name=page-1")["l7policies"]] == [made[1]]
    assert len(rest.ok("GET", f"{L7P}?action=REJECT&listener_id={env.listener}")["l7policies"]) == 3
    assert rest.ok("GET", f"{L7P}?action=REDIRECT_TO_URL&listener_id={env.listener}")["l7policies"] == []
    desc = rest.ok("GET", f"{L7P}?tags=l7page&sort=position:desc")["l7policies"]
    assert [p["id"] for p in desc] == made[::-1]
    assert_fault(rest.get(f"{L7P}?bogus=1"), 400)
    assert_fault(rest.get(f"{L7P}?sort=bogus:asc"), 400, "Supplied sort key 'bogus' is not valid.")
    assert_fault(rest.get(f"{L7P}?position=x"), 400)


def test_error_state(mesh: Any, rest: Rest, clean: Env) -> None:
    env = clean
    policy = env.policy(name="broken")
    engine = mesh_engine(mesh)
    with engine.begin() as conn:
        conn.execute(text("UPDATE l7policy SET provisioning_status = 'ERROR' WHERE id = :i"), {"i": policy["id"]})
    engine.dispose()
    url = f"{L7P}/{policy['id']}"
    # ERROR is never a dead end (issue 10): the policy can be changed again, and rules added under it.
    assert rest.ok("PUT", url, {"l7policy": {"name": "fixed"}})["l7policy"]["provisioning_status"] == "PENDING_UPDATE"
    assert rest.wait_status(url, "l7policy")["name"] == "fixed"
    with engine.begin() as conn:
        conn.execute(text("UPDATE l7policy SET provisioning_status = 'ERROR' WHERE id = :i"), {"i": policy["id"]})
    engine.dispose()
    rest.ok("POST", f"{url}/rules", {"rule": path_rule()})
    assert rest.wait_status(url, "l7policy")["provisioning_status"] == "ACTIVE"
    with engine.begin() as conn:
        conn.execute(text("UPDATE l7policy SET provisioning_status = 'ERROR' WHERE id = :i"), {"i": policy["id"]})
    engine.dispose()
    assert rest.delete(url).status_code == 204
    rest.wait_status(url, "l7policy", "DELETED")


# --- rules ------------------------------------------------------------------------


def test_rule_lifecycle(mesh: Any, rest: Rest, clean: Env) -> None:
    env = clean
    policy = env.policy(name="with-rules")
    rules = f"{L7P}/{policy['id']}/rules"
    with paused(mesh):
        created = rest.ok("POST", rules, {"rule": path_rule(tags=["r"], invert=True)})["rule"]
        assert list(created) == RULE_KEYS
        assert created["provisioning_status"] == "PENDING_CREATE" and created["operating_status"] == "OFFLINE"
        assert created["key"] is None and created["invert"] is True and created["tags"] == ["r"]
        assert created["project_id"] == created["tenant_id"] == PROJECT and created["updated_at"] is None
        shown = rest.ok("GET", f"{L7P}/{policy['id']}")["l7policy"]
        assert shown["provisioning_status"] == "PENDING_UPDATE" and shown["rules"] == [{"id": created["id"]}]
        listener = rest.ok("GET", f"{LISTENERS}/{env.listener}")["listener"]
        assert listener["provisioning_status"] == "PENDING_UPDATE"
        immutable = f"L7Policy {policy['id']} is immutable and cannot be updated."
        assert_fault(rest.post(rules, {"rule": path_rule()}), 409, immutable)
        assert_fault(rest.put(f"{rules}/{created['id']}", {"rule": {"value": "/x"}}), 409, immutable)
        assert_fault(rest.delete(f"{rules}/{created['id']}"), 409, immutable)
    url = f"{rules}/{created['id']}"
    assert rest.wait_status(url, "rule")["operating_status"] == "ONLINE"
    assert rest.ok("GET", f"{L7P}/{policy['id']}")["l7policy"]["provisioning_status"] == "ACTIVE"
    with paused(mesh):
        updated = rest.ok("PUT", url, {"rule": {"type": "HEADER", "key": "X-B", "value": "v2"}})["rule"]
        assert updated["provisioning_status"] == "PENDING_UPDATE"
        assert (updated["type"], updated["key"], updated["value"]) == ("HEADER", "X-B", "v2")
        assert rest.ok("GET", f"{L7P}/{policy['id']}")["l7policy"]["provisioning_status"] == "PENDING_UPDATE"
    rest.wait_lb_active(env.lb)
    cleared = rest.ok("PUT", url, {"rule": {"type": "PATH", "value": "/p", "invert": None}})["rule"]
    assert (cleared["type"], cleared["key"], cleared["invert"]) == ("PATH", None, False)
    rest.wait_lb_active(env.lb)
    assert rest.ok("PUT", url, {"rule": {}})["rule"]["provisioning_status"] == "PENDING_UPDATE"
    rest.wait_lb_active(env.lb)
    assert rest.ok("PUT", url, {"rule": {"admin_state_up": None, "tags": None}})["rule"]["admin_state_up"] is False
    rest.wait_lb_active(env.lb)
    for body, message in (
        ({"value": None}, "Error parsing L7Rule: Invalid L7 Rule: L7 rule type requires a value"),
        ({"type": None}, "Error parsing L7Rule: Invalid L7 Rule: invalid rule type"),
        ({"compare_type": None}, "Error parsing L7Rule: Invalid L7 Rule: invalid comparison type for rule type"),
        ({"type": "HEADER"}, "Error parsing L7Rule: Invalid L7 Rule: L7 rule type requires a key"),
        (
            {"value": "a\nb"},
            "Invalid input for field/attribute value. Value: 'a\nb'. Value should match the pattern ^[^\\r\\n]*$",
        ),
        ({"value": "a b"}, "Error parsing L7Rule: Invalid characters in comparison value"),
        ({"project_id": PROJECT}, "Unknown attribute for argument l7rule_.rule: project_id"),
    ):
        assert_fault(rest.put(url, {"rule": body}), 400, message)
    assert rest.ok("GET", url)["rule"]["value"] == "/p"
    with paused(mesh):
        assert rest.delete(url).status_code == 204
        assert rest.ok("GET", url)["rule"]["provisioning_status"] == "PENDING_DELETE"
        assert rest.ok("GET", f"{L7P}/{policy['id']}")["l7policy"]["provisioning_status"] == "PENDING_UPDATE"
    rest.wait_status(url, "rule", "DELETED")
    assert_fault(rest.get(url), 404, f"L7 Rule {created['id']} not found.")
    assert_fault(rest.get(f"{rules}/{NOID}"), 404, f"L7 Rule {NOID} not found.")
    assert_fault(rest.get(f"{rules}/notauuid"), 404, "L7 Rule notauuid not found.")
    assert_fault(rest.put(f"{rules}/{NOID}", {"rule": {}}), 404, f"L7 Rule {NOID} not found.")
    assert_fault(rest.delete(f"{rules}/{NOID}"), 404, f"L7 Rule {NOID} not found.")
    missing = f"{L7P}/{NOID}/rules"
    for call in (rest.get(missing), rest.post(missing, {"rule": path_rule()}), rest.get(f"{missing}/{NOID}")):
        assert_fault(call, 404, f"L7Policy {NOID} not found.")


def test_embedded_rules_and_cascade(rest: Rest, clean: Env) -> None:
    env = clean
    policy = env.policy(
        action="REDIRECT_TO_POOL",
        redirect_pool_id=env.pool,
        rules=[
            path_rule(),
            {"type": "HEADER", "key": "X-A", "compare_type": "EQUAL_TO", "value": "v", "invert": 1, "tags": ["t"]},
        ],
    )
    listing = rest.ok("GET", f"{L7P}/{policy['id']}/rules")["rules"]
    assert [r["id"] for r in listing] == [r["id"] for r in policy["rules"]]
    assert [(r["type"], r["key"], r["invert"], r["tags"]) for r in listing] == [
        ("PATH", None, False, []),
        ("HEADER", "X-A", True, ["t"]),
    ]
    assert all(r["provisioning_status"] == "ACTIVE" for r in listing)
    other = env.policy(name="other")
    assert_fault(
        rest.get(f"{L7P}/{other['id']}/rules/{listing[0]['id']}"), 404, f"L7 Rule {listing[0]['id']} not found."
    )
    env.delete(policy["id"])
    assert_fault(rest.get(f"{L7P}/{policy['id']}/rules"), 404, f"L7Policy {policy['id']} not found.")


def test_max_rules(rest: Rest, clean: Env) -> None:
    env = clean
    before = env.count()
    response = rest.post(
        L7P, {"l7policy": {"listener_id": env.listener, "action": "REJECT", "rules": [path_rule()] * 51}}
    )
    assert response.status_code == 409
    assert response.json()["faultstring"].startswith("Too many rules on L7 policy ")
    assert env.count() == before
    policy = env.policy(rules=[path_rule(value=f"/{i}") for i in range(50)])
    assert len(policy["rules"]) == 50
    assert_fault(
        rest.post(f"{L7P}/{policy['id']}/rules", {"rule": path_rule()}),
        409,
        f"Too many rules on L7 policy {policy['id']}",
    )
    assert len(rest.ok("GET", f"{L7P}/{policy['id']}/rules?limit=100")["rules"]) == 50


RULE_FAULTS = [
    # Octavia's answers, checked against real Octavia 19.0.0
    (
        path_rule(type="HEADER", compare_type="EQUAL_TO", value="x"),
        "Error parsing L7Rule: Invalid L7 Rule: L7 rule type requires a key",
    ),
    (
        path_rule(type="COOKIE", compare_type="EQUAL_TO", value="x", key=""),
        "Error parsing L7Rule: Invalid L7 Rule: L7 rule type requires a key",
    ),
    (path_rule(value=""), "Error parsing L7Rule: Invalid L7 Rule: L7 rule type requires a value"),
    (path_rule(value=None), "Error parsing L7Rule: Invalid L7 Rule: L7 rule type requires a value"),
    (path_rule(type=None), "Error parsing L7Rule: Invalid L7 Rule: invalid rule type"),
    (path_rule(type="HOST_NAME", value="a b"), "Error parsing L7Rule: Invalid characters in comparison value"),
    (path_rule(value="a\tb"), "Error parsing L7Rule: Invalid characters in comparison value"),
    (
        path_rule(value="a\nb"),
        "Invalid input for field/attribute value. Value: 'a\nb'. Value should match the pattern ^[^\\r\\n]*$",
    ),
    (
        path_rule(type="HEADER", key="X\nY", value="v"),
        "Invalid input for field/attribute key. Value: 'X\nY'. Value should match the pattern ^[^\\r\\n]*$",
    ),
    (path_rule(type="HEADER", key="X-K", value="a b"), "Error parsing L7Rule: Invalid characters in header value"),
    (path_rule(type="COOKIE", key="X-K", value='a"b'), "Error parsing L7Rule: Invalid characters in cookie value"),
    (path_rule(type="HEADER", key="X Y", value="v"), "Error parsing L7Rule: Invalid characters in key"),
    (path_rule(type="COOKIE", key='a"b', value="v"), "Error parsing L7Rule: Invalid characters in key"),
    (
        path_rule(compare_type="REGEX", value="a(b"),
        "Error parsing L7Rule: Unable to parse regular expression: missing ), unterminated subpattern at position 1",
    ),
    (
        path_rule(type="FILE_TYPE", value="jpg"),
        "Error parsing L7Rule: Invalid L7 Rule: invalid comparison type for rule type",
    ),
    (
        path_rule(type="SSL_CONN_HAS_CERT", compare_type="EQUAL_TO", value="False"),
        "Error parsing L7Rule: Invalid L7 Rule: L7rule value False is not a boolean True string.",
    ),
    (
        path_rule(type="SSL_CONN_HAS_CERT", value="True"),
        "Error parsing L7Rule: Invalid L7 Rule: L7rule type SSL_CONN_HAS_CERT only supports the EQUAL_TO compare type.",
    ),
    (
        path_rule(type="SSL_CONN_HAS_CERT", compare_type="EQUAL_TO", value="True", key="x"),
        'Error parsing L7Rule: Invalid L7 Rule: L7rule type SSL_CONN_HAS_CERT does not use the "key" field.',
    ),
    (
        path_rule(type="SSL_VERIFY_RESULT", compare_type="EQUAL_TO", value="x"),
        "Error parsing L7Rule: Invalid L7 Rule: L7rule type SSL_VERIFY_RESULT needs a int value, which is >= 0",
    ),
    (
        path_rule(type="SSL_VERIFY_RESULT", compare_type="REGEX", value="0"),
        "Error parsing L7Rule: Invalid L7 Rule: L7rule type SSL_VERIFY_RESULT only supports the EQUAL_TO compare type.",
    ),
    (
        path_rule(type="SSL_VERIFY_RESULT", compare_type="EQUAL_TO", value="\u00b2"),
        "Error parsing L7Rule: invalid literal for int() with base 10: '\u00b2'",
    ),
    (
        path_rule(type="SSL_DN_FIELD", compare_type="EQUAL_TO", value="x"),
        "Error parsing L7Rule: Invalid L7 Rule: L7rule type SSL_DN_FIELD needs to specify a key and a value.",
    ),
    (
        path_rule(type="SSL_DN_FIELD", compare_type="EQUAL_TO", value="x", key="1CN"),
        "Error parsing L7Rule: Invalid L7 Rule: Invalid L7rule distinguished name field.",
    ),
    (
        path_rule(type="BOGUS"),
        "Invalid input for field/attribute type. Value: 'BOGUS'. Value should be one of: PATH, "
        "HOST_NAME, COOKIE, FILE_TYPE, SSL_VERIFY_RESULT, SSL_CONN_HAS_CERT, HEADER, SSL_DN_FIELD",
    ),
    (
        path_rule(compare_type="BOGUS"),
        "Invalid input for field/attribute compare_type. Value: 'BOGUS'. Value should "
        "be one of: EQUAL_TO, ENDS_WITH, CONTAINS, STARTS_WITH, REGEX",
    ),
    (
        path_rule(value="/" + "v" * 255),
        f"Invalid input for field/attribute value. Value: '/{'v' * 255}'. Value "
        "should have a maximum character requirement of 255",
    ),
    (path_rule(value=5), "Invalid input for field/attribute value. Value: '5'. Value should be string"),
    (
        path_rule(type="HEADER", key=True),
        "Invalid input for field/attribute key. Value: 'True'. Value should be string",
    ),
    (path_rule(tags=[5]), "Invalid input for field/attribute tags. Value: '[5]'. Value should be string"),
    (path_rule(foo=1), "Unknown attribute for argument rule_.rule: foo"),
    (
        {"type": "PATH", "value": "/"},
        "Invalid input for field/attribute compare_type. Value: 'None'. Mandatory field missing.",
    ),
    # stricter than Octavia: anything that could split or comment out the HAProxy ACL line
    (path_rule(type="HOST_NAME", value='a"b'), "Error parsing L7Rule: Invalid characters in comparison value"),
    (path_rule(value="/a'b"), "Error parsing L7Rule: Invalid characters in comparison value"),
    (path_rule(type="HOST_NAME", value="a#b"), "Error parsing L7Rule: Invalid characters in comparison value"),
    (path_rule(value="/a\\"), "Error parsing L7Rule: Invalid characters in comparison value"),
    (
        path_rule(compare_type="REGEX", value="a\n"),
        "Invalid input for field/attribute value. Value: 'a\n'. Value should match the pattern ^[^\\r\\n]*$",
    ),
    (path_rule(compare_type="REGEX", value="a\x00b"), "Error parsing L7Rule: Invalid characters in comparison value"),
    (path_rule(type="HEADER", key="X", value='"a b"'), "Error parsing L7Rule: Invalid characters in header value"),
    (path_rule(type="HEADER", key="a,b", value="v"), "Error parsing L7Rule: Invalid characters in key"),
    (path_rule(type="COOKIE", key="a'b", value="v"), "Error parsing L7Rule: Invalid characters in key"),
    (
        path_rule(type="SSL_DN_FIELD", compare_type="EQUAL_TO", key="CN", value="a b"),
        "Error parsing L7Rule: Invalid characters in comparison value",
    ),
    (
        path_rule(type="SSL_DN_FIELD", compare_type="EQUAL_TO", key="CN", value="a\tb"),
        "Error parsing L7Rule: Invalid characters in comparison value",
    ),
    (path_rule(key="a b"), "Error parsing L7Rule: Invalid characters in key"),
    (
        path_rule(value="/a\u2028b", compare_type="REGEX"),
        "Error parsing L7Rule: Invalid characters in comparison value",
    ),
]


@pytest.mark.parametrize(("rule", "message"), RULE_FAULTS)
def test_rule_faults(rest: Rest, env: Env, rule: dict[str, Any], message: str) -> None:
    policy = _shared_policy(rest, env)
    rules = f"{L7P}/{policy}/rules"
    before = len(rest.ok("GET", rules)["rules"])
    assert_fault(rest.post(rules, {"rule": rule}), 400, message)
    assert len(rest.ok("GET", rules)["rules"]) == before
    # the same rule embedded in a policy create fails the same way (apart from WSME's wording of body errors)
    if message.startswith("Error parsing L7Rule") and "\n" not in str(rule.get("value")):
        count = env.count()
        body = {"listener_id": env.listener, "action": "REJECT", "rules": [rule]}
        assert_fault(rest.post(L7P, {"l7policy": body}), 400, message)
        assert env.count() == count


_SHARED: dict[str, str] = {}


def _shared_policy(rest: Rest, env: Env) -> str:
    """One policy for the rule-fault cases (found again if a `clean` test removed it)."""
    policy = _SHARED.get("id")
    if policy is None or rest.get(f"{L7P}/{policy}").status_code != 200:
        _SHARED["id"] = policy = env.policy(name="rule-faults")["id"]
    return policy


def test_rule_body_faults(rest: Rest, env: Env) -> None:
    rules = f"{L7P}/{_shared_policy(rest, env)}/rules"
    body = {"rule": path_rule(invert="True")}
    assert_fault(
        rest.post(rules, body),
        400,
        f"Invalid input for field/attribute rule_. Value: '{body}'. Value not an unambiguous boolean: True",
    )
    assert_fault(rest.post(rules, {"l7rule": path_rule()}), 400, "Unknown attribute for argument rule_: l7rule")
    assert_fault(rest.post(rules), 400, 'Missing argument: "rule_"')
    assert_fault(rest.post(rules, raw=b"{"), 400, "Request is not in valid JSON format")


def test_accepted_rules(rest: Rest, clean: Env) -> None:
    env = clean
    policy = env.policy(name="accepted")["id"]
    accepted = [
        path_rule(key="ignored"),  # Octavia keeps a key on a PATH rule
        {"type": "SSL_CONN_HAS_CERT", "compare_type": "EQUAL_TO", "value": "TRUE"},
        {"type": "SSL_VERIFY_RESULT", "compare_type": "EQUAL_TO", "value": "0"},
        {"type": "SSL_DN_FIELD", "compare_type": "REGEX", "key": "CN", "value": "^web[0-9]+\\.example$"},
        {"type": "FILE_TYPE", "compare_type": "REGEX", "value": "(jpg|png)$"},
        {"type": "HOST_NAME", "compare_type": "ENDS_WITH", "value": ".example.com"},
        {"type": "COOKIE", "compare_type": "CONTAINS", "key": "session_id", "value": "abc=/:"},
        {"type": "HEADER", "compare_type": "EQUAL_TO", "key": "X-Forwarded-For", "value": "10.0.0.1"},
        path_rule(invert="yes", admin_state_up=None),
    ]
    for rule in accepted:
        created = env.rule(policy, **rule)
        assert {k: created[k] for k in ("type", "compare_type", "value")} == {
            k: rule[k] for k in ("type", "compare_type", "value")
        }
    assert created["invert"] is True and created["admin_state_up"] is False


def test_rule_list_filters_pagination(rest: Rest, clean: Env) -> None:
    env = clean
    policy = env.policy(name="listing")["id"]
    rules = f"{L7P}/{policy}/rules"
    made = [
        env.rule(policy)["id"],
        env.rule(policy, type="HEADER", key="X-A", compare_type="EQUAL_TO", value="v", invert=True)["id"],
        env.rule(policy, value="/b", tags=["tagged"])["id"],
    ]
    assert [r["id"] for r in rest.ok("GET", rules)["rules"]] == made
    assert [r["id"] for r in rest.ok("GET", f"{rules}?type=HEADER")["rules"]] == [made[1]]
    assert [r["id"] for r in rest.ok("GET", f"{rules}?invert=true")["rules"]] == [made[1]]
    assert [r["id"] for r in rest.ok("GET", f"{rules}?tags=tagged")["rules"]] == [made[2]]
    first = rest.ok("GET", f"{rules}?limit=1")
    assert [r["id"] for r in first["rules"]] == made[:1]
    (link,) = first["rules_links"]
    assert link["rel"] == "next" and link["href"].startswith(rest.base_url + rules + "?")
    second = rest.session.get(link["href"], timeout=10).json()
    assert [r["id"] for r in second["rules"]] == made[1:2]
    assert {x["rel"] for x in second["rules_links"]} == {"next", "previous"}
    assert rest.ok("GET", f"{rules}?fields=id&fields=type")["rules"][0] == {"id": made[0], "type": "PATH"}
    assert rest.ok("GET", f"{rules}/{made[0]}?fields=id&bogus=1") == {"rule": {"id": made[0]}}
    assert_fault(rest.get(f"{rules}?sort=bogus:asc"), 400, "Supplied sort key 'bogus' is not valid.")
    assert_fault(rest.get(f"{rules}?bogus=1"), 400)


# --- quotas and RBAC ------------------------------------------------------------------


def test_quotas(rest: Rest) -> None:
    project = "f" * 32
    lb = rest.create_lb(project_id=project)["id"]
    listener = rest.ok(
        "POST", LISTENERS, {"listener": {"protocol": "HTTP", "protocol_port": 80, "loadbalancer_id": lb}}
    )["listener"]["id"]
    rest.wait_lb_active(lb)
    rest.ok("PUT", f"{QUOTAS}/{project}", {"quota": {"l7policy": 2, "l7rule": 2}}, status=202)

    def post(**fields: Any) -> Any:
        return rest.post(L7P, {"l7policy": {"listener_id": listener, "action": "REJECT", **fields}})

    assert_fault(post(rules=[path_rule()] * 3), 403, "Quota has been met for resources: L7 Rule")
    first = post(rules=[path_rule()] * 2)
    assert first.status_code == 201
    first = first.json()["l7policy"]
    rest.wait_lb_active(lb)
    assert_fault(
        rest.post(f"{L7P}/{first['id']}/rules", {"rule": path_rule()}), 403, "Quota has been met for resources: L7 Rule"
    )
    second = post()
    assert second.status_code == 201
    rest.wait_lb_active(lb)
    assert_fault(post(), 403, "Quota has been met for resources: L7 Policy")
    assert rest.delete(f"{L7P}/{first['id']}").status_code == 204  # gives back the policy and both rules
    rest.wait_status(f"{L7P}/{first['id']}", "l7policy", "DELETED")
    rest.wait_lb_active(lb)
    assert post(rules=[path_rule()] * 2).status_code == 201
    rest.wait_lb_active(lb)
    assert rest.delete(f"{LBS}/{lb}?cascade=true").status_code == 204


def test_rbac(secure_rest: Rest) -> None:
    owner = "a" * 31 + "7"
    admin = secure_rest.as_(owner, "admin")
    member = secure_rest.as_(owner, "member")
    reader = secure_rest.as_(owner, "reader")
    stranger = secure_rest.as_("b" * 31 + "7", "member")
    lb = admin.create_lb(project_id=owner)["id"]
    body = {"listener": {"protocol": "HTTP", "protocol_port": 80, "loadbalancer_id": lb}}
    listener = member.ok("POST", LISTENERS, body)["listener"]["id"]
    member.wait_lb_active(lb)
    policy_body = {"l7policy": {"listener_id": listener, "action": "REJECT"}}
    assert_fault(reader.post(L7P, policy_body), 403, FORBIDDEN)
    assert_fault(stranger.post(L7P, policy_body), 403, FORBIDDEN)  # found, then refused: Octavia's 403
    policy = member.ok("POST", L7P, policy_body)["l7policy"]
    assert policy["project_id"] == owner
    member.wait_lb_active(lb)
    url = f"{L7P}/{policy['id']}"
    rules = f"{url}/rules"
    assert_fault(reader.post(rules, {"rule": path_rule()}), 403, FORBIDDEN)
    assert_fault(stranger.post(rules, {"rule": path_rule()}), 403, FORBIDDEN)
    rule = member.ok("POST", rules, {"rule": path_rule()})["rule"]
    member.wait_lb_active(lb)
    assert reader.ok("GET", url)["l7policy"]["rules"] == [{"id": rule["id"]}]
    assert reader.ok("GET", f"{rules}/{rule['id']}")["rule"]["project_id"] == owner
    assert [r["id"] for r in reader.ok("GET", rules)["rules"]] == [rule["id"]]
    assert [p["id"] for p in reader.ok("GET", L7P)["l7policies"]] == [policy["id"]]
    assert stranger.ok("GET", L7P)["l7policies"] == []
    assert any(p["id"] == policy["id"] for p in admin.ok("GET", L7P)["l7policies"])
    for call in (stranger.get(url), stranger.put(url, {"l7policy": {"name": "x"}}), stranger.delete(url)):
        assert_fault(call, 403, FORBIDDEN)
    for call in (stranger.get(rules), stranger.get(f"{rules}/{rule['id']}"), stranger.delete(f"{rules}/{rule['id']}")):
        assert_fault(call, 403, FORBIDDEN)
    assert_fault(reader.put(url, {"l7policy": {"name": "x"}}), 403, FORBIDDEN)
    assert_fault(reader.delete(url), 403, FORBIDDEN)
    assert_fault(reader.put(f"{rules}/{rule['id']}", {"rule": {}}), 403, FORBIDDEN)
    assert_fault(reader.delete(f"{rules}/{rule['id']}"), 403, FORBIDDEN)
    assert_unauthenticated(secure_rest.get(L7P))
    assert member.ok("PUT", f"{rules}/{rule['id']}", {"rule": {"value": "/v"}})["rule"]["value"] == "/v"
    member.wait_lb_active(lb)
    assert member.delete(f"{rules}/{rule['id']}").status_code == 204
    member.wait_lb_active(lb)
    assert member.ok("PUT", url, {"l7policy": {"name": "mine"}})["l7policy"]["name"] == "mine"
    member.wait_lb_active(lb)
    assert member.delete(url).status_code == 204
    member.wait_lb_active(lb)
    assert admin.delete(f"{LBS}/{lb}?cascade=true").status_code == 204
