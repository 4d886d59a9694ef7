"""Octavia's enumerations, defaults and value parsing for the HAProxy view model (values are API strings)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TypeVar

from octavia_mesh.common.haproxy_values import split_ciphers  # shared with the API's check

from .syntax import ConfigError

__all__ = [
    "ALPN_PROTOCOLS",
    "CLIENT_CERT_HEADERS",
    "DEFAULT_ALPN",
    "DEFAULT_TIMEOUT_CLIENT_DATA_MS",
    "DEFAULT_TIMEOUT_MEMBER_CONNECT_MS",
    "DEFAULT_TIMEOUT_MEMBER_DATA_MS",
    "DEFAULT_TIMEOUT_TCP_INSPECT_MS",
    "DEFAULT_TLS_VERSIONS",
    "TLS_VERSIONS",
    "Algorithm",
    "ClientAuth",
    "CompareType",
    "InsertHeader",
    "L7Action",
    "ListenerProtocol",
    "Mode",
    "MonitorType",
    "Persistence",
    "ProxyProtocol",
    "RuleType",
    "alpn_protocols",
    "parse_enum",
    "split_ciphers",
    "tls_versions",
]

_E = TypeVar("_E", bound=StrEnum)


class Mode(StrEnum):
    HTTP = "http"
    TCP = "tcp"


class ListenerProtocol(StrEnum):
    """Listener protocols HAProxy serves (UDP and SCTP listeners are keepalived's, not rendered here)."""

    HTTP = "HTTP"
    HTTPS = "HTTPS"
    TCP = "TCP"
    TERMINATED_HTTPS = "TERMINATED_HTTPS"
    PROMETHEUS = "PROMETHEUS"


class Algorithm(StrEnum):
    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_CONNECTIONS = "LEAST_CONNECTIONS"
    SOURCE_IP = "SOURCE_IP"
    SOURCE_IP_PORT = "SOURCE_IP_PORT"


class Persistence(StrEnum):
    SOURCE_IP = "SOURCE_IP"
    HTTP_COOKIE = "HTTP_COOKIE"
    APP_COOKIE = "APP_COOKIE"


class ProxyProtocol(StrEnum):
    V1 = "send-proxy"
    V2 = "send-proxy-v2"


class MonitorType(StrEnum):
    HTTP = "HTTP"
    HTTPS = "HTTPS"
    TCP = "TCP"
    TLS_HELLO = "TLS-HELLO"
    PING = "PING"


class L7Action(StrEnum):
    REJECT = "REJECT"
    REDIRECT_TO_URL = "REDIRECT_TO_URL"
    REDIRECT_PREFIX = "REDIRECT_PREFIX"
    REDIRECT_TO_POOL = "REDIRECT_TO_POOL"


class RuleType(StrEnum):
    HOST_NAME = "HOST_NAME"
    PATH = "PATH"
    FILE_TYPE = "FILE_TYPE"
    HEADER = "HEADER"
    COOKIE = "COOKIE"
    SSL_CONN_HAS_CERT = "SSL_CONN_HAS_CERT"
    SSL_VERIFY_RESULT = "SSL_VERIFY_RESULT"
    SSL_DN_FIELD = "SSL_DN_FIELD"


class CompareType(StrEnum):
    REGEX = "REGEX"
    STARTS_WITH = "STARTS_WITH"
    ENDS_WITH = "ENDS_WITH"
    CONTAINS = "CONTAINS"
    EQUAL_TO = "EQUAL_TO"


class ClientAuth(StrEnum):
    NONE = "NONE"
    OPTIONAL = "OPTIONAL"
    MANDATORY = "MANDATORY"


class InsertHeader(StrEnum):
    """Headers a listener may insert, in the order they are rendered."""

    X_FORWARDED_FOR = "X-Forwarded-For"
    X_FORWARDED_PORT = "X-Forwarded-Port"
    X_FORWARDED_PROTO = "X-Forwarded-Proto"
    X_REAL_IP = "X-Real-IP"
    X_CLIENT_IP = "X-Client-IP"
    X_FORWARDED_IP = "X-Forwarded-IP"
    X_SSL_CLIENT_VERIFY = "X-SSL-Client-Verify"
    X_SSL_CLIENT_HAS_CERT = "X-SSL-Client-Has-Cert"
    X_SSL_CLIENT_DN = "X-SSL-Client-DN"
    X_SSL_CLIENT_CN = "X-SSL-Client-CN"
    X_SSL_ISSUER = "X-SSL-Issuer"
    X_SSL_CLIENT_SHA1 = "X-SSL-Client-SHA1"
    X_SSL_CLIENT_NOT_BEFORE = "X-SSL-Client-Not-Before"
    X_SSL_CLIENT_NOT_AFTER = "X-SSL-Client-Not-After"


#: Headers about the client certificate: only a TLS-terminating listener has one to describe.
CLIENT_CERT_HEADERS = frozenset(h for h in InsertHeader if h.value.startswith("X-SSL-"))

TLS_VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
ALPN_PROTOCOLS = ("h2", "http/1.1", "http/1.0")

# Octavia's defaults ([api_settings] default_listener/pool_tls_versions and _alpn_protocols, and
# [haproxy_amphora] timeout_* in ms), used when a column is NULL.
DEFAULT_TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
DEFAULT_ALPN = ("h2", "http/1.1", "http/1.0")
DEFAULT_TIMEOUT_CLIENT_DATA_MS = 50000
DEFAULT_TIMEOUT_MEMBER_CONNECT_MS = 5000
DEFAULT_TIMEOUT_MEMBER_DATA_MS = 50000
DEFAULT_TIMEOUT_TCP_INSPECT_MS = 0


def parse_enum(cls: type[_E], value: object, what: str) -> _E:
    """``value`` as a member of ``cls``, or a ConfigError naming ``what``."""
    try:
        return cls(value)
    except ValueError:
        raise ConfigError(f"unsupported {what} {value!r}") from None


def tls_versions(values: Sequence[str] | None, what: str) -> tuple[str, ...]:
    """Octavia's ``tls_versions`` (NULL = its default), checked and ordered lowest first."""
    versions = tuple(DEFAULT_TLS_VERSIONS if values is None else values)
    unknown = [v for v in versions if v not in TLS_VERSIONS]
    if unknown or not versions:
        raise ConfigError(f"{what} must be a non-empty subset of {', '.join(TLS_VERSIONS)}: {list(versions)}")
    return tuple(v for v in TLS_VERSIONS if v in versions)


def alpn_protocols(values: Sequence[str] | None, what: str) -> tuple[str, ...]:
    """Octavia's ``alpn_protocols`` (NULL = its default), checked, in the user's order of preference."""
    protocols = tuple(DEFAULT_ALPN if values is None else values)
    unknown = [p for p in protocols if p not in ALPN_PROTOCOLS]
    if unknown:
        raise ConfigError(f"{what} must be a subset of {', '.join(ALPN_PROTOCOLS)}: {list(protocols)}")
    return tuple(dict.fromkeys(protocols))
