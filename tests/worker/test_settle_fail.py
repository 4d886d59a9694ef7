"""A failed change leaves only its subjects in ERROR; parents go back to ACTIVE (issue 10: ERROR is no dead end).

Before, a failed health monitor create left its pool in ERROR too, and the pool's children could then not even
be deleted ("Pool ... is immutable"). Octavia's reverts (``HealthMonitorToErrorOnRevertTask`` and the like) put
the parents back to ACTIVE; ``lifecycle.transitions.fail`` does the same.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common.commands import Kind
from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import HealthMonitor, Listener, LoadBalancer, Member, Pool
from octavia_mesh.common.lifecycle.transitions import SUBJECTS, fail


async def plant(engine: AsyncEngine, statuses: dict[str, str]) -> dict[str, str]:
    """A load balancer with listener, pool, member and monitor in the given provisioning statuses."""
    ids = {kind: str(uuid.uuid4()) for kind in ("lb", "listener", "pool", "member", "monitor")}
    _, write = session_factories(engine)

    def common(kind: str) -> dict[str, Any]:
        return {"project_id": "p", "provisioning_status": statuses.get(kind, "ACTIVE"), "operating_status": "ONLINE"}

    async with write() as session, session.begin():
        session.add(LoadBalancer(id=ids["lb"], provider="amphora", **common("lb")))
        await session.flush()
        session.add(
            Pool(
                id=ids["pool"],
                load_balancer_id=ids["lb"],
                protocol="HTTP",
                lb_algorithm="ROUND_ROBIN",
                **common("pool"),
            )
        )
        await session.flush()
        session.add(
            Listener(
                id=ids["listener"],
                load_balancer_id=ids["lb"],
                protocol="HTTP",
                protocol_port=80,
                default_pool_id=ids["pool"],
                **common("listener"),
            )
        )
        session.add(
            Member(id=ids["member"], pool_id=ids["pool"], address="10.0.0.1", protocol_port=80, **common("member"))
        )
        session.add(
            HealthMonitor(
                id=ids["monitor"],
                pool_id=ids["pool"],
                type="HTTP",
                delay=5,
                timeout=3,
                max_retries=2,
                **common("monitor"),
            )
        )
    return ids


async def statuses_after(engine: AsyncEngine, ids: dict[str, str], kind: Kind | None) -> dict[str, str]:
    _, write = session_factories(engine)
    async with write() as session, session.begin():
        await fail(session, ids["lb"], SUBJECTS.get(kind) if kind is not None else None)
    read, _ = session_factories(engine)
    models = {"lb": LoadBalancer, "listener": Listener, "pool": Pool, "member": Member, "monitor": HealthMonitor}
    async with read() as session:
        return {kind: (await session.get(model, ids[kind])).provisioning_status for kind, model in models.items()}


async def test_failed_monitor_create_leaves_the_pool_active(engine: AsyncEngine) -> None:
    pending = {
        "lb": "PENDING_UPDATE",
        "listener": "PENDING_UPDATE",
        "pool": "PENDING_UPDATE",
        "monitor": "PENDING_CREATE",
    }
    ids = await plant(engine, pending)
    after = await statuses_after(engine, ids, Kind.RESOURCE_KIND_HEALTH_MONITOR)
    assert after == {"lb": "ACTIVE", "listener": "ACTIVE", "pool": "ACTIVE", "member": "ACTIVE", "monitor": "ERROR"}


async def test_failed_pool_update_is_the_pools_error_only(engine: AsyncEngine) -> None:
    ids = await plant(engine, {"lb": "PENDING_UPDATE", "listener": "PENDING_UPDATE", "pool": "PENDING_UPDATE"})
    after = await statuses_after(engine, ids, Kind.RESOURCE_KIND_POOL)
    assert after == {"lb": "ACTIVE", "listener": "ACTIVE", "pool": "ERROR", "member": "ACTIVE", "monitor": "ACTIVE"}


async def test_failed_member_delete(engine: AsyncEngine) -> None:
    pending = {
        "lb": "PENDING_UPDATE",
        "listener": "PENDING_UPDATE",
        "pool": "PENDING_UPDATE",
        "member": "PENDING_DELETE",
    }
    ids = await plant(engine, pending)
    after = await statuses_after(engine, ids, Kind.RESOURCE_KIND_MEMBER)
    assert after == {"lb": "ACTIVE", "listener": "ACTIVE", "pool": "ACTIVE", "member": "ERROR", "monitor": "ACTIVE"}


async def test_failed_load_balancer_create_is_all_error(engine: AsyncEngine) -> None:
    """A single-call create that failed: everything it was creating is in ERROR, the load balancer too."""
    everything = dict.fromkeys(("listener", "pool", "member", "monitor"), "PENDING_CREATE")
    ids = await plant(engine, {"lb": "PENDING_CREATE", **everything})
    after = await statuses_after(engine, ids, Kind.RESOURCE_KIND_LOAD_BALANCER)
    assert set(after.values()) == {"ERROR"}
