"""Addresses of a local VIP subnet: handed out once each, given back when their load balancer goes.

The embedded data plane binds each load balancer's VIP on an address of 127.0.0.0/8, which needs no
root. An allocation is a row keyed by (subnet, address), so two concurrent creates can never get the same
address: the loser's insert fails and it tries the next free one.

On PostgreSQL the loser would not fail at once: an insert that meets another transaction's uncommitted row
waits for that whole transaction (a create's, seconds on a busy machine), and then, failing, tries the next
address, which the creates that came meanwhile have taken first. At a few creates in flight one create kept
losing for a minute (the edge's 504). So there each candidate is first claimed with a transaction-scoped
advisory lock taken without waiting: an address another create holds is skipped, never waited for.
"""

from __future__ import annotations

import hashlib
import ipaddress

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.common.db.models import VipAllocation


class AddressUnavailable(Exception):
    """The requested address is taken, or the subnet has none left."""


def usable_addresses(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=True)


async def allocate(
    session: AsyncSession, subnet_id: str, cidr: str, load_balancer_id: str, requested: str | None = None
) -> str:
    """Allocate ``requested`` (or the lowest free address) of ``cidr`` to ``load_balancer_id``."""
    network = usable_addresses(cidr)
    if requested is not None:
        if ipaddress.ip_address(requested) not in network:
            raise AddressUnavailable(f"{requested} is not in the subnet's range {cidr}")
        if not await _claim(session, subnet_id, requested, load_balancer_id):
            raise AddressUnavailable(f"{requested} is already allocated")
        return requested
    taken = set(
        (await session.execute(select(VipAllocation.address).where(VipAllocation.subnet_id == subnet_id))).scalars()
    )
    for candidate in network.hosts():
        address = str(candidate)
        if address in taken:
            continue
        if await _claim(session, subnet_id, address, load_balancer_id, wait=False):
            return address
    raise AddressUnavailable(f"no free address left in {cidr}")


def _lock_key(subnet_id: str, address: str) -> int:
    """A signed 64-bit key naming one address of one subnet (PostgreSQL's advisory lock space)."""
    digest = hashlib.blake2b(f"vip:{subnet_id}:{address}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _in_flight(session: AsyncSession, subnet_id: str, address: str) -> bool:
    """Whether another transaction is claiming ``address`` right now (PostgreSQL; elsewhere: never known).

    The lock is held until this transaction ends, so a create that gets it is the only one inserting the
    address until it commits or rolls back."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    got = await session.scalar(select(func.pg_try_advisory_xact_lock(_lock_key(subnet_id, address))))
    return not got


async def _claim(
    session: AsyncSession, subnet_id: str, address: str, load_balancer_id: str, *, wait: bool = True
) -> bool:
    if not wait and await _in_flight(session, subnet_id, address):
        return False
    try:
        async with session.begin_nested():
            session.add(VipAllocation(subnet_id=subnet_id, address=address, load_balancer_id=load_balancer_id))
    except IntegrityError:
        return False
    return True


async def release(session: AsyncSession, load_balancer_id: str) -> None:
    """Give back every address of ``load_balancer_id``."""
    await session.execute(delete(VipAllocation).where(VipAllocation.load_balancer_id == load_balancer_id))
