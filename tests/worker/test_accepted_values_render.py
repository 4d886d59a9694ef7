"""Every value the API accepts for an HAProxy-bound field renders and passes ``haproxy -c`` (issue 10).

A property test over the API's own validators: hypothesis generates hostile and ordinary values for each field
(quotes, backslashes, ``#``, ``$``, control and non-ASCII characters, PCRE-only and Python-only regex syntax,
unknown cipher names, out-of-range status codes, ...), keeps those the API's check accepts, renders one
configuration holding all of them, and runs ``haproxy -c`` on it (zero-warning mode). Before the shared rules
(``octavia_mesh.common.haproxy_values``), ``expected_codes`` ``600``, the regex ``^/\\u0061``, the cookie name
``a'b`` and the cipher list ``NOT-A-CIPHER`` were accepted and put the load balancer in ERROR.

Seeded (``derandomize``) and bounded: a few dozen ``haproxy -c`` runs in all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octavia_mesh.api.errors import ApiError
from octavia_mesh.api.resources import healthmonitors, l7policies, l7rules, listeners, pools
from octavia_mesh.common import haproxy_values
from octavia_mesh.worker.haproxy.render import HaproxyRenderer
from octavia_mesh.worker.haproxy.syntax import ConfigError

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Characters that break configuration syntax, encodings or naive checks, with ordinary ones.
HOSTILE_CHARS = list("aZ09-_./:@%+=,;!?&*()[]{}<>|^$~`'\"\\# \t\n\r\x00\x7f\x85\u00e9\u2022\u2028\u4e2d")
hostile_text = st.text(alphabet=st.sampled_from(HOSTILE_CHARS), min_size=0, max_size=24)

REGEX_PIECES = [
    "^",
    "$",
    "/",
    "api",
    ".*",
    "\\d+",
    "[a-z]",
    "[[:alpha:]]",
    "(x|y)",
    "(?i)",
    "(?a)",
    "(?P<n>x)",
    "(?:x)",
    "a{2,3}",
    "a{,3}",
    "\\u0061",
    "\\N{BULLET}",
    "\\x41",
    "\\Z",
    "\\",
    "(",
    ")",
    "[",
    "*",
    "'",
    '"',
    "#",
    " ",
    "\u00e9",
    "(?<=a)",
    "(?<!ab|c)",
    "\\1",
]
regexes = st.lists(st.sampled_from(REGEX_PIECES), min_size=1, max_size=6).map("".join)

CIPHER_NAMES = [
    "ECDHE-RSA-AES128-GCM-SHA256",
    "AES128-SHA",
    "CAMELLIA256-SHA",
    "TLS_AES_128_GCM_SHA256",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_FOO",
    "NOT-A-CIPHER",
    "HIGH",
    "DEFAULT",
    "!aNULL",
    "!MD5",
    "@STRENGTH",
    "@SECLEVEL=0",
    "+AES",
    "-ALL",
    '"',
    "'",
    'AES128-SHA"',
]
ciphers = st.lists(
    st.tuples(st.sampled_from(CIPHER_NAMES), st.sampled_from([":", ",", " ", ";", "::"])), min_size=1, max_size=5
).map(lambda parts: "".join(name + sep for name, sep in parts)[:-1] or parts[0][0])

codes = st.one_of(
    st.text(alphabet=st.sampled_from(list("0123456789,- ")), min_size=1, max_size=12),
    st.lists(st.integers(0, 999).map(lambda n: f"{n:03d}"), min_size=1, max_size=4).map(",".join),
    st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda r: f"{r[0]:03d}-{r[1]:03d}"),
)
domains = st.lists(
    st.text(alphabet=st.sampled_from(list("ab09-_.%'é")), min_size=0, max_size=8), min_size=1, max_size=3
).map(".".join)
url_paths = hostile_text.map(lambda t: "/" + t)
urls = st.tuples(st.sampled_from(["http://", "https://", "ftp://", ""]), hostile_text).map("".join)
rule_types = st.sampled_from(l7rules.TYPES)
compare_types = st.sampled_from(l7rules.COMPARE_TYPES)
rule_values = st.one_of(hostile_text, regexes, st.sampled_from(["True", "true", "0", "12", "CN", "/x"]))
rule_keys = st.one_of(st.none(), hostile_text, st.sampled_from(["X-Forwarded-For", "session", "CN", "a'b", "a#b"]))


def accepted(check: Callable[[Any], Any], values: list[Any]) -> list[Any]:
    """The values the API's check accepts (refusals must be 400s, never another exception)."""
    out = []
    for value in values:
        try:
            check(value)
        except ApiError as exc:
            assert exc.http_status == 400, exc
        else:
            out.append(value)
    return out


