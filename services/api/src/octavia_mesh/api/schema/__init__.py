"""Request-body validation with Octavia's (WSME's) messages: the one implementation every resource uses.

:mod:`.body` reads the body (envelope, unknown attributes, declaration-order
checks, whole-body conversion messages); :mod:`.checks` holds the attribute
checks. Resources import this package as ``s`` and use ``s.Schema``,
``s.Attr``, ``s.text(...)`` and so on.
"""

from octavia_mesh.api.schema.body import (
    MISSING,
    Attr,
    BodyLevelError,
    Check,
    Schema,
    load_json,
    unknown_attributes,
)
from octavia_mesh.api.schema.checks import (
    FALSE_WORDS,
    TRUE_WORDS,
    anything,
    as_int,
    boolean,
    check_single_word,
    choices_list,
    enum,
    haproxy_rule,
    has_space_or_control,
    int_choice,
    integer,
    ip_address,
    listof,
    nested,
    tag_list,
    text,
    uuid_value,
)

__all__ = [
    "FALSE_WORDS",
    "MISSING",
    "TRUE_WORDS",
    "Attr",
    "BodyLevelError",
    "Check",
    "Schema",
    "anything",
    "as_int",
    "boolean",
    "check_single_word",
    "choices_list",
    "enum",
    "has_space_or_control",
    "haproxy_rule",
    "int_choice",
    "integer",
    "ip_address",
    "listof",
    "load_json",
    "nested",
    "tag_list",
    "text",
    "unknown_attributes",
    "uuid_value",
]
