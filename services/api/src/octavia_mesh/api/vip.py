"""Choosing a new load balancer's VIP, through the network driver (:mod:`octavia_mesh.common.network`).

Which driver allocates a provider's VIPs is a fact the provider publishes (``Facts.vip_from_network`` in
:mod:`octavia_mesh.common.capabilities`; the API names no provider):

* A provider whose VIPs come from the deployment's network (the amphora provider) uses the configured driver
  (setting ``network_driver``): by default ``local``, which gives each load balancer its own address of the
  local VIP subnet, a range of 127.0.0.0/8 (no root needed), allocated in the create's transaction and given
  back on delete. That subnet has a stable id (settings ``local_vip_subnet_id``), which ``octavia-mesh up``
  prints and the edge answers Neutron-style subnet lookups for.
* Any other (the noop provider; a provider that published no facts) has no network of ours: like Octavia's
  no-op network driver, it keeps the address asked for, or hands out ``198.51.100.1`` (TEST-NET-2), and
  derives stable port and network ids.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api.errors import Conflict, InvalidInput
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.common import network
from octavia_mesh.common.capabilities import Facts
from octavia_mesh.common.network.local import LocalNetworkDriver, LocalSubnet
from octavia_mesh.common.network.noop import NOOP_ADDRESS, NoopNetworkDriver

__all__ = ["NOOP_ADDRESS", "allocate", "driver_for"]

logger = logging.getLogger(__name__)


@functools.cache
def _configured(settings: ApiSettings) -> network.NetworkDriver:
    if settings.network_driver == "local":
        return LocalNetworkDriver(
            LocalSubnet(settings.local_vip_subnet_id, settings.local_vip_network_id, settings.local_vip_cidr)
        )
    if settings.network_driver == "neutron":
        return network.create_driver("neutron", cloud=settings.openstack_cloud)
    return network.create_driver(settings.network_driver)


def driver_for(settings: ApiSettings, facts: Facts) -> network.NetworkDriver:
    """The network driver that allocates the VIPs of the load balancers of a provider with ``facts``."""
    return _configured(settings) if facts.vip_from_network else NoopNetworkDriver()


async def allocate(
    settings: ApiSettings,
    session: AsyncSession,
    facts: Facts,
    values: dict[str, Any],
    lb_id: str,
    project_id: str = "",
) -> network.Vip:
    """Allocate the VIP of a new load balancer (of a provider with ``facts``) from its request ``values``."""
    request = network.VipRequest.from_values(lb_id, project_id, values)
    driver = driver_for(settings, facts)
    try:
        allocated = await driver.allocate_vip(session, request)
    except network.InvalidVip as exc:
        raise InvalidInput(str(exc)) from None
    except network.VipUnavailable as exc:
        raise Conflict(str(exc)) from None
    if not isinstance(driver, (LocalNetworkDriver, NoopNetworkDriver)):
        _give_back_on_rollback(session, driver, allocated)
    return allocated


async def check_security_groups(settings: ApiSettings, facts: Facts, sg_ids: list[str]) -> None:
    """Octavia's ``security_group_exists`` for each of a load balancer's new ``vip_sg_ids`` (400 naming it)."""
    try:
        await driver_for(settings, facts).check_security_groups(sg_ids)
    except network.InvalidVip as exc:
        raise InvalidInput(str(exc)) from None


#: Deallocations under way (a task nobody references may be collected before it ran).
_RELEASING: set[asyncio.Task[None]] = set()


def _give_back_on_rollback(session: AsyncSession, driver: network.NetworkDriver, allocated: network.Vip) -> None:
    """A VIP from outside the database (a Neutron port) does not roll back with the create's transaction:
    when the create is refused after the allocation (a bad listener of its tree, a conflict at commit), give
    it back, as Octavia's API deletes the VIP port it made when the create fails."""
    loop = asyncio.get_running_loop()
    sync = session.sync_session

    async def release() -> None:
        try:
            await driver.deallocate_vip(session, allocated)
        except Exception:
            logger.exception("could not give back the VIP port %s of a refused create", allocated.port_id)

    def rolled_back(_: object) -> None:
        event.remove(sync, "after_commit", committed)
        task = loop.create_task(release())
        _RELEASING.add(task)
        task.add_done_callback(_RELEASING.discard)

    def committed(_: object) -> None:
        event.remove(sync, "after_rollback", rolled_back)

    event.listen(sync, "after_rollback", rolled_back, once=True)
    event.listen(sync, "after_commit", committed, once=True)
