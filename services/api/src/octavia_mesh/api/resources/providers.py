"""Providers: ``/v2/lbaas/providers`` and their flavor / availability-zone capabilities.

Besides the three calls, this module holds what the other handlers ask of a
provider: its facts (:func:`facts_of`, from the registry its workers write:
no provider is known here by name), and the check of a profile's
``flavor_data`` / ``availability_zone_data`` against the keys the provider
accepts, with the messages Octavia's amphora driver produces through
``jsonschema``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import InvalidInput, NotImplementedByProvider, Unavailable
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import parse_query, select_fields, show_fields
from octavia_mesh.common.capabilities import UNKNOWN, Facts, Option

logger = logging.getLogger(__name__)

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


# --- what the API knows of a provider ----------------------------------------------


async def facts_of(app: App, provider: str) -> Facts:
    """What ``provider`` published in the registry (:mod:`octavia_mesh.common.capabilities`), or, when it
    published nothing, :data:`~octavia_mesh.common.capabilities.UNKNOWN` (the module says why that answer)."""
    if app.provider_facts is None:
        return UNKNOWN
    try:
        facts = await app.provider_facts(provider)
    except Exception as exc:  # NATS unreachable and the provider never read: no guess (a wrong VIP would stay)
        logger.warning("could not read the facts of provider %s: %s", provider, exc)
        raise Unavailable(f"Provider '{provider}' cannot be reached at the moment. Please retry later.") from None
    return UNKNOWN if facts is None else facts


_JSON_TYPES: dict[str, type | tuple[type, ...]] = {"string": str, "boolean": bool, "array": list, "object": dict}


def _schema_error(data: Any, capabilities: Sequence[Option]) -> str | None:
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
        if not isinstance(value, _JSON_TYPES.get(cap.type, object)):  # a type this API does not know: any value
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


async def check_profile_data(app: App, provider_name: str, data: Any, *, zone: bool) -> None:
    """Check decoded profile data against the provider's capabilities (400 if not enabled, 501 if unsupported)."""
    provider = resolve_provider(app, provider_name)
    facts = await facts_of(app, provider)
    capabilities = facts.zone_options if zone else facts.flavor_options
    message = _schema_error(data, capabilities)
    if message is not None:
        raise NotImplementedByProvider(f"Provider '{provider_name}' does not support a requested option: {message}")


# --- handlers -------------------------------------------------------------------------


async def list_(app: App, call: Call) -> Reply:
    call.caller.check(Rule.READ)
    fields = show_fields(call.query)  # Octavia ignores filters and paging here, but honours fields
    items = [{"name": n, "description": d} for n, d in app.settings.providers.items()]
    return Reply(200, {"providers": [select_fields(i, fields) for i in items]})


def _capabilities(call: Call, capabilities: Sequence[Option]) -> list[dict[str, Any]]:
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
    facts = await facts_of(app, resolve_provider(app, call.id))
    return Reply(200, {"flavor_capabilities": _capabilities(call, facts.flavor_options)})


async def availability_zone_capabilities(app: App, call: Call) -> Reply:
    call.caller.check(Rule.ADMIN)
    facts = await facts_of(app, resolve_provider(app, call.id))
    return Reply(200, {"availability_zone_capabilities": _capabilities(call, facts.zone_options)})


HANDLERS = {
    "ListProviders": list_,
    "ListFlavorCapabilities": flavor_capabilities,
    "ListAvailabilityZoneCapabilities": availability_zone_capabilities,
}
