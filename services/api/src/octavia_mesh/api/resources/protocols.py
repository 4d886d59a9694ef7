"""What listeners, pools and L7 policies share: the listener/pool protocol matrix and the TLS options.

Octavia's ``VALID_LISTENER_POOL_PROTOCOL_MAP``, its default TLS versions,
ALPN protocols and ciphers, and the checks of the TLS lists it runs on both
listeners and pools.
"""

from __future__ import annotations

from octavia_mesh.api import schema as s
from octavia_mesh.api.errors import InvalidInput, ValidationFailure

#: Which pool protocols a listener protocol may forward to.
PROTOCOL_MAP: dict[str, tuple[str, ...]] = {
    "HTTP": ("HTTP", "PROXY", "PROXYV2"),
    "HTTPS": ("HTTPS", "PROXY", "PROXYV2", "TCP"),
    "TCP": ("HTTP", "HTTPS", "PROXY", "PROXYV2", "TCP"),
    "TERMINATED_HTTPS": ("HTTP", "PROXY", "PROXYV2"),
    "UDP": ("UDP",),
    "SCTP": ("SCTP",),
    "PROMETHEUS": (),
}
TLS_VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
ALPN_PROTOCOLS = ("http/1.0", "http/1.1", "h2")
DEFAULT_TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
DEFAULT_ALPN = ("h2", "http/1.1", "http/1.0")
#: Octavia's default_listener_ciphers / default_pool_ciphers (OWASP suite B).
DEFAULT_CIPHERS = (
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:"
    "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)

#: The ``alpn_protocols`` attribute of listeners and pools.
alpn_list = s.choices_list(ALPN_PROTOCOLS, "Value should be a valid ALPN protocol ID")


def tls_defaults() -> dict[str, str | list[str]]:
    """Fresh copies of the TLS defaults (lists are stored in rows, so never shared)."""
    return {
        "tls_ciphers": DEFAULT_CIPHERS,
        "tls_versions": list(DEFAULT_TLS_VERSIONS),
        "alpn_protocols": list(DEFAULT_ALPN),
    }


def check_protocols(listener_protocol: str, pool_protocol: str) -> None:
    """The listener/pool protocol matrix (400 as Octavia words it)."""
    if listener_protocol == "PROMETHEUS":
        raise InvalidInput("Protocol PROMETHEUS listeners cannot have child objects.")
    if pool_protocol not in PROTOCOL_MAP.get(listener_protocol, ()):
        raise ValidationFailure(
            f"The pool protocol '{pool_protocol}' is invalid while the listener protocol is '{listener_protocol}'."
        )


def check_tls_versions(versions: list[str] | None) -> None:
    if versions == []:
        raise ValidationFailure(
            "Empty TLS version list. Either specify at least one TLS version or remove this parameter to use "
            "the default."
        )
    bad = [v for v in versions or [] if v not in TLS_VERSIONS]
    if bad:
        raise ValidationFailure(f"Invalid TLS versions: {', '.join(bad)}")


def check_alpn(protocols: list[str] | None) -> None:
    if protocols == []:
        raise ValidationFailure(
            "Empty ALPN protocol list. Either specify at least one ALPN protocol or remove this parameter to use "
            "the default."
        )
