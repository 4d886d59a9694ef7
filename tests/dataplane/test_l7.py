"""L7 policies and rules with real traffic.

The load balancer is created in one call, with its whole tree: a pool (and member) per outcome, and a
listener per rule type whose policies send each compare type to its own pool, then an inverted rule to
the INVERT pool, so the member that answers says which policy matched. Other listeners are added one
call at a time (redirects, rejection, position order, policies without rules).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dataplane_helpers import Backend, LoadBalancer, get, load_balancer
from support import Rest

OUTCOMES = ("default", "REGEX", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "EQUAL_TO", "INVERT")
REDIRECT_CODES = (301, 302, 303, 307, 308)

#: Per rule type: its listener port, the value of each compare type, the inverted rule (last policy), and
#: requests with the outcome they must have. A request that no plain rule matches falls to the inverted
#: rule (INVERT), unless it carries what that rule looks for, which sends it to the default pool.
CASES: dict[str, dict[str, Any]] = {
    "PATH": {
        "port": 8031,
        "values": {
            "REGEX": "^/re[0-9]+$",
            "STARTS_WITH": "/sw",
            "ENDS_WITH": "/ew",
            "CONTAINS": "middle",
            "EQUAL_TO": "/eq",
        },
        "invert": {"compare_type": "STARTS_WITH", "value": "/keep"},
        "requests": [
            ({"path": "/re42"}, "REGEX"),
            ({"path": "/re4x"}, "INVERT"),
            ({"path": "/swim/x"}, "STARTS_WITH"),
            ({"path": "/x/sw"}, "INVERT"),
            ({"path": "/a/b/ew"}, "ENDS_WITH"),
            ({"path": "/ew/x"}, "INVERT"),
            ({"path": "/a-middle-b"}, "CONTAINS"),
            ({"path": "/a-midle-b"}, "INVERT"),
            ({"path": "/eq"}, "EQUAL_TO"),
            ({"path": "/eq?query=string"}, "EQUAL_TO"),  # the path is matched, without the query
            ({"path": "/eq/x"}, "INVERT"),
            ({"path": "/keep/eq"}, "default"),
        ],
    },
    "HOST_NAME": {
        "port": 8032,
        "values": {
            "REGEX": r"^re[0-9]+\.example\.com$",
            "STARTS_WITH": "sw.",
            "ENDS_WITH": ".ew.test",
            "CONTAINS": "middle",
            "EQUAL_TO": "eq.example.com",
        },
        "invert": {"compare_type": "EQUAL_TO", "value": "keep.example.com"},
        "requests": [
            ({"host": "re7.example.com"}, "REGEX"),
            ({"host": "re7x.example.com"}, "INVERT"),
            ({"host": "sw.example.com"}, "STARTS_WITH"),
            ({"host": "www.sw.example.com"}, "INVERT"),
            ({"host": "host.ew.test"}, "ENDS_WITH"),
            ({"host": "host.ew.test.org"}, "INVERT"),
            ({"host": "a.middle.b"}, "CONTAINS"),
            ({"host": "a.midle.b"}, "INVERT"),
            ({"host": "EQ.Example.COM"}, "EQUAL_TO"),  # host names compare case-insensitively
            ({"host": "eq.example.com.evil"}, "INVERT"),
            ({"host": "keep.example.com"}, "default"),
        ],
    },
    "HEADER": {
        "port": 8033,
        "key": "X-Route",
        "values": {
            "REGEX": "^re[0-9]+$",
            "STARTS_WITH": "sw",
            "ENDS_WITH": "ew",
            "CONTAINS": "middle",
            "EQUAL_TO": "eq",
        },
        "invert": {"key": "X-Keep", "compare_type": "EQUAL_TO", "value": "yes"},
        "requests": [
            ({"headers": {"X-Route": "re5"}}, "REGEX"),
            ({"headers": {"X-Route": "re5x"}}, "INVERT"),
            ({"headers": {"X-Route": "swift"}}, "STARTS_WITH"),
            ({"headers": {"X-Route": "xsw"}}, "INVERT"),
            ({"headers": {"X-Route": "crew"}}, "ENDS_WITH"),
            ({"headers": {"X-Route": "ewe"}}, "INVERT"),
            ({"headers": {"X-Route": "amiddleb"}}, "CONTAINS"),
            ({"headers": {"X-Route": "amidleb"}}, "INVERT"),
            ({"headers": {"x-route": "eq"}}, "EQUAL_TO"),  # header names are case-insensitive
            ({"headers": {"X-Route": "eqx"}}, "INVERT"),
            ({"headers": {"X-Other": "eq"}}, "INVERT"),
            ({"headers": {"X-Route": "eqx", "X-Keep": "yes"}}, "default"),
        ],
    },
    "COOKIE": {
        "port": 8034,
        "key": "route",
        "values": {
            "REGEX": "^re[0-9]+$",
            "STARTS_WITH": "sw",
            "ENDS_WITH": "ew",
            "CONTAINS": "middle",
            "EQUAL_TO": "eq",
        },
        "invert": {"key": "keep", "compare_type": "EQUAL_TO", "value": "yes"},
        "requests": [
            ({"cookie": "a=b; route=re5"}, "REGEX"),
            ({"cookie": "route=re5x"}, "INVERT"),
            ({"cookie": "route=swift; c=d"}, "STARTS_WITH"),
            ({"cookie": "route=xsw"}, "INVERT"),
            ({"cookie": "route=crew"}, "ENDS_WITH"),
            ({"cookie": "route=ewe"}, "INVERT"),
            ({"cookie": "route=amiddleb"}, "CONTAINS"),
            ({"cookie": "route=amidleb"}, "INVERT"),
            ({"cookie": "route=eq"}, "EQUAL_TO"),
            ({"cookie": "route=eqx"}, "INVERT"),
            ({"cookie": "other=eq"}, "INVERT"),
            ({"cookie": "route=eqx; keep=yes"}, "default"),
        ],
    },
    "FILE_TYPE": {  # Octavia allows only EQUAL_TO and REGEX here
        "port": 8035,
        "values": {"REGEX": r"\.(png|gif)$", "EQUAL_TO": "jpg"},
        "invert": {"compare_type": "EQUAL_TO", "value": "txt"},
        "requests": [
            ({"path": "/img/a.png"}, "REGEX"),
            ({"path": "/img/a.gif"}, "REGEX"),
            ({"path": "/img/a.png/x"}, "INVERT"),
            ({"path": "/a/b.jpg"}, "EQUAL_TO"),
            ({"path": "/a/b.jpg?size=2"}, "EQUAL_TO"),
            ({"path": "/a/b.jpgx"}, "INVERT"),
            ({"path": "/a/jpg"}, "INVERT"),
            ({"path": "/notes.txt"}, "default"),
        ],
    },
}


def _pool(name: str) -> dict[str, str]:
    return {"name": f"pool-{name}"}


def _tree_listener(rule_type: str, case: dict[str, Any]) -> dict[str, Any]:
    key = {"key": case["key"]} if "key" in case else {}
    policies = [
        {
            "name": f"{rule_type}-{compare}",
            "action": "REDIRECT_TO_POOL",
            "redirect_pool": _pool(compare),
            "rules": [{"type": rule_type, "compare_type": compare, "value": value, **key}],
        }
        for compare, value in case["values"].items()
    ]
    inverted = {"key": case["invert"]["key"]} if "key" in case["invert"] else {}
    policies.append(
        {
            "name": f"{rule_type}-invert",
            "action": "REDIRECT_TO_POOL",
            "redirect_pool": _pool("INVERT"),
            "rules": [{"type": rule_type, "invert": True, **case["invert"], **inverted}],
        }
    )
    return {
        "name": f"l7-{rule_type}",
        "protocol": "HTTP",
        "protocol_port": case["port"],
        "default_pool": _pool("default"),
        "l7policies": policies,
    }


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, Backend]]:
    started = {name: Backend(name) for name in OUTCOMES}
    yield started
    for backend in started.values():
        backend.close()


@pytest.fixture(scope="module")
def lb(api: Rest, outcomes: dict[str, Backend]) -> Iterator[LoadBalancer]:
    pools = [
        {
            "name": f"pool-{name}",
            "protocol": "HTTP",
            "lb_algorithm": "ROUND_ROBIN",
            "members": [{"address": b.address, "protocol_port": b.port}],
        }
        for name, b in outcomes.items()
    ]
    listeners = [_tree_listener(rule_type, case) for rule_type, case in CASES.items()]
    with load_balancer(api, "l7", pools=pools, listeners=listeners) as handle:
        yield handle


@pytest.fixture(scope="module")
def pool_ids(lb: LoadBalancer) -> dict[str, str]:
    pools = lb.api.ok("GET", f"/v2/lbaas/pools?loadbalancer_id={lb.id}")["pools"]
    return {p["name"].removeprefix("pool-"): p["id"] for p in pools}


def _request(lb: LoadBalancer, port: int, request: dict[str, Any]) -> str:
    headers = dict(request.get("headers", {}))
    if "host" in request:
        headers["Host"] = request["host"]
    if "cookie" in request:
        headers["Cookie"] = request["cookie"]
    response = get(lb.vip, port, request.get("path", "/"), headers=headers)
    assert response.status == 200, response
    return response.who


@pytest.mark.parametrize("rule_type", list(CASES))
def test_redirect_to_pool_by_rule_type(lb: LoadBalancer, rule_type: str) -> None:
    case = CASES[rule_type]
    got = [(request, _request(lb, case["port"], request)) for request, _ in case["requests"]]
    wrong = [
        f"{request} went to {answer}, not {expected}"
        for (request, answer), (_, expected) in zip(got, case["requests"], strict=True)
        if answer != expected
    ]
    assert not wrong, "\n".join(wrong)


def test_file_type_takes_only_equal_to_and_regex(lb: LoadBalancer) -> None:
    listener = lb.api.ok("GET", f"/v2/lbaas/listeners?loadbalancer_id={lb.id}&protocol_port=8035")["listeners"][0]
    policy_id = listener["l7policies"][0]["id"]
    rule = {"rule": {"type": "FILE_TYPE", "compare_type": "STARTS_WITH", "value": "jp"}}
    assert lb.api.post(f"/v2/lbaas/l7policies/{policy_id}/rules", rule).status_code == 400


def test_redirects_and_reject(lb: LoadBalancer, pool_ids: dict[str, str]) -> None:
    listener = lb.listener(8036, default_pool_id=pool_ids["default"])
    for code in REDIRECT_CODES:
        lb.policy(
            listener,
            "REDIRECT_TO_URL",
            redirect_url=f"http://example.com/moved-{code}",
            redirect_http_code=code,
            rules=[{"type": "PATH", "compare_type": "EQUAL_TO", "value": f"/url-{code}"}],
        )
        lb.policy(
            listener,
            "REDIRECT_PREFIX",
            redirect_prefix=f"https://example.org/{code}",
            redirect_http_code=code,
            rules=[{"type": "PATH", "compare_type": "STARTS_WITH", "value": f"/prefix-{code}"}],
        )
    lb.policy(
        listener,
        "REDIRECT_TO_URL",
        redirect_url="http://example.com/default-code",
        rules=[{"type": "PATH", "compare_type": "EQUAL_TO", "value": "/url-default"}],
    )
    lb.policy(listener, "REJECT", rules=[{"type": "PATH", "compare_type": "STARTS_WITH", "value": "/admin"}])

    def redirect(path: str) -> tuple[int, str | None]:
        response = get(lb.vip, 8036, path)
        return response.status, response.headers.get("location")

    for code in REDIRECT_CODES:
        assert redirect(f"/url-{code}?q=1") == (code, f"http://example.com/moved-{code}")  # the URL, as it is
        assert redirect(f"/prefix-{code}/a?b=c") == (code, f"https://example.org/{code}/prefix-{code}/a?b=c")
    assert redirect("/url-default") == (302, "http://example.com/default-code")  # Octavia's default code
    assert get(lb.vip, 8036, "/admin/users").status == 403
    assert get(lb.vip, 8036, "/other").who == "default"


def test_position_order_first_match_wins(lb: LoadBalancer, pool_ids: dict[str, str]) -> None:
    listener = lb.listener(8037, default_pool_id=pool_ids["default"])
    broad = lb.policy(
        listener,
        "REDIRECT_TO_POOL",
        redirect_pool_id=pool_ids["REGEX"],
        rules=[{"type": "PATH", "compare_type": "STARTS_WITH", "value": "/order"}],
    )
    narrow = lb.policy(
        listener,
        "REDIRECT_TO_POOL",
        redirect_pool_id=pool_ids["EQUAL_TO"],
        rules=[{"type": "PATH", "compare_type": "STARTS_WITH", "value": "/order/narrow"}],
    )
    assert (broad["position"], narrow["position"]) == (1, 2)
    assert get(lb.vip, 8037, "/order/narrow").who == "REGEX"  # the broad policy comes first
    lb.update(f"l7policies/{narrow['id']}", "l7policy", position=1)  # moves the broad one to 2
    assert get(lb.vip, 8037, "/order/narrow").who == "EQUAL_TO"
    assert get(lb.vip, 8037, "/order/broad").who == "REGEX"
    # A rejection inserted first wins over both; every policy's rules must all match (AND).
    lb.policy(
        listener,
        "REJECT",
        position=1,
        rules=[
            {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/order"},
            {"type": "HEADER", "key": "X-Deny", "compare_type": "EQUAL_TO", "value": "1"},
        ],
    )
    assert get(lb.vip, 8037, "/order/narrow", headers={"X-Deny": "1"}).status == 403
    assert get(lb.vip, 8037, "/order/narrow").who == "EQUAL_TO"
    assert get(lb.vip, 8037, "/order/broad").who == "REGEX"


def test_policies_without_rules_are_ignored(lb: LoadBalancer, pool_ids: dict[str, str]) -> None:
    listener = lb.listener(8038, default_pool_id=pool_ids["default"])
    empty = lb.policy(listener, "REJECT")
    lb.policy(listener, "REDIRECT_TO_POOL", redirect_pool_id=pool_ids["INVERT"])
    disabled_rules = lb.policy(listener, "REDIRECT_TO_URL", redirect_url="http://example.com/")
    rule = lb.create(
        f"l7policies/{disabled_rules['id']}/rules",
        "rule",
        type="PATH",
        compare_type="STARTS_WITH",
        value="/",
        admin_state_up=False,
    )
    assert {get(lb.vip, 8038, path).who for path in ("/", "/a", "/b/c")} == {"default"}
    # The policies work once they have an (enabled) rule: what made them inert was only that.
    lb.create(f"l7policies/{empty['id']}/rules", "rule", type="PATH", compare_type="EQUAL_TO", value="/a")
    lb.update(f"l7policies/{disabled_rules['id']}/rules/{rule['id']}", "rule", admin_state_up=True)
    assert get(lb.vip, 8038, "/a").status == 403
    response = get(lb.vip, 8038, "/b/c")
    assert (response.status, response.headers.get("location")) == (302, "http://example.com/")
