"""WSME's reading of a request body, with Octavia's exact messages.

A :class:`Schema` names the wrapper key (``loadbalancer``), the controller
argument WSME prints in its messages (``load_balancer``) and the attributes
in the API type's declaration order. Parsing happens before anything touches
the database, so a bad request never leaves a half-written object. The
faults come in WSME's order:

1. an empty body, a JSON ``null`` or a ``null`` wrapper: ``Missing argument``
   (Octavia answers a 500 for the nulls; it reads them as a missing argument);
2. malformed JSON; a body or wrapper value that is no object;
3. unknown keys, at the top level first, then inside the wrapper (an update
   carrying a create-only attribute is one of them, as in WSME's PUT types);
   the names are sorted, since Octavia prints them in Python set order;
4. the attributes one by one in declaration order, the first failure wins;
   a missing mandatory attribute reports ``Value: 'None'``.

A value WSME cannot convert at all (``int("abc")``, a string for a list)
raises :class:`BodyLevelError`; WSME reports it against the argument, quoting
the whole request body, which only the parser holding that body can word.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from octavia_mesh.api.errors import InvalidField, InvalidInput, ValidationFailure

#: "No default": the attribute is left out of a create's values when the body leaves it out.
MISSING: Any = object()
#: A check takes the attribute's name (for messages) and the JSON value, and returns the clean value.
Check = Callable[[str, Any], Any]


class BodyLevelError(InvalidInput):
    """A value WSME could not convert; :meth:`on` words it as WSME does, on the argument and the whole body.

    It stays a 400 (with the bare reason) should a caller forget to reword it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def on(self, argument: str, body: Any) -> InvalidField:
        return InvalidField(argument, body, self.reason)


@dataclass(frozen=True, slots=True)
class Attr:
    """One attribute of an API type."""

    check: Check
    default: Any = MISSING  # filled in on create when the body leaves the attribute out
    required: bool = False  # WSME's ``mandatory``: a create without it is refused
    create_only: bool = False  # absent from the PUT type: an update carrying it is an unknown attribute


@dataclass(frozen=True, slots=True)
class Schema:
    """A wrapped request body ``{wrapper: {attribute: value, ...}}``."""

    wrapper: str
    argument: str  # the controller's argument, as WSME prints it: "listener_", "load_balancer"
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    #: The validation failure an update answers to a bare ``{}`` (Octavia's pool and listener controllers).
    empty_update: str | None = None

    @property
    def path(self) -> str:
        """How messages name the wrapped object: ``listener_.listener``."""
        return f"{self.argument}.{self.wrapper}"

    def parse_create(self, raw: bytes) -> dict[str, Any]:
        """The attributes present (``None`` for nulls) plus the defaults of those left out."""
        return self._parse(raw, create=True)

    def parse_update(self, raw: bytes) -> dict[str, Any]:
        """Only the attributes present (``None`` for nulls); create-only ones are unknown here."""
        return self._parse(raw, create=False)

    def parse_list(self, raw: bytes) -> list[dict[str, Any]]:
        """``{wrapper: [object, ...]}`` (the batch member update), every object read as a create."""
        body, items = self._envelope(raw, create=True)
        try:
            if not isinstance(items, list):
                raise BodyLevelError(f"Value not a valid list: {items}")
            parsed = []
            for item in items:
                if not isinstance(item, dict):
                    raise BodyLevelError(f"Value not a valid dict: {item}")
                parsed.append(self.parse_object(item, create=True))
            return parsed
        except BodyLevelError as exc:
            raise exc.on(self.argument, body) from None

    def parse_embedded(self, obj: Any, path: str | None = None) -> dict[str, Any]:
        """An object inside another body (a policy's ``rules``, a single-call create's listeners), as a create.

        ``path`` names it in messages (default :attr:`path`). May raise :class:`BodyLevelError`: the parser
        of the enclosing body words it.
        """
        path = path or self.path
        if not isinstance(obj, dict):
            raise InvalidField(path.rsplit(".", 1)[-1], obj, "Value should be an object")
        return self.parse_object(obj, create=True, path=path)

    def parse_object(self, obj: Mapping[str, Any], *, create: bool, path: str | None = None) -> dict[str, Any]:
        """Check the attributes of the object inside the wrapper (steps 3 and 4 of the module docstring)."""
        attrs = self.attrs if create else {n: a for n, a in self.attrs.items() if not a.create_only}
        unknown = [key for key in obj if key not in attrs]
        if unknown:
            raise unknown_attributes(path or self.path, unknown)
        values: dict[str, Any] = {}
        for name, attr in attrs.items():  # declaration order decides which error comes first
            if name in obj:
                values[name] = None if obj[name] is None else attr.check(name, obj[name])
            elif create and attr.required:
                raise InvalidField(name, None, "Mandatory field missing.")
            elif create and attr.default is not MISSING:
                values[name] = attr.default
        return values

    def derive(self, *, wrapper: str | None = None, argument: str | None = None, drop: Iterable[str] = ()) -> Schema:
        """The same attributes under another name (an embedded type), without ``drop``."""
        dropped = set(drop)
        return Schema(
            wrapper or self.wrapper,
            argument or self.argument,
            {n: a for n, a in self.attrs.items() if n not in dropped},
            self.empty_update,
        )

    def _parse(self, raw: bytes, *, create: bool) -> dict[str, Any]:
        body, inner = self._envelope(raw, create=create)
        if not isinstance(inner, dict):
            raise InvalidInput(f"Invalid input for argument {self.path}")
        try:
            return self.parse_object(inner, create=create)
        except BodyLevelError as exc:
            raise exc.on(self.argument, body) from None

    def _envelope(self, raw: bytes, *, create: bool) -> tuple[dict[str, Any], Any]:
        """The decoded body and the value under the wrapper (steps 1 to 3, top level)."""
        missing = InvalidInput(f'Missing argument: "{self.argument}"')
        if not raw:
            raise missing
        body = load_json(raw)
        if body is None:
            raise missing
        if not create and self.empty_update is not None and body == {}:
            raise ValidationFailure(self.empty_update)
        if not isinstance(body, dict):
            raise InvalidInput(f"Invalid input for argument {self.argument}")
        unknown = [key for key in body if key != self.wrapper]
        if unknown:
            raise unknown_attributes(self.argument, unknown)
        if body.get(self.wrapper) is None:
            raise missing
        return body, body[self.wrapper]


def unknown_attributes(argument: str, names: Iterable[str]) -> InvalidInput:
    """WSME's message for attributes a body may not carry."""
    listed = sorted(names)
    plural = "s" if len(listed) > 1 else ""
    return InvalidInput(f"Unknown attribute{plural} for argument {argument}: {', '.join(listed)}")


def load_json(raw: bytes) -> Any:
    """Decode a request body, or fail with Octavia's 400."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidInput("Request is not in valid JSON format") from None
