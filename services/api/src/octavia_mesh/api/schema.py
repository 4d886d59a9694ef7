"""Request-body validation with Octavia's (WSME's) messages.

A :class:`Schema` names the wrapper key (``loadbalancer``) and its
:class:`Attr` entries. Parsing rejects malformed JSON, a missing wrapper,
unknown attributes, wrong types, out-of-range values and, on update,
create-only attributes — before anything touches the database, so a bad
request never leaves a half-written object.

Values that end up in an HAProxy configuration pass :func:`no_control`
(or a stricter check): a newline, carriage return or other control
character could otherwise inject configuration.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from octavia_mesh.api.errors import InvalidField, InvalidInput

MISSING: Any = object()
Check = Callable[[str, Any], Any]


@dataclass(frozen=True, slots=True)
class Attr:
    """One attribute of a request body."""

    check: Check
    default: Any = MISSING
    required: bool = False
    create_only: bool = False
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class Schema:
    """A wrapped request body: ``{wrapper: {attr: value, ...}}``."""

    wrapper: str
    argument: str
    attrs: Mapping[str, Attr] = field(default_factory=dict)

    def parse_create(self, raw: bytes) -> dict[str, Any]:
        """Validate a create body; defaults fill the attributes left out."""
        body = self._unwrap(raw)
        values = self._values(body)
        for name, attr in self.attrs.items():
            if name in values:
                continue
            if attr.required:
                raise InvalidField(name, None, "Mandatory field missing.")
            if attr.default is not MISSING:
                values[name] = attr.default() if callable(attr.default) else attr.default
        return values

    def parse_update(self, raw: bytes, create_only: Iterable[str] = ()) -> dict[str, Any]:
        """Validate an update body; only the attributes present come back."""
        body = self._unwrap(raw)
        frozen = {n for n, a in self.attrs.items() if a.create_only} | set(create_only)
        refused = [name for name in body if name in frozen]
        if refused:
            raise unknown_attributes(f"{self.argument}.{self.wrapper}", refused)
        return self._values(body)

    def parse_embedded(self, body: Any, path: str) -> dict[str, Any]:
        """Validate an object embedded in another body (single-call create)."""
        if not isinstance(body, dict):
            raise InvalidField(path, body, f"Wrong type. Expected '{dict}', got '{type(body)}'")
        return self.parse_create(json.dumps({self.wrapper: body}).encode())

    def _unwrap(self, raw: bytes) -> dict[str, Any]:
        body = load_json(raw)
        if not isinstance(body, dict):
            raise InvalidInput(f"Invalid input for argument {self.argument}")
        unknown = [k for k in body if k != self.wrapper]
        if unknown:
            raise InvalidInput(f"Unknown attribute for argument {self.argument}: {', '.join(unknown)}")
        if self.wrapper not in body:
            raise InvalidInput(f'Missing argument: "{self.argument}"')
        inner = body[self.wrapper]
        if not isinstance(inner, dict):
            raise InvalidInput(f"Invalid input for argument {self.argument}.{self.wrapper}")
        return inner

    def _values(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = [k for k in body if k not in self.attrs]
        if unknown:
            raise unknown_attributes(f"{self.argument}.{self.wrapper}", unknown)
        values: dict[str, Any] = {}
        for name, attr in self.attrs.items():  # in the schema's order, as WSME checks them
            if name not in body:
                continue
            value = body[name]
            if value is None:
                if attr.required and not attr.nullable:
                    raise InvalidField(name, None, "Mandatory field missing.")
                values[name] = None
                continue
            values[name] = attr.check(name, value)
        return values


def unknown_attributes(argument: str, names: list[str]) -> InvalidInput:
    """WSME's message for attributes a body may not carry (create-only ones on update included)."""
    plural = "s" if len(names) > 1 else ""
    return InvalidInput(f"Unknown attribute{plural} for argument {argument}: {', '.join(names)}")


def load_json(raw: bytes) -> Any:
    """Decode a request body, or fail with Octavia's 400."""
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("Request is not in valid JSON format") from None


# --- checks: each returns the cleaned value or raises InvalidField ---------


_TYPE_WORDS = {
    str: "Value should be string",
    int: "Value should be integer",
    list: "Value not a valid list",
    dict: "Value should be an object",
    bool: "Value not an unambiguous boolean",
}


def _wrong_type(name: str, value: Any, expected: type) -> InvalidField:
    return InvalidField(name, value, _TYPE_WORDS.get(expected, f"Value should be {expected.__name__}"))


def string(max_length: int = 255, min_length: int = 0, control_ok: bool = True) -> Check:
    """A string of at most ``max_length`` characters; ``control_ok=False`` also refuses control characters."""

    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise _wrong_type(name, value, str)
        if len(value) > max_length:
            raise InvalidField(name, value, f"Value should have a maximum character requirement of {max_length}")
        if len(value) < min_length:
            raise InvalidField(name, value, f"Value should have a minimum character requirement of {min_length}")
        if not control_ok:
            no_control(name, value)
        return value

    return check


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def no_control(name: str, value: str) -> str:
    """Refuse control characters (newlines included): they could inject HAProxy configuration."""
    if _CONTROL.search(value):
        raise InvalidField(name, value, "Value must not contain control characters")
    return value


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                value = int(value)  # WSME accepts numeric strings for integers
            else:
                raise _wrong_type(name, value, int)
        if minimum is not None and value < minimum:
            raise InvalidField(name, value, f"Value should be greater or equal to {minimum}")
        if maximum is not None and value > maximum:
            raise InvalidField(name, value, f"Value should be lower or equal to {maximum}")
        return int(value)

    return check


def boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in (
        "true",
        "false",
        "1",
        "0",
        "t",
        "f",
        "yes",
        "no",
        "on",
        "off",
        "y",
        "n",
    ):
        return value.lower() in ("true", "1", "t", "yes", "on", "y")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _wrong_type(name, value, bool)


def enum(*choices: str) -> Check:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise _wrong_type(name, value, str)
        if value not in choices:
            raise InvalidField(name, value, f"Value should be one of: {', '.join(choices)}")
        return value

    return check


def uuid_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong_type(name, value, str)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidField(name, value, "Value should be UUID format") from None


def ip_address(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong_type(name, value, str)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidField(name, value, "Value should be IPv4 or IPv6 format") from None


def port(name: str, value: Any) -> int:
    return integer(1, 65535)(name, value)


def string_list(item: Check | None = None, max_length: int = 255) -> Check:
    item_check = item or string(max_length)

    def check(name: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise _wrong_type(name, value, list)
        return [item_check(name, v) for v in value]

    return check


def nested(schema_attrs: Mapping[str, Attr], label: str) -> Check:
    """An inner object (``session_persistence``) with its own attributes."""

    def check(name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _wrong_type(name, value, dict)
        unknown = [k for k in value if k not in schema_attrs]
        if unknown:
            raise InvalidInput(f"Unknown attribute for argument {label}: {', '.join(unknown)}")
        out: dict[str, Any] = {}
        for key, attr in schema_attrs.items():
            if key in value and value[key] is not None:
                out[key] = attr.check(key, value[key])
            elif attr.required:
                raise InvalidField(key, "Unset", "Mandatory field missing.")
            else:
                out[key] = None if attr.default is MISSING else attr.default
        return out

    return check


def any_value(_name: str, value: Any) -> Any:
    return value
