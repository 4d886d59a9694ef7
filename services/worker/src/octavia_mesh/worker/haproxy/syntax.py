"""HAProxy configuration syntax: the one place where values become config words.

HAProxy 2.8 reads its configuration line by line and splits each line into words
(``parse_line`` in ``src/tools.c``): a line ends at CR or LF even inside quotes,
``#`` outside quotes starts a comment, ``$VAR`` inside double quotes expands an
environment variable, ``\\`` escapes outside single quotes, and single quotes
take everything literally up to the next single quote. Adjacent quoted and
unquoted segments join into one word, as in a POSIX shell.

So a value is made safe by (1) refusing what no quoting can carry (line breaks
and other control characters, and the empty string, which HAProxy drops when it
ends a line) and (2) single-quoting anything outside a conservative set of
characters, writing a single quote itself as ``'\\''``. Every user-supplied
string reaches the template through :func:`quote` or through a validator that
admits only a strict grammar (identifiers, addresses, header names, host names,
file paths). A quoted word is still one word in its position, so templates also
put ``--`` before ACL patterns (a pattern like ``-i`` would otherwise be a flag).

The rules for what a user value may be (status codes, cookie and header names, host names, cipher lists,
regular expressions) are :mod:`octavia_mesh.common.haproxy_values`, which the API applies too: a value the
API accepted passes here. Validators raise :class:`UnsafeValueError`; the worker treats it like any other
configuration error (the load balancer goes to ERROR, the running config stays).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from octavia_mesh.common import haproxy_values as rules

__all__ = [
    "ConfigError",
    "UnsafeValueError",
    "address",
    "cipher_list",
    "cidr",
    "dn_field",
    "file_path",
    "hostname",
    "ident",
    "integer",
    "nonempty_text",
    "quote",
    "regex",
    "status_regex",
    "plain_text",
    "token",
]


class ConfigError(ValueError):
    """The load balancer's objects cannot be expressed as a valid HAProxy configuration."""


class UnsafeValueError(ConfigError):
    """A value would change the configuration's structure (or cannot be written at all)."""


#: Characters written unquoted. Everything else (white space, quotes, ``\``, ``#``, ``$``, non-ASCII, ...)
#: gets single-quoted, which is always correct; this set only keeps the common cases readable.
_BARE = re.compile(r"[A-Za-z0-9_.:/@+=,%~^*!?&;()\[\]<>|-]+")
#: C0 controls, DEL and C1 controls: a CR or LF ends the config line even inside quotes, and the rest
#: have no business in a header, path or pattern.
_CONTROL = rules.CONTROL
#: Proxy, server and ACL names: HAProxy allows letters, digits, '-', '_', '.' and ':'.
_IDENT = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
#: A distinguished-name attribute for ``ssl_c_s_dn(<field>)``: a short name (CN, emailAddress) or an OID.
_DN_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,63}")
#: Absolute file paths on the amphora. They come from the worker, not from users, and also go into
#: crt-list files (which have their own line syntax), so only plain characters are allowed.
_PATH = re.compile(r"/[A-Za-z0-9_.@+=:,/-]{0,1023}")


def plain_text(value: object, what: str = "value") -> str:
    """``value`` if it is a string without control characters (it may still need quoting)."""
    if not isinstance(value, str):
        raise UnsafeValueError(f"{what} must be a string, not {type(value).__name__}")
    if _CONTROL.search(value):
        raise UnsafeValueError(f"{what} contains a control character (line break, tab, ...): {value!r}")
    return value


