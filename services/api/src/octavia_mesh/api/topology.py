"""Load-balancer topologies: SINGLE (one amphora) and ACTIVE_STANDBY (two, the VIP moved by VRRP).

As in Octavia, a load balancer's topology comes from its flavor profile's ``loadbalancer_topology``, else from
the configured default (``default_topology``, Octavia's ``[controller_worker] loadbalancer_topology``), and is
kept in ``load_balancer.topology``, which the worker reads to choose its flows.

Whether ACTIVE_STANDBY can be built is the workers' knowledge (the amphora provider needs network
namespaces, keepalived and root on the machines its workers run on): each worker announces what it can build
in the provider-capability registry (:mod:`octavia_mesh.common.capabilities`), and the API asks it. The
``active_standby`` setting overrides it: ``enabled`` accepts without asking, ``disabled`` refuses for every
provider whose workers announced themselves; ``auto`` (default) follows the registry. A provider no worker
announced (an out-of-tree provider, or none running yet) is not limited here. Refused requests get Octavia's
501 for an option the provider does not support, before anything is written, so no load balancer is left
PENDING_* or ERROR.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api.errors import NotImplementedByProvider
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.common.capabilities import ACTIVE_STANDBY, SINGLE, Capabilities
from octavia_mesh.common.db.models import Flavor, FlavorProfile

#: Asks the registry what a provider's workers can build (None: no registry, as without NATS).
AskCapabilities = Callable[[str], Awaitable[Capabilities | None]]

__all__ = ["ACTIVE_STANDBY", "SINGLE", "AskCapabilities", "active_standby_refusal", "topology_for"]


async def active_standby_refusal(settings: ApiSettings, provider: str, ask: AskCapabilities | None) -> str | None:
    """Why ``provider`` does not build ACTIVE_STANDBY load balancers here, or None when it does."""
    if settings.active_standby == "enabled":
        return None
    capabilities = await ask(provider) if ask is not None else None
    if capabilities is None:
        return None  # no worker announced the provider: not ours to limit
    if settings.active_standby == "disabled":
        return "it is disabled in this deployment (OCTAVIA_MESH_API_ACTIVE_STANDBY=disabled)"
    if ACTIVE_STANDBY in capabilities.topologies:
        return None
    return capabilities.why_not.get(ACTIVE_STANDBY, "not every worker of the provider can build it")


async def topology_for(
    settings: ApiSettings,
    session: AsyncSession,
    provider: str,
    flavor_id: str | None,
    ask: AskCapabilities | None = None,
) -> str:
    """The topology of a new load balancer of ``provider`` with ``flavor_id``; Octavia's 501 when this
    deployment cannot build it."""
    topology = settings.default_topology
    if flavor_id:
        flavor = await session.get(Flavor, flavor_id)
        profile = await session.get(FlavorProfile, flavor.flavor_profile_id) if flavor is not None else None
        try:
            data = json.loads(profile.flavor_data) if profile is not None and profile.flavor_data else {}
        except ValueError:
            data = {}
        if isinstance(data, dict) and data.get("loadbalancer_topology") in (SINGLE, ACTIVE_STANDBY):
            topology = data["loadbalancer_topology"]
    if topology == ACTIVE_STANDBY:
        refusal = await active_standby_refusal(settings, provider, ask)
        if refusal is not None:
            raise NotImplementedByProvider(
                f"Provider '{provider}' does not support a requested option: loadbalancer_topology "
                f"ACTIVE_STANDBY: {refusal}. This deployment builds SINGLE load balancers (one amphora)."
            )
    return topology
