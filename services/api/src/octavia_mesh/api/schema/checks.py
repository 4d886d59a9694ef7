"""Attribute checks with WSME's conversions and messages.

Each check takes the attribute's name (for the message) and its JSON value
(never ``None``: the parser keeps nulls as they are), and returns the clean
value or raises: :class:`InvalidField` for a value of the right kind that
WSME's type refuses (``Value: '<value>'`` on the attribute), and
:class:`BodyLevelError` where WSME's conversion itself fails (Octavia then
quotes the whole body).

Values that end up in an HAProxy configuration take ``single_word`` (or a
stricter check of their own): a space, newline or other control character
could otherwise split a configuration line or inject a new one.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from octavia_mesh.api.errors import InvalidField
from octavia_mesh.api.schema.body import Attr, BodyLevelError, Check, unknown_attributes
from octavia_mesh.common import haproxy_values

#: The range of the database's integer columns (32-bit on every backend): a larger number is a 400, not a 500.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

#: White space, C0 and C1 controls and DEL (HAProxy's renderer refuses every control character).
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def has_space_or_control(value: str) -> bool:
    return _SPACE_OR_CONTROL.search(value) is not None


def check_single_word(name: str, value: str, shown: Any = None) -> str:
    """Refuse whitespace and control characters; ``shown`` is the value the message quotes (default ``value``)."""
    if has_space_or_control(value):
        shown = value if shown is None else shown
        raise InvalidField(name, shown, "Value must not contain spaces or control characters")
    return value


def text(max_length: int = 255, *, single_line: bool = False, single_word: bool = False) -> Check:
    """WSME's ``StringType(max_length=...)``.

    ``single_line``: Octavia's ``^[^\\r\\n]*$`` pattern (without the trailing-newline gap of its ``$``).
    ``single_word``: ours, stricter: no whitespace or control character at all.
    """

    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidField(name, value, "Value should be string")
        if len(value) > max_length:
            raise InvalidField(name, value, f"Value should have a maximum character requirement of {max_length}")
        if single_line and ("\r" in value or "\n" in value):
            raise InvalidField(name, value, r"Value should match the pattern ^[^\r\n]*$")
        if single_word:
            check_single_word(name, value)
        return value

    return check


def as_int(value: Any) -> int:
    """WSME's ``int(value)``: numeric strings, floats and booleans convert; anything else quotes the body."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: JSON's Infinity
        raise BodyLevelError(str(exc)) from None


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    """WSME's ``IntegerType``; the range message quotes the converted number.

    Without a bound of its own, a number must fit the database's 32-bit integer columns.
    """
    minimum = INT_MIN if minimum is None else minimum
    maximum = INT_MAX if maximum is None else maximum

    def check(name: str, value: Any) -> int:
        number = as_int(value)
        if minimum is not None and number < minimum:
            raise InvalidField(name, number, f"Value should be greater or equal to {minimum}")
        if maximum is not None and number > maximum:
            raise InvalidField(name, number, f"Value should be lower or equal to {maximum}")
        return number

    return check


def int_choice(*choices: int) -> Check:
    """WSME's ``Enum(int, ...)``: converted like an integer, then one of ``choices``."""

    def check(name: str, value: Any) -> int:
        number = as_int(value)
        if number not in choices:
            raise InvalidField(name, number, f"Value should be one of: {', '.join(map(str, choices))}")
        return number

    return check


#: The only strings WSME reads as booleans (exact, lower case).
TRUE_WORDS = ("true", "t", "yes", "y", "on", "1")
FALSE_WORDS = ("false", "f", "no", "n", "off", "0")


def boolean(_name: str, value: Any) -> bool:
    """WSME's bool: JSON booleans and integers (any number but 0 is true), or one of its exact words."""
    if isinstance(value, bool | int):
        return bool(value)
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise BodyLevelError(f"Value not an unambiguous boolean: {value}")


def enum(*choices: str) -> Check:
    """WSME's ``Enum(str, ...)``, case-sensitive; ``choices`` in the order real Octavia prints them."""

    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise InvalidField(name, value, f"Value should be one of: {', '.join(choices)}")
        return value

    return check


def uuid_value(name: str, value: Any) -> str:
    """Octavia's ``UuidType``, in canonical form (a number is no UUID, whatever its digits)."""
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidField(name, value, "Value should be UUID format") from None


def ip_address(name: str, value: Any) -> str:
    """Octavia's ``IPAddressType``, kept as written (Octavia stores and compares the string).

    A scoped IPv6 address (``fe80::1%eth0``) is refused: it means nothing off the host that wrote it.
    """
    if isinstance(value, str) and "%" not in value:
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
    raise InvalidField(name, value, "Value should be IPv4 or IPv6 format")


def listof(item: Check) -> Check:
    """WSME's ``[type]``: a list whose items pass ``item``; an item's fault quotes the whole list, as WSME does."""

    def check(name: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise BodyLevelError(f"Value not a valid list: {value}")
        out = []
        for entry in value:
            try:
                out.append(item(name, entry))
            except InvalidField as exc:
                raise InvalidField(name, value, exc.reason) from None
        return out

    return check


def choices_list(allowed: tuple[str, ...], reason: str) -> Check:
    """A list of strings from ``allowed`` (ALPN protocol IDs), refused with ``reason``."""

    def item(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidField(name, value, "Value should be string")
        if value not in allowed:
            raise InvalidField(name, value, reason)
        return value

    return listof(item)


#: ``tags``: Octavia's list of strings of up to 255 characters.
tag_list = listof(text(255))


def nested(attrs: Mapping[str, Attr], path: str) -> Check:
    """An object inside the body (``session_persistence``): every attribute comes back, ``None`` when absent.

    ``path`` names the object in the unknown-attribute message (``pool_.pool.session_persistence``).
    """

    def check(_name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise BodyLevelError(f"Value not a valid dict: {value}")
        unknown = [key for key in value if key not in attrs]
        if unknown:
            raise unknown_attributes(path, unknown)
        out: dict[str, Any] = {}
        for key, attr in attrs.items():
            given = value.get(key)
            if given is None:
                if attr.required:
                    raise InvalidField(key, None, "Mandatory field missing.")
                out[key] = None
            else:
                out[key] = attr.check(key, given)
        return out

    return check


def haproxy_rule(rule: Callable[[str], Any], max_length: int = 255, *, single_word: bool = True) -> Check:
    """A string that one of the shared HAProxy value rules (:mod:`octavia_mesh.common.haproxy_values`) accepts:
    the renderer applies the same rule, so the value renders. The 400 names the field and the rule's reason.
    """
    base = text(max_length, single_word=single_word)

    def check(name: str, value: Any) -> str:
        base(name, value)
        try:
            rule(value)
        except haproxy_values.ValueRefused as exc:
            raise InvalidField(name, value, exc.reason) from None
        return value

    return check


def anything(_name: str, value: Any) -> Any:
    """No check here: the handler (or the single-call create) reads the value itself."""
    return value
