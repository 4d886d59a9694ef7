"""Text is checked once, where a request enters the API: before any handler, for every resource.

A handler may then take every string as valid Unicode that encodes to UTF-8 (for the database, for protobuf,
for a gRPC status message): invalid UTF-8 in the path or query (``%ff`` in an id) or in a JSON body, a lone
surrogate written as a JSON escape (``"\\ud800"``), and JSON nested deeper than any Octavia body are 400s here.
Before this check, a lone surrogate echoed in a fault hung the call for a minute (gRPC could not encode the
status message) and one stored in a name was a 500.

Faults echo what the client sent; :class:`~.errors.InvalidField` truncates such a value, and
:func:`status_message` any message, so a fault stays small (a 100 KB value once made a status message
larger than the HTTP/2 header limit, and Envoy reset the shared upstream connection: other clients'
requests failed with it).
"""

from __future__ import annotations

import itertools
import json
import re

from octavia_mesh.api.errors import InvalidInput

#: Deeper than any Octavia or Barbican body (a single-call create nests about 8 levels).
MAX_JSON_DEPTH = 32
#: The longest status message sent, in UTF-8 bytes (the edge turns it into the faultstring): its HTTP/2 trailer,
#: percent-encoded, stays under 25 KB, well within Envoy's header limit.
MAX_FAULT_BYTES = 8192

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class Undecodable:
    """What the request deserializer gives for a message protobuf refuses (a string field of invalid UTF-8)."""

    def HasField(self, _name: str) -> bool:  # noqa: N802 - the protobuf message interface the adapters use
        return False


UNDECODABLE = Undecodable()


def not_utf8() -> InvalidInput:
    return InvalidInput("Invalid input: the request's path, query or body is not valid UTF-8 text.")


def check_body(raw: bytes, content_type: str) -> None:
    """A JSON body must be UTF-8 without lone surrogates, and nested at most :data:`MAX_JSON_DEPTH` levels."""
    if not raw or not (content_type or "application/json").lower().startswith("application/json"):
        return
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise not_utf8() from None
    brackets = _BRACKETS.findall(_STRING.sub(b"", raw))
    if brackets:
        deepest = max(itertools.accumulate(1 if b in (b"[", b"{") else -1 for b in brackets))
        if deepest > MAX_JSON_DEPTH:
            raise InvalidInput(f"Invalid input: JSON nested deeper than {MAX_JSON_DEPTH} levels.")
    if b"\\u" in raw and _has_surrogate(raw):
        raise not_utf8()


def _has_surrogate(raw: bytes) -> bool:
    try:
        doc = json.loads(raw)
    except ValueError:
        return False  # malformed: the handler answers its own "not valid JSON" fault
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return False


def status_message(message: str) -> str:
    """A fault's message as a gRPC status can carry it: valid UTF-8, at most :data:`MAX_FAULT_BYTES` long."""
    encoded = message.encode("utf-8", "replace")
    if len(encoded) <= MAX_FAULT_BYTES:
        return encoded.decode("utf-8")
    return encoded[:MAX_FAULT_BYTES].decode("utf-8", "ignore") + "..."