def attr(schema: Any, name: str) -> Callable[[Any], Any]:
    check = schema.attrs[name].check
    return lambda value: check(name, value)


def render_and_check(renderer: HaproxyRenderer, haproxy_check: Any, rows: Any, name: str) -> None:
    try:
        rendered = renderer.render(rows.build())
    except ConfigError as exc:  # a value the API accepted and the renderer refused: the bug of issue 10
        pytest.fail(f"the renderer refused a value the API accepted: {exc}")
    haproxy_check(rendered, name)


def fresh(rows: Any) -> Any:
    """Empty rows of the conftest's kind for each example (the ``rows`` fixture is made once per test)."""
    return type(rows)()


@SETTINGS
@given(batch=st.lists(st.tuples(codes, url_paths, st.one_of(st.none(), domains)), min_size=1, max_size=12))
def test_health_monitor_values(batch: list[Any], rows: Any, renderer: HaproxyRenderer, haproxy_check: Any) -> None:
    rows = fresh(rows)
    check_codes = attr(healthmonitors.BODY, "expected_codes")
    check_path = attr(healthmonitors.BODY, "url_path")
    check_domain = attr(healthmonitors.BODY, "domain_name")
    batch = [("200-204", "/health", "www.example.com"), *batch]
    for index, (expected, path, domain) in enumerate(batch):
        if not accepted(check_codes, [expected]) or not accepted(check_path, [path]):
            continue
        if domain is not None and not accepted(check_domain, [domain]):
            continue
        listener = rows.listener("HTTP", 8000 + index)
        pool = rows.pool("HTTP", "ROUND_ROBIN", listener)
        rows.monitor(pool, "HTTP", expected_codes=expected, url_path=path, domain_name=domain)
        rows.member(pool, "192.0.2.10", 80)
    render_and_check(renderer, haproxy_check, rows, "accepted-monitors")


@SETTINGS
@given(
    batch=st.lists(st.tuples(rule_types, compare_types, rule_keys, rule_values, st.booleans()), min_size=1, max_size=20)
)
def test_l7_rule_values(batch: list[Any], rows: Any, renderer: HaproxyRenderer, haproxy_check: Any) -> None:
    rows = fresh(rows)
    listener = rows.listener("TERMINATED_HTTPS", 443, default_tls_container_ref="ref:www")
    pool = rows.pool("HTTP", "ROUND_ROBIN", listener)
    rows.member(pool, "192.0.2.10", 80)
    batch = [("PATH", "REGEX", None, "^/api/v[0-9]+", False), *batch]
    for rule_type, compare_type, key, value, invert in batch:
        rule = {"type": rule_type, "compare_type": compare_type, "key": key, "value": value, "invert": invert}
        if not accepted(l7rules.check_rule, [rule]):
            continue
        policy = rows.policy(listener, "REJECT")
        rows.rule(policy, rule_type, compare_type, value, key=key, invert=invert)
    render_and_check(renderer, haproxy_check, rows, "accepted-rules")


@SETTINGS
@given(
    batch=st.lists(
        st.one_of(hostile_text, st.sampled_from(["a=b", "a/b", 'a"b', "a'b", "SESSION", "x-y"])), max_size=16
    )
)
def test_cookie_names(batch: list[str], rows: Any, renderer: HaproxyRenderer, haproxy_check: Any) -> None:
    rows = fresh(rows)
    check = attr(pools.BODY, "session_persistence")

    def persistence(name: str) -> None:
        pools._check_persistence("HTTP", check({"type": "APP_COOKIE", "cookie_name": name}))

    for index, name in enumerate(accepted(persistence, ["JSESSIONID", *batch])):
        listener = rows.listener("HTTP", 8000 + index)
        pool = rows.pool(
            "HTTP", "ROUND_ROBIN", listener, session_persistence={"type": "APP_COOKIE", "cookie_name": name}
        )
        rows.member(pool, "192.0.2.10", 80)
    render_and_check(renderer, haproxy_check, rows, "accepted-cookies")


