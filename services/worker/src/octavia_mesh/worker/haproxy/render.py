"""Render a :class:`~.view.LoadBalancerView` into ``haproxy.cfg`` (and the crt-list files it refers to).

The Jinja2 environment is built once by :func:`create_environment` and injected into
:class:`HaproxyRenderer`. Autoescape is off (HTML escaping means nothing in a config file);
safety comes from the filters below, which every user-supplied value passes through in the
templates, and which raise :class:`~.syntax.UnsafeValueError` rather than write a value that
could change the configuration's structure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import jinja2

from . import syntax
from .enums import (
    ALPN_PROTOCOLS,
    Algorithm,
    ClientAuth,
    CompareType,
    InsertHeader,
    L7Action,
    ListenerProtocol,
    Mode,
    MonitorType,
    Persistence,
    ProxyProtocol,
    RuleType,
)
from .view import LOCAL_PEER, PEERS_SECTION, LoadBalancerView

__all__ = ["HaproxyRenderer", "RenderedConfig", "create_environment"]

#: Octavia's TLS version names, lowest first, as HAProxy spells them. HAProxy 2.8 only takes a range
#: (ssl-min-ver/ssl-max-ver): its no-tlsv1x flags cannot go below its default floor (TLSv1.2) and are
#: ignored, with a warning, next to a range. So a set with a gap (TLSv1 + TLSv1.2) allows the versions
#: in between too, which is never weaker than the lowest version the user allowed.
TLS_VERSION_NAMES = {
    "SSLv3": "SSLv3",
    "TLSv1": "TLSv1.0",
    "TLSv1.1": "TLSv1.1",
    "TLSv1.2": "TLSv1.2",
    "TLSv1.3": "TLSv1.3",
}

#: What each inserted header carries (HAProxy log-format expressions; never user input).
#: X-Forwarded-For is ``option forwardfor`` and X-Forwarded-Proto depends on TLS: see the template.
HEADER_VALUES = {
    InsertHeader.X_FORWARDED_PORT: "%[dst_port]",
    InsertHeader.X_REAL_IP: "%[src]",
    InsertHeader.X_CLIENT_IP: "%[src]",
    InsertHeader.X_FORWARDED_IP: "%[src]",
    InsertHeader.X_SSL_CLIENT_VERIFY: "%[ssl_c_verify]",
    InsertHeader.X_SSL_CLIENT_HAS_CERT: "%[ssl_c_used]",
    InsertHeader.X_SSL_CLIENT_DN: "%{+Q}[ssl_c_s_dn]",
    InsertHeader.X_SSL_CLIENT_CN: "%{+Q}[ssl_c_s_dn(cn)]",
    InsertHeader.X_SSL_ISSUER: "%{+Q}[ssl_c_i_dn]",
    InsertHeader.X_SSL_CLIENT_SHA1: "%{+Q}[ssl_c_sha1,hex]",
    InsertHeader.X_SSL_CLIENT_NOT_BEFORE: "%{+Q}[ssl_c_notbefore]",
    InsertHeader.X_SSL_CLIENT_NOT_AFTER: "%{+Q}[ssl_c_notafter]",
}

#: Octavia's compare types as HAProxy match methods.
MATCH_METHODS = {
    CompareType.REGEX: "reg",
    CompareType.STARTS_WITH: "beg",
    CompareType.ENDS_WITH: "end",
    CompareType.CONTAINS: "sub",
    CompareType.EQUAL_TO: "str",
}

HTTP_METHODS = ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
REDIRECT_CODES = (301, 302, 303, 307, 308)
#: HAProxy keeps timeouts in signed 32-bit milliseconds (about 24.8 days); Octavia allows up to 24 days.
MAX_TIMEOUT_MS = 2**31 - 1
#: Octavia's largest timeout (24 days), which also stands for its 0 ("no timeout"): HAProxy reads a zero
#: timeout as infinite and warns about it, and 24 days is as good as infinite for a connection.
NO_TIMEOUT_MS = 24 * 24 * 3600 * 1000
#: An L7 policy's rules share one config line, and HAProxy reads at most 64 words per line.
MAX_RULES_PER_POLICY = 50


@dataclass(frozen=True, slots=True)
class RenderedConfig:
    """What the agent writes on the amphora before (re)loading HAProxy."""

    config: str  # haproxy.cfg
    files: Mapping[str, str]  # other files the config refers to (crt-lists), by absolute path


def create_environment() -> jinja2.Environment:
    """The Jinja2 environment for HAProxy templates: create it once and pass it to :class:`HaproxyRenderer`."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("octavia_mesh.worker.haproxy", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(
        q=syntax.quote,
        text=syntax.nonempty_text,
        ciphers=syntax.cipher_list,
        ident=syntax.ident,
        token=syntax.token,
        dn_field=syntax.dn_field,
        hostname=syntax.hostname,
        path=syntax.file_path,
        addr=syntax.address,
        log_target=_log_target,
        cidr=syntax.cidr,
        status_regex=syntax.status_regex,
        regex=syntax.regex,
        port=_port,
        ms=_milliseconds,
        seconds=_seconds,
        count=_count,
        weight=_weight,
        digits=_digits,
        regex_literal=_regex_literal,
        tls_range=_tls_range,
        alpn=_alpn,
        http_method=_http_method,
        redirect_code=_redirect_code,
        match=_match_method,
        header_value=_header_value,
        enum=_enum_value,
    )
    env.globals.update(
        Algorithm=Algorithm,
        ClientAuth=ClientAuth,
        CompareType=CompareType,
        InsertHeader=InsertHeader,
        L7Action=L7Action,
        ListenerProtocol=ListenerProtocol,
        Mode=Mode,
        MonitorType=MonitorType,
        Persistence=Persistence,
        ProxyProtocol=ProxyProtocol,
        RuleType=RuleType,
        MAX_RULES_PER_POLICY=MAX_RULES_PER_POLICY,
        PEERS_SECTION=PEERS_SECTION,
        LOCAL_PEER=LOCAL_PEER,
        fail=_fail,
    )
    return env


