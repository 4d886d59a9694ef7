"""``driveragent.v1`` messages as octavia-lib's provider dictionaries.

octavia-lib hands drivers ``data_models.*.to_dict(recurse=True, render_unsets=True)``:
every field present, ``None`` when unset, nested objects as dictionaries. This
renders the typed messages the same way, field names unchanged (they are
octavia-lib's), so a driver written against octavia-lib's dictionaries (or
``data_models.LoadBalancer.from_dict``) reads them as it would Octavia's.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

#: The Octavia Mesh additions, left out unless asked for (octavia-lib's ``from_dict`` would refuse them).
STATUS_FIELDS = frozenset({"provisioning_status", "operating_status"})


def to_provider_dict(message: Message, *, statuses: bool = False) -> dict[str, Any]:
    """``message`` as octavia-lib's dictionary; ``statuses`` keeps each object's two status fields."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        name = field.name
        if name in STATUS_FIELDS and not statuses:
            continue
        value = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[name] = dict(value)
        elif field.is_repeated:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                out[name] = [_value(item, statuses) for item in value]
            else:
                out[name] = list(value)
        elif field.has_presence and not message.HasField(name):
            out[name] = None
        else:
            out[name] = _value(value, statuses)
    return out


def _value(value: Any, statuses: bool) -> Any:
    if isinstance(value, struct_pb2.Struct):
        return json_format.MessageToDict(value)
    if isinstance(value, Message):
        return to_provider_dict(value, statuses=statuses)
    return value
