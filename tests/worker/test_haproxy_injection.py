"""Hostile values fed straight into the view model (bypassing the API's validation and ``build()``).

A free-form value (an L7 pattern, a redirect URL, a health-check path, a cipher list) must come
out as exactly one config word holding exactly that value: the test re-reads the render with a
port of HAProxy's own line parser and compares it, word by word, with a render where the value
was a plain placeholder, then runs ``haproxy -c``. A value no quoting can carry (a line break, a
control character, nothing at all), or a value in a slot with a strict grammar (names, addresses,
paths, enums, numbers), must be refused with UnsafeValueError.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest

from octavia_mesh.worker.haproxy.render import HaproxyRenderer
from octavia_mesh.worker.haproxy.syntax import ConfigError, UnsafeValueError
from octavia_mesh.worker.haproxy.view import LoadBalancerView

PLACEHOLDER = "PLACEHOLDER"
MARK = "MARK"  # the one placeholder a test changes
#: Quotable: each must survive as one word with exactly this content.
HOSTILE = [
    "two words",
    "  padded  ",
    "it's",
    'say "hi"',
    "#not-a-comment",
    "a # b",
    "back\\slash",
    "ends-with-backslash\\",
    "\\n-is-not-a-newline",
    "$HOME",
    "${HOME}",
    "%[src]",
    "-i",
    "--",
    "{",
    "}",
    "if",
    "' ; use_backend evil '",
    '" default_backend evil "',
    "\\' unless '",
    "emoji-\u2603-\u00e9",
]
#: What no config word can carry.
REFUSED = ["line\nbreak", "carriage\rreturn", "nul\x00byte", "tab\tchar", "del\x7f", "c1\x85control", ""]


def haproxy_words(line: str) -> list[str]:
    """The words HAProxy 2.8 reads from a config line (``parse_line`` in src/tools.c).

    Environment expansion is not ported: a ``$`` inside double quotes raises, since the renderer
    must never emit one there.
    """
    words: list[str] = []
    word: list[str] = []
    squote = dquote = False
    i = 0
    line = line.lstrip()
    while i < len(line):
        c = line[i]
        if c in "\r\n":
            break
        if c == "#" and not squote and not dquote:
            break
        if c == '"' and not squote:
            dquote = not dquote
        elif c == "'" and not dquote:
            squote = not squote
        elif c == "\\" and not squote:
            nxt = line[i + 1 : i + 2]
            escapes = {" ": " ", "\\": "\\", "#": "#", "'": "'", '"': '"', "t": "\t", "n": "\n", "r": "\r"}
            if nxt == "$" and dquote:
                word.append("$")
                i += 1
            elif nxt in escapes and nxt:
                word.append(escapes[nxt])
                i += 1
            elif nxt == "x":
                word.append(chr(int(line[i + 2 : i + 4], 16)))
                i += 3
            else:
                word.append("\\")
        elif c.isspace() and not squote and not dquote:
            words.append("".join(word))
            word = []
            while i + 1 < len(line) and line[i + 1].isspace():
                i += 1
        elif c == "$" and dquote:
            raise AssertionError(f"environment expansion in {line!r}")
        else:
            word.append(c)
        i += 1
    assert not squote and not dquote, f"unmatched quote in {line!r}"
    if word:  # HAProxy drops an empty last word
        words.append("".join(word))
    return words


def test_haproxy_words_port() -> None:
    assert haproxy_words("    acl a path -m str -- 'a b'\\''c' # comment") == [
        "acl",
        "a",
        "path",
        "-m",
        "str",
        "--",
        "a b'c",
    ]
    assert haproxy_words('x "a\\"b\\$c" d\\ e') == ["x", 'a"b$c', "d e"]
    assert haproxy_words("x ''") == ["x"]


# ----------------------------------------------------------------------------------- the base view


def base_view(rows: Any) -> LoadBalancerView:
    """One load balancer with a PLACEHOLDER in every free-form slot."""
    listener = rows.listener(
        "TERMINATED_HTTPS",
        443,
        default_tls_container_ref="ref:www",
        client_authentication="OPTIONAL",
        client_ca_tls_container_ref="ref:client-ca",
        tls_ciphers=f"ECDHE-ECDSA-AES128-GCM-SHA256:{PLACEHOLDER}",
    )
    pool = rows.pool(
        "HTTP",
        "ROUND_ROBIN",
        listener,
        session_persistence={"type": "APP_COOKIE", "cookie_name": "SESSION"},
        tls_enabled=True,
        ca_tls_container_ref="ref:member-ca",
        tls_ciphers=f"ECDHE-ECDSA-AES128-GCM-SHA256:{PLACEHOLDER}",
    )
    rows.monitor(pool, "HTTPS", url_path=f"/{PLACEHOLDER}", http_version=1.1, domain_name="health.example.com")
    rows.member(pool, "192.0.2.10", 443, monitor_address="192.0.2.11", monitor_port=8443)
    other = rows.pool("HTTP", "ROUND_ROBIN")
    rows.member(other, "192.0.2.20", 80)
    rules = [
        ("HEADER", "EQUAL_TO", "X-Test"),
        ("PATH", "STARTS_WITH", None),
        ("HOST_NAME", "CONTAINS", None),
        ("COOKIE", "ENDS_WITH", "session"),
        ("SSL_DN_FIELD", "EQUAL_TO", "OU"),
        ("FILE_TYPE", "EQUAL_TO", None),
        ("FILE_TYPE", "CONTAINS", None),
        ("HEADER", "REGEX", "X-Regex"),
    ]
    for rule_type, compare, key in rules:
        policy = rows.policy(listener, "REDIRECT_TO_POOL", redirect_pool_id=other.id)
        rows.rule(policy, rule_type, compare, PLACEHOLDER, key=key)
        rows.rule(policy, "SSL_VERIFY_RESULT", "EQUAL_TO", "0")
    rows.rule(
        rows.policy(listener, "REDIRECT_TO_URL", redirect_url=f"https://example.com/{PLACEHOLDER}"),
        "PATH",
        "EQUAL_TO",
        "/u",
    )
    rows.rule(
        rows.policy(listener, "REDIRECT_PREFIX", redirect_prefix=f"https://{PLACEHOLDER}"), "PATH", "EQUAL_TO", "/p"
    )
    rows.rule(rows.policy(listener, "REJECT"), "SSL_CONN_HAS_CERT", "EQUAL_TO", "True", invert=True)
    return rows.build()


def replace_at(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``obj`` with the field or tuple item at ``path`` replaced (frozen dataclasses all the way down)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(obj)
        items[head] = replace_at(items[head], rest, value)
        return tuple(items)
    return dataclasses.replace(obj, **{head: replace_at(getattr(obj, head), rest, value)})


def get_at(obj: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        obj = obj[step] if isinstance(step, int) else getattr(obj, step)
    return obj


FE = ("frontends", 0)
BE = ("backends", 0)
Transform = Callable[[str], str]
#: Free-form slots: where in the view, and how the value appears in its config word.
QUOTABLE: dict[str, tuple[tuple[Any, ...], Transform]] = {
    "header rule": ((*FE, "policies", 0, "rules", 0, "value"), str),
    "path rule": ((*FE, "policies", 1, "rules", 0, "value"), str),
    "host rule": ((*FE, "policies", 2, "rules", 0, "value"), str),
    "cookie rule": ((*FE, "policies", 3, "rules", 0, "value"), str),
    "DN rule": ((*FE, "policies", 4, "rules", 0, "value"), str),
    "file type rule": ((*FE, "policies", 5, "rules", 0, "value"), str),
    "file type contains rule": ((*FE, "policies", 6, "rules", 0, "value"), re.escape),
    "redirect URL": ((*FE, "policies", 8, "redirect_url"), str),
    "redirect prefix": ((*FE, "policies", 9, "redirect_prefix"), str),
    "monitor URL path": ((*BE, "monitor", "url_path"), str),
}


def _check_words(benign: str, hostile: str, value: str, transform: Transform) -> None:
    benign_lines, hostile_lines = benign.splitlines(), hostile.splitlines()
    assert len(hostile_lines) == len(benign_lines), "the value added or removed lines"
    changed = 0
    for before, after in zip(benign_lines, hostile_lines, strict=True):
        expected = [w.replace(MARK, transform(value)) for w in haproxy_words(before)]
        assert haproxy_words(after) == expected, f"{after!r} does not read as {expected!r}"
        changed += before != after
    assert changed, "the value did not reach the config"


@pytest.mark.parametrize("slot", sorted(QUOTABLE))
def test_hostile_value_stays_one_word(slot: str, rows: Any, renderer: HaproxyRenderer, haproxy_check: Any) -> None:
    path, transform = QUOTABLE[slot]
    view = base_view(rows)
    placeholder = get_at(view, path)
    assert PLACEHOLDER in placeholder, f"{slot}: the base view has no placeholder at {path}"
    benign = renderer.render(replace_at(view, path, placeholder.replace(PLACEHOLDER, MARK)))
    haproxy_check(benign, "injection-benign")
    for value in HOSTILE:
        rendered = renderer.render(replace_at(view, path, placeholder.replace(PLACEHOLDER, value)))
        _check_words(benign.config, rendered.config, value, transform)
        haproxy_check(rendered, "injection")


def test_hostile_regex_stays_one_word(rows: Any, renderer: HaproxyRenderer, haproxy_check: Any) -> None:
    path = (*FE, "policies", 7, "rules", 0, "value")
    view = base_view(rows)
    benign = renderer.render(replace_at(view, path, MARK))
    for value in (r"^a b#c'd\"e \$HOME\\ [x]$", "' ; default_backend x #"):  # valid PCRE, hostile config
        rendered = renderer.render(replace_at(view, path, value))
        _check_words(benign.config, rendered.config, value, str)
        haproxy_check(rendered, "injection-regex")


@pytest.mark.parametrize("slot", sorted(QUOTABLE))
def test_unwritable_value_is_refused(slot: str, rows: Any, renderer: HaproxyRenderer) -> None:
    path, _ = QUOTABLE[slot]
    view = base_view(rows)
    placeholder = get_at(view, path)
    for value in REFUSED:
        hostile = replace_at(view, path, placeholder.replace(PLACEHOLDER, value) if value else value)
        with pytest.raises(UnsafeValueError):
            renderer.render(hostile)


#: Slots with a strict grammar, and a hostile value for each (besides the common ones below).
STRICT: dict[str, tuple[tuple[Any, ...], list[Any]]] = {
    "listener name": ((*FE, "name"), ["listener 1", "l#1", "l'1"]),
    "default backend": ((*FE, "default_backend"), ["pool x", "p\\x"]),
    "policy backend": ((*FE, "policies", 0, "backend"), ["pool x unless x"]),
    "policy id (a comment)": ((*FE, "policies", 0, "id"), ["id # x", "id\\"]),
    "backend name": ((*BE, "name"), ["pool:1 x"]),
    "server name": ((*BE, "servers", 0, "name"), ["m 1"]),
    "server address": ((*BE, "servers", 0, "address"), ["192.0.2.1 backup", "example.com", "192.0.2.1:80"]),
    "monitor address": ((*BE, "servers", 0, "monitor_address"), ["192.0.2.1 port 1"]),
    "VIP": ((*FE, "addresses", 0), ["0.0.0.0:80 ssl"]),
    "allowed CIDR": ((*FE, "allowed_cidrs"), [("10.0.0.0/8 0.0.0.0/0",), ("any",)]),
    "header rule key": ((*FE, "policies", 0, "rules", 0, "key"), ["X-A) -m found", "X'A", "X A", "X,A", None]),
    "cookie rule key": ((*FE, "policies", 3, "rules", 0, "key"), ["c(x)", "c=1", None]),
    "DN rule key": ((*FE, "policies", 4, "rules", 0, "key"), ["CN)", "O U", None]),
    "verify result": ((*FE, "policies", 0, "rules", 1, "value"), ["0 1", "-1", "x"]),
    "app cookie name": ((*BE, "cookie_name"), ["SESSION ID", "S;x", None]),
    "monitor domain": ((*BE, "monitor", "domain_name"), ["health.example.com%[src]", "a b", "a_b.com"]),
    "expected codes": ((*BE, "monitor", "expected_codes"), ["200|.*", "200 #", "abc", "204-200"]),
    "HTTP method": ((*BE, "monitor", "http_method"), ["GET /x", "get"]),
    "HTTP version": ((*BE, "monitor", "http_version"), ["1.1 hdr X y", "2"]),
    "crt-list path": ((*FE, "tls", "crt_list"), ["/tmp/a b", "relative", "/a/../b"]),
    "certificate path": ((*FE, "tls", "certificates", 0), ["/x y.pem", "/x'.pem"]),
    "client CA path": ((*FE, "tls", "client_ca"), ["/ca.pem verify none"]),
    "pool CA path": ((*BE, "tls", "ca"), ["/ca.pem verify none"]),
    "stats socket": (("globals", "stats_socket"), ["/run/x.sock level admin"]),
    "log target": (("globals", "log_target"), ["stdout format raw local0\nglobal", "127.0.0.1", "a b:1"]),
    "ALPN": ((*FE, "tls", "params", "alpn"), [("h2 x",), ("spdy",)]),
    "listener ciphers": ((*FE, "tls", "params", "ciphers"), ["AES128-SHA #", "AES128-SHA'", "AES128-SHA\\", "$X"]),
    "pool TLSv1.3 suites": ((*BE, "tls", "params", "ciphers"), ['TLS_AES_128_GCM_SHA256"']),
    "TLS versions": ((*FE, "tls", "params", "versions"), [("TLSv1.2 no-sslv3",), ()]),
    "mode": ((*FE, "mode"), ["http\n"]),
    "protocol": ((*FE, "protocol"), ["HTTP x"]),
    "client auth": ((*FE, "tls", "client_auth"), ["REQUIRED"]),
    "algorithm": ((*BE, "algorithm"), ["static-rr"]),
    "persistence": ((*BE, "persistence"), ["SOURCE"]),
    "monitor type": ((*BE, "monitor", "type"), ["UDP-CONNECT"]),
    "policy action": ((*FE, "policies", 0, "action"), ["ALLOW"]),
    "rule type": ((*FE, "policies", 0, "rules", 0, "type"), ["QUERY"]),
    "compare type": ((*FE, "policies", 0, "rules", 0, "compare_type"), ["LIKE"]),
    "inserted header": ((*FE, "insert_headers"), [("X-Evil: 1",)]),
    "port": ((*FE, "port"), ["443 ssl", 0, 70000, True]),
    "weight": ((*BE, "servers", 0, "weight"), ["1 backup", 257, -1]),
    "maxconn": ((*FE, "maxconn"), ["100\n", 0]),
    "timeout": ((*FE, "timeout_client_ms"), ["5s", -1, 2**31]),
    "redirect code": ((*FE, "policies", 8, "redirect_code"), [200, "301 location x"]),
    "monitor delay": ((*BE, "monitor", "delay_s"), ["5s", -1]),
}
COMMON = ["x\ny", ""]


@pytest.mark.parametrize("slot", sorted(STRICT))
def test_strict_slot_refuses_hostile_values(slot: str, rows: Any, renderer: HaproxyRenderer) -> None:
    path, values = STRICT[slot]
    view = base_view(rows)
    renderer.render(view)  # the base view renders
    for value in [*values, *([] if isinstance(get_at(view, path), tuple | int) else COMMON)]:
        with pytest.raises(ConfigError):
            renderer.render(replace_at(view, path, value))


def test_too_many_rules_in_one_policy_are_refused(rows: Any, renderer: HaproxyRenderer) -> None:
    # HAProxy reads at most 64 words per line, and a policy's rules share one line.
    view = base_view(rows)
    rules = get_at(view, (*FE, "policies", 0, "rules"))
    with pytest.raises(UnsafeValueError):
        renderer.render(replace_at(view, (*FE, "policies", 0, "rules"), rules[:1] * 51))
    renderer.render(replace_at(view, (*FE, "policies", 0, "rules"), rules[:1] * 50))


def test_every_line_of_every_golden_fits_haproxy_limits(renderer: HaproxyRenderer, rows: Any) -> None:
    """At most 64 words per line (MAX_LINE_ARGS) in the worst case: 50 rules in one policy."""
    view = base_view(rows)
    rules = get_at(view, (*FE, "policies", 0, "rules"))
    config = renderer.render(replace_at(view, (*FE, "policies", 0, "rules"), rules[:1] * 50)).config
    assert max(len(haproxy_words(line)) for line in config.splitlines()) <= 64


def test_cipher_lists_with_spaces_stay_one_word(rows: Any, renderer: HaproxyRenderer, haproxy_check: Any) -> None:
    """OpenSSL also separates ciphers with spaces; the list must still reach HAProxy as one word."""
    ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-RSA-AES128-GCM-SHA256:!aNULL:@STRENGTH"
    view = base_view(rows)
    # The renderer checks cipher names with OpenSSL (as the API does), so the placeholder is a real cipher name
    # that appears nowhere else in the configuration, swapped for MARK afterwards.
    placeholder = "CAMELLIA256-SHA"
    for path in ((*FE, "tls", "params", "ciphers"), (*BE, "tls", "params", "ciphers")):
        benign = renderer.render(replace_at(view, path, placeholder))
        assert benign.config.count(placeholder) == 1
        rendered = renderer.render(replace_at(view, path, ciphers))
        _check_words(benign.config.replace(placeholder, MARK), rendered.config, ciphers, str)
        haproxy_check(rendered, "injection-ciphers")