class HaproxyRenderer:
    """Renders load balancer views with one shared environment (templates are compiled once)."""

    def __init__(self, env: jinja2.Environment) -> None:
        self._template = env.get_template("haproxy.cfg.j2")

    def render(self, view: LoadBalancerView) -> RenderedConfig:
        """The configuration of ``view``; raises :class:`~.syntax.ConfigError` for values it will not write."""
        try:
            config = self._template.render(lb=view)
        except jinja2.UndefinedError as exc:  # a view that is not a LoadBalancerView, or lacks a field
            raise syntax.ConfigError(f"incomplete load balancer view: {exc}") from exc
        files: dict[str, str] = {}
        for frontend in view.frontends:
            if frontend.tls is not None:
                files[syntax.file_path(frontend.tls.crt_list)] = _crt_list(frontend.tls.certificates)
        return RenderedConfig(config=config, files=files)


def _crt_list(certificates: Iterable[str]) -> str:
    """A crt-list: one PEM per line; the first is the default certificate, the others are picked by SNI
    from their own CN/SAN names."""
    paths = [syntax.file_path(path, "certificate path") for path in certificates]
    if not paths:
        raise syntax.ConfigError("a TLS listener needs at least its default certificate")
    return "".join(f"{path}\n" for path in paths)


def _log_target(value: object) -> str:
    """Where HAProxy sends its logs: ``stdout``/``stderr`` (raw lines, for the agent to collect), a unix
    socket path (``/dev/log``) or a syslog server's ``address:port``."""
    text = syntax.plain_text(value, "log target")
    if text in ("stdout", "stderr"):
        return f"{text} format raw"
    if text.startswith("/"):
        return syntax.file_path(text, "log socket")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise syntax.UnsafeValueError(f"log target {text!r} is not stdout, stderr, a path or address:port")
    return f"{syntax.address(host.strip('[]'), 'log server address')}:{_port(int(port))}"


def _fail(message: str) -> None:
    raise syntax.UnsafeValueError(message)


def _port(value: object) -> int:
    return syntax.integer(value, "port", 1, 65535)


def _milliseconds(value: object) -> str:
    return f"{syntax.integer(value, 'timeout', 0, MAX_TIMEOUT_MS) or NO_TIMEOUT_MS}ms"


def _seconds(value: object) -> str:
    # HAProxy refuses a zero check interval; Octavia allows delay 0, which we read as "as often as allowed".
    return f"{max(1, syntax.integer(value, 'interval', 0, MAX_TIMEOUT_MS // 1000))}s"


def _count(value: object, low: int = 1, high: int = 2**31 - 1) -> int:
    return syntax.integer(value, "count", low, high)


def _weight(value: object) -> int:
    return syntax.integer(value, "weight", 0, 256)


def _digits(value: object) -> str:
    """A non-negative integer written as a string (SSL_VERIFY_RESULT values)."""
    text = value if isinstance(value, str) else ""
    if not re.fullmatch(r"[0-9]{1,10}", text):
        raise syntax.UnsafeValueError(f"expected a non-negative integer, not {value!r}")
    return text


def _regex_literal(value: object) -> str:
    """``value`` as a regex matching itself (Python's escaping is valid PCRE: a backslash before a
    non-alphanumeric character is always a literal)."""
    return re.escape(syntax.plain_text(value, "L7 rule value"))


def _tls_range(versions: Iterable[object]) -> str:
    given = set(versions)
    allowed = [v for v in TLS_VERSION_NAMES if v in given]
    if not allowed or len(allowed) != len(given):
        raise syntax.UnsafeValueError(f"TLS versions must be a non-empty subset of {list(TLS_VERSION_NAMES)}: {given}")
    return f"ssl-min-ver {TLS_VERSION_NAMES[allowed[0]]} ssl-max-ver {TLS_VERSION_NAMES[allowed[-1]]}"


def _alpn(protocols: Iterable[object]) -> str:
    names = tuple(protocols)
    if not names or any(p not in ALPN_PROTOCOLS for p in names):
        raise syntax.UnsafeValueError(f"ALPN protocols must be a non-empty subset of {list(ALPN_PROTOCOLS)}: {names}")
    return ",".join(str(p) for p in names)


def _http_method(value: object) -> str:
    if value not in HTTP_METHODS:
        raise syntax.UnsafeValueError(f"HTTP method {value!r} is not one of {', '.join(HTTP_METHODS)}")
    return str(value)


def _redirect_code(value: object) -> int:
    if value not in REDIRECT_CODES:
        raise syntax.UnsafeValueError(f"redirect code {value!r} is not one of {REDIRECT_CODES}")
    return int(value)  # type: ignore[arg-type]


def _match_method(value: object) -> str:
    try:
        return MATCH_METHODS[CompareType(value)]
    except ValueError:
        raise syntax.UnsafeValueError(f"unknown compare type {value!r}") from None


def _header_value(header: object) -> str:
    try:
        return HEADER_VALUES[InsertHeader(header)]
    except (KeyError, ValueError):
        raise syntax.UnsafeValueError(f"cannot insert header {header!r}") from None


def _enum_value(value: object, enum: type) -> str:
    """``value`` if it is a member of ``enum`` (by value), for comparisons in the templates."""
    try:
        return str(enum(value).value)
    except ValueError:
        raise syntax.UnsafeValueError(f"{value!r} is not a {enum.__name__}") from None
