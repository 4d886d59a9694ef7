"""Providers: ``/v2/lbaas/providers`` and their flavor / availability-zone capabilities.

Besides the three calls, this module holds what the flavor-profile and
availability-zone-profile handlers share with it: the capabilities our
providers accept, and the check of a profile's ``flavor_data`` /
``availability_zone_data`` against them, with the messages Octavia's amphora
driver produces through ``jsonschema``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import InvalidInput, NotImplementedByProvider
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import parse_query, select_fields, show_fields

#: Octavia's deprecated alias of the amphora provider.
ALIASES = {"octavia": "amphora"}


def resolve_provider(app: App, name: str) -> str:
    """The enabled provider ``name`` refers to, or Octavia's 400."""
    providers = app.settings.providers
    if name in providers:
        return ALIASES.get(name, name)
    if ALIASES.get(name) in providers:
        return ALIASES[name]
    raise InvalidInput(f"Provider '{name}' is not enabled.")


# --- capabilities -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capability:
    """One key a profile's data may carry, with its JSON-schema type (and allowed values)."""

    name: str
    description: str
    type: str  # "string", "boolean" or "array", as in the amphora driver's JSON schema
    enum: tuple[str, ...] = ()


#: The amphora driver's flavor capabilities (octavia/api/drivers/amphora_driver/flavor_schema.py).
FLAVOR_CAPABILITIES = (
    Capability(
        "loadbalancer_topology",
        "The load balancer topology. One of: SINGLE - One amphora per load balancer. "
        "ACTIVE_STANDBY - Two amphora per load balancer.",
        "string",
        ("ACTIVE_STANDBY", "SINGLE"),  # jsonschema prints the enum in this (sorted) order
    ),
    Capability("compute_flavor", "The compute driver flavor ID.", "string"),
    Capability("amp_image_tag", "The amphora image tag.", "string"),
    Capability("sriov_vip", "When true, the VIP port will be created using an SR-IOV VF port.", "boolean"),
    Capability(
        "allow_member_sriov",
        "When true, users can request a member port be SR-IOV enabled at member creation time.",
        "boolean",
    ),
)

#: The amphora driver's availability-zone capabilities (availability_zone_schema.py).
AZ_CAPABILITIES = (
    Capability("compute_zone", "The compute availability zone.", "string"),
    Capability("volume_zone", "The volume availability zone.", "string"),
    Capability("management_network", "The management network ID for the amphora.", "string"),
    Capability(
        "valid_vip_networks",
        "List of network IDs that are allowed for VIP use. This overrides/replaces the list of allowed "
        "networks configured in `octavia.conf`.",
        "array",
    ),
)

#: Capabilities per provider. Every provider of this repository (today ``noop``) accepts the
#: amphora driver's keys, so that flavors and zones written for Octavia's amphora provider work
#: unchanged; a provider missing here gets the same set.
CAPABILITIES: dict[str, tuple[tuple[Capability, ...], tuple[Capability, ...]]] = {
    "amphora": (FLAVOR_CAPABILITIES, AZ_CAPABILITIES),
    "noop": (FLAVOR_CAPABILITIES, AZ_CAPABILITIES),
}


def flavor_capabilities_of(provider: str) -> tuple[Capability, ...]:
    return CAPABILITIES.get(provider, CAPABILITIES["amphora"])[0]


def zone_capabilities_of(provider: str) -> tuple[Capability, ...]:
    return CAPABILITIES.get(provider, CAPABILITIES["amphora"])[1]


_JSON_TYPES: dict[str, type | tuple[type, ...]] = {"string": str, "boolean": bool, "array": list, "object": dict}


def _schema_error(data: Any, capabilities: Sequence[Capability]) -> str | None:
    """The message ``jsonschema.validate`` gives for ``data``, or ``None`` when it is valid.

    Mirrors ``best_match``: a root error (wrong type, unknown keys) wins over a
    key's error; among keys the greatest name wins; for one key the type error
    wins over the enum error.
    """
    if not isinstance(data, dict):
        return f"{data!r} is not of type 'object'"
    known = {c.name: c for c in capabilities}
    extras = [k for k in data if k not in known]
    if extras:
        verb = "was" if len(extras) == 1 else "were"
        return f"Additional properties are not allowed ({', '.join(repr(k) for k in extras)} {verb} unexpected)"
    errors: dict[str, str] = {}
    for key, value in data.items():
        cap = known[key]
        if not isinstance(value, _JSON_TYPES[cap.type]):
            errors[key] = f"{key} {value!r} is not of type '{cap.type}'"
        elif cap.enum and value not in cap.enum:
            errors[key] = f"{key} {value!r} is not one of {list(cap.enum)!r}"
    return errors[max(errors)] if errors else None


def load_profile_data(raw: str | None, option: str) -> Any:
    """Decode a profile's JSON data string, or answer Octavia's ``InvalidOption`` 400."""
    try:
        if raw is None:
            raise ValueError("null")
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidInput(f"{raw} is not a valid option for {option}") from None


def check_profile_data(app: App, provider_name: str, data: Any, *, zone: bool) -> None:
    """Check decoded profile data against the provider's capabilities (400 if not enabled, 501 if unsupported)."""
    provider = resolve_provider(app, provider_name)
    capabilities = zone_capabilities_of(provider) if zone else flavor_capabilities_of(provider)
    message = _schema_error(data, capabilities)
    if message is not None:
        raise NotImplementedByProvider(f"Provider '{provider_name}' does not support a requested option: {message}")


# --- handlers -------------------------------------------------------------------------


async def list_(app: App, call: Call) -> Reply:
    call.caller.check(Rule.READ)
    fields = show_fields(call.query)  # Octavia ignores filters and paging here, but honours fields
    items = [{"name": n, "description": d} for n, d in app.settings.providers.items()]
    return Reply(200, {"providers": [select_fields(i, fields) for i in items]})


def _capabilities(call: Call, capabilities: Sequence[Capability]) -> list[dict[str, Any]]:
    params = parse_query(call.query)
    items = [{"name": c.name, "description": c.description} for c in capabilities]
    # Octavia compares the whole parameter, so a repeated name or description matches nothing.
    for key in ("name", "description"):
        if key in params:
            wanted = params[key]
            items = [i for i in items if len(wanted) == 1 and i[key] == wanted[0]]
    fields = show_fields(call.query)
    return [select_fields(i, fields) for i in items]


async def flavor_capabilities(app: App, call: Call) -> Reply:
    call.caller.check(Rule.ADMIN)
    provider = resolve_provider(app, call.id)
    return Reply(200, {"flavor_capabilities": _capabilities(call, flavor_capabilities_of(provider))})


async def availability_zone_capabilities(app: App, call: Call) -> Reply:
    call.caller.check(Rule.ADMIN)
    provider = resolve_provider(app, call.id)
    return Reply(200, {"availability_zone_capabilities": _capabilities(call, zone_capabilities_of(provider))})


HANDLERS = {
    "ListProviders": list_,
    "ListFlavorCapabilities": flavor_capabilities,
    "ListAvailabilityZoneCapabilities": availability_zone_capabilities,
}
