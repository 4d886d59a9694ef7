"""Providers: ``/v2/lbaas/providers`` and their flavor / availability-zone capabilities."""

from __future__ import annotations

from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import InvalidInput
from octavia_mesh.api.policy import Rule

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


async def list_(app: App, call: Call) -> Reply:
    call.caller.check(Rule.READ)
    return Reply(200, {"providers": [{"name": n, "description": d} for n, d in app.settings.providers.items()]})


async def flavor_capabilities(app: App, call: Call) -> Reply:
    call.caller.check(Rule.ADMIN)
    resolve_provider(app, call.id)
    return Reply(200, {"flavor_capabilities": []})


async def availability_zone_capabilities(app: App, call: Call) -> Reply:
    call.caller.check(Rule.ADMIN)
    resolve_provider(app, call.id)
    return Reply(200, {"availability_zone_capabilities": []})


HANDLERS = {
    "ListProviders": list_,
    "ListFlavorCapabilities": flavor_capabilities,
    "ListAvailabilityZoneCapabilities": availability_zone_capabilities,
}