def quote(value: object, what: str = "value") -> str:
    """Write ``value`` as exactly one HAProxy config word with exactly that content."""
    text = plain_text(value, what)
    if not text:
        # An empty last word is dropped by HAProxy's parser, so '' cannot mean "the empty string".
        raise UnsafeValueError(f"{what} must not be empty")
    if _BARE.fullmatch(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def _matching(pattern: re.Pattern[str], value: object, what: str, grammar: str) -> str:
    text = plain_text(value, what)
    if not pattern.fullmatch(text):
        raise UnsafeValueError(f"{what} {text!r} is not {grammar}")
    return text


def _shared(rule: Callable[[str], object], value: object, what: str) -> str:
    """``value`` if the shared rule accepts it (the API applied the same rule)."""
    text = plain_text(value, what)
    try:
        rule(text)
    except rules.ValueRefused as exc:
        raise UnsafeValueError(f"{what} {text!r}: {exc.reason}") from None
    return text


def cipher_list(value: object, what: str = "cipher list") -> str:
    """An OpenSSL cipher list or TLSv1.3 suite list (one half of a split ``tls_ciphers``), as one word."""
    return quote(_shared(rules.cipher_list, value, what), what)


def regex(value: object, what: str = "regular expression") -> str:
    """A user's regular expression, as HAProxy's PCRE compiles it (not yet quoted)."""
    return _shared(rules.pcre_regex, value, what)


def nonempty_text(value: object, what: str = "value") -> str:
    """``value`` if it is a non-empty string without control characters (it may still need quoting)."""
    text = plain_text(value, what)
    if not text:
        raise UnsafeValueError(f"{what} must not be empty")
    return text


def ident(value: object, what: str = "identifier") -> str:
    """A proxy, server or ACL name (object IDs are UUIDs, which always match)."""
    return _matching(_IDENT, value, what, "a valid HAProxy name (letters, digits, '-', '_', '.', ':')")


def token(value: object, what: str = "header name") -> str:
    """A header or cookie name, as it sits inside ``req.hdr(...)`` / ``req.cook(...)``."""
    return _shared(rules.header_name, value, what)


def dn_field(value: object, what: str = "DN field") -> str:
    """A distinguished-name attribute name or OID."""
    return _matching(_DN_FIELD, value, what, "a distinguished-name attribute (e.g. CN, OU, emailAddress)")


def hostname(value: object, what: str = "host name") -> str:
    """An RFC 1123 host name."""
    return _shared(rules.hostname, value, what)


def file_path(value: object, what: str = "file path") -> str:
    """An absolute path on the amphora, made of plain characters only."""
    text = _matching(_PATH, value, what, "an absolute path of plain characters")
    if "/../" in text + "/" or "/./" in text + "/":
        raise UnsafeValueError(f"{what} {text!r} must not contain '.' or '..' segments")
    return text


def address(value: object, what: str = "IP address") -> str:
    """An IPv4 or IPv6 address as HAProxy reads one (IPv6 in brackets: it splits a port at the last ':')."""
    text = plain_text(value, what)
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise UnsafeValueError(f"{what} {text!r} is not an IP address") from None
    return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed


def cidr(value: object, what: str = "CIDR") -> str:
    """An IPv4 or IPv6 network (host bits are cleared, as Neutron security groups would)."""
    text = plain_text(value, what)
    try:
        return ipaddress.ip_network(text, strict=False).compressed
    except ValueError:
        raise UnsafeValueError(f"{what} {text!r} is not an IP network") from None


def integer(value: object, what: str = "integer", low: int | None = None, high: int | None = None) -> int:
    """An ``int`` (not a bool, not a string) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnsafeValueError(f"{what} must be an integer, not {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise UnsafeValueError(f"{what} {value} is outside [{low}, {high}]")
    return value


def status_regex(value: object, what: str = "expected_codes") -> str:
    """Octavia's expected_codes as an anchored regex for ``http-check expect rstatus``.

    ``200`` -> ``^200$``, ``200,202`` -> ``^(200|202)$``, ``200-204`` -> ``^(200|201|202|203|204)$``.
    """
    text = plain_text(value, what)
    try:
        codes = rules.expected_codes(text)
    except rules.ValueRefused as exc:
        raise UnsafeValueError(f"{what} {text!r}: {exc.reason}") from None
    alternatives = "|".join(str(code) for code in codes)
    return f"^{alternatives}$" if len(codes) == 1 else f"^({alternatives})$"
