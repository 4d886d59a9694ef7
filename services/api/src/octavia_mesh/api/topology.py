"""Load-balancer topologies: SINGLE (one amphora) and ACTIVE_STANDBY (two, the VIP moved by VRRP).

As in Octavia, a load balancer's topology comes from its flavor profile's ``loadbalancer_topology``, else from
the configured default (``default_topology``, Octavia's ``[controller_worker] loadbalancer_topology``), and is
kept in ``load_balancer.topology``, which the worker reads to choose its flows.

ACTIVE_STANDBY amphorae on one machine need network namespaces and keepalived, so root. The API decides
whether to accept them without asking the worker (services share only the database and the protos): by the
``active_standby`` setting, whose default ``auto`` checks this process's own machine, which is where the
embedded mesh (``octavia-mesh up``) runs its amphorae. A deployment whose amphorae live elsewhere sets
``enabled`` or ``disabled``. Refused requests get Octavia's 501 for an option the provider does not support,
before anything is written, so no load balancer is left PENDING_* or ERROR.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api.errors import NotImplementedByProvider
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.common.db.models import Flavor, FlavorProfile

SINGLE, ACTIVE_STANDBY = "SINGLE", "ACTIVE_STANDBY"
#: Providers that build amphorae by topology; the others (noop) keep the flavor's value without meaning.
AMPHORA_PROVIDERS = ("amphora",)
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *_SBIN]))


def missing_for_active_standby(
    euid: int | None = None,
    find: Callable[[str], str | None] = _which,
    netns: bool | None = None,
) -> list[str]:
    """What this machine lacks to run ACTIVE_STANDBY amphorae (arguments default to the real machine)."""
    missing = []
    if (os.geteuid() if euid is None else euid) != 0:
        missing.append("root privileges (network namespaces, veth links, VRRP)")
    if find("ip") is None:
        missing.append("the ip command (package iproute2)")
    if find("keepalived") is None:
        missing.append("keepalived (Debian/Ubuntu package keepalived: apt-get install keepalived)")
    if not (os.path.exists("/proc/self/ns/net") if netns is None else netns):
        missing.append("network namespace support in the kernel")
    return missing


def active_standby_refusal(settings: ApiSettings) -> str | None:
    """Why this deployment does not build ACTIVE_STANDBY load balancers, or None when it does."""
    if settings.active_standby == "enabled":
        return None
    if settings.active_standby == "disabled":
        return "it is disabled in this deployment (OCTAVIA_MESH_API_ACTIVE_STANDBY=disabled)"
    missing = missing_for_active_standby()  # a few stat calls: checked per request, so installing keepalived counts
    return f"it needs {'; '.join(missing)} on the machine that runs the amphorae" if missing else None


async def topology_for(settings: ApiSettings, session: AsyncSession, provider: str, flavor_id: str | None) -> str:
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
    if provider in AMPHORA_PROVIDERS and topology == ACTIVE_STANDBY:
        refusal = active_standby_refusal(settings)
        if refusal is not None:
            raise NotImplementedByProvider(
                f"Provider '{provider}' does not support a requested option: loadbalancer_topology "
                f"ACTIVE_STANDBY: {refusal}. This deployment builds SINGLE load balancers (one amphora)."
            )
    return topology