@SETTINGS
@given(batch=st.lists(ciphers, min_size=1, max_size=10))
def test_cipher_lists(batch: list[str], rows: Any, renderer: HaproxyRenderer, haproxy_check: Any) -> None:
    rows = fresh(rows)
    on_listener = accepted(attr(listeners.BODY, "tls_ciphers"), ["ECDHE-RSA-AES128-GCM-SHA256", *batch])
    on_pool = accepted(attr(pools.BODY, "tls_ciphers"), ["ECDHE-RSA-AES128-GCM-SHA256", *batch])
    assert on_listener == on_pool  # one rule for both
    for index, value in enumerate(on_listener):
        listener = rows.listener(
            "TERMINATED_HTTPS", 8400 + index, default_tls_container_ref="ref:www", tls_ciphers=value
        )
        pool = rows.pool("HTTP", "ROUND_ROBIN", listener, tls_enabled=True, tls_ciphers=value)
        rows.member(pool, "192.0.2.10", 443)
    render_and_check(renderer, haproxy_check, rows, "accepted-ciphers")


@SETTINGS
@given(batch=st.lists(urls, max_size=12))
def test_redirect_values(batch: list[str], rows: Any, renderer: HaproxyRenderer, haproxy_check: Any) -> None:
    rows = fresh(rows)
    listener = rows.listener("HTTP", 80)
    pool = rows.pool("HTTP", "ROUND_ROBIN", listener)
    rows.member(pool, "192.0.2.10", 80)
    for field in ("redirect_url", "redirect_prefix"):
        action = "REDIRECT_TO_URL" if field == "redirect_url" else "REDIRECT_PREFIX"
        for value in accepted(attr(l7policies.BODY, field), ["https://www.example.com/moved", *batch]):
            policy = rows.policy(listener, action, **{field: value})
            rows.rule(policy, "PATH", "STARTS_WITH", "/old")
    render_and_check(renderer, haproxy_check, rows, "accepted-redirects")


# --- the exact values of issue 10: refused by the API (a 400 naming the field) and by the renderer -----------------


@pytest.mark.parametrize("value", ["000", "600", "204-200"])
def test_issue_expected_codes_refused(value: str) -> None:
    with pytest.raises(ApiError, match="expected_codes") as refused:
        attr(healthmonitors.BODY, "expected_codes")(value)
    assert refused.value.http_status == 400
    with pytest.raises(haproxy_values.ValueRefused):
        haproxy_values.expected_codes(value)


@pytest.mark.parametrize("value", ["^/\\u0061", "^/\\N{BULLET}", "(?a)^/x"])
def test_issue_regexes_refused(value: str) -> None:
    rule = {"type": "PATH", "compare_type": "REGEX", "key": None, "value": value, "invert": False}
    with pytest.raises(ApiError, match="regular expression") as refused:
        l7rules.check_rule(rule)
    assert refused.value.http_status == 400


@pytest.mark.parametrize("value", ["a=b", "a/b", 'a"b', "a'b"])
def test_issue_cookie_names_refused(value: str) -> None:
    with pytest.raises(ApiError, match="cookie_name") as refused:
        attr(pools.BODY, "session_persistence")({"type": "APP_COOKIE", "cookie_name": value})
    assert refused.value.http_status == 400


@pytest.mark.parametrize("value", ["NOT-A-CIPHER", 'ECDHE-RSA-AES128-GCM-SHA256"', "TLS_FOO"])
def test_issue_cipher_lists_refused(value: str) -> None:
    for schema in (listeners.BODY, pools.BODY):
        with pytest.raises(ApiError, match="tls_ciphers") as refused:
            attr(schema, "tls_ciphers")(value)
        assert refused.value.http_status == 400
