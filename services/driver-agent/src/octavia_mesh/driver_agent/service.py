"""The ``octavia_mesh.driveragent.v1.DriverAgent`` servicer.

Each RPC runs in one transaction (writes) or one read, again when the
database rolled it back to break a deadlock; refusals become gRPC statuses in
one place (:func:`_rpc`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from octavia_mesh.common import secrets
from octavia_mesh.common.db.retry import retry_transaction
from octavia_mesh.driver_agent import statistics, statuses, views
from octavia_mesh.driver_agent.errors import InvalidArgument, Refused, to_status
from octavia_mesh.driver_agent.owners import check_id
from octavia_mesh.protos.driveragent.v1 import driver_agent_pb2 as api
from octavia_mesh.protos.driveragent.v1 import driver_agent_pb2_grpc

logger = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE_NAME = "octavia_mesh.driveragent.v1.DriverAgent"


def _rpc(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Map :class:`Refused` onto its status (with rich details), anything else onto ``INTERNAL``."""

    @functools.wraps(method)
    async def wrapper(self: DriverAgent, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await method(self, request, context)
        except Refused as exc:
            code, message, trailers = to_status(exc)
            logger.info("%s refused: %s", method.__name__, message)
            await context.abort(code, message, trailers)
        except Exception:
            logger.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the driver agent's log")
        raise AssertionError("unreachable")  # abort() raises

    return wrapper


def _changes(request: api.UpdateStatusesRequest) -> list[statuses.Change]:
    return [
        statuses.Change(kind, index, item.id, item.provisioning_status, item.operating_status)
        for kind in statuses.KINDS
        for index, item in enumerate(getattr(request, kind))
    ]


class DriverAgent(driver_agent_pb2_grpc.DriverAgentServicer):
    """Status, statistics and object reads for provider drivers."""

    def __init__(
        self,
        read: async_sessionmaker[AsyncSession],
        write: async_sessionmaker[AsyncSession],
        keyring: secrets.Keyring | None = None,
    ) -> None:
        self._read = read
        self._write = write
        self._keyring = keyring

    # --- reports ---------------------------------------------------------------------------------

    @_rpc
    async def UpdateStatuses(  # noqa: N802 - gRPC method name
        self, request: api.UpdateStatusesRequest, context: grpc.aio.ServicerContext
    ) -> api.UpdateStatusesResponse:
        changes = _changes(request)

        async def work() -> list[str]:
            async with self._write() as session, session.begin():
                return await statuses.apply(session, changes, request.provider)

        completed = await retry_transaction(work)
        return api.UpdateStatusesResponse(completed_load_balancer_ids=completed)

    @_rpc
    async def UpdateStatistics(  # noqa: N802
        self, request: api.UpdateStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> api.UpdateStatisticsResponse:
        entries = [
            statistics.Counters(
                index,
                item.id,
                item.amphora_id,
                *(getattr(item, name) for name in statistics.COUNTERS),
            )
            for index, item in enumerate(request.listeners)
        ]

        async def work() -> None:
            async with self._write() as session, session.begin():
                await statistics.record(session, entries, request.provider)

        await retry_transaction(work)
        return api.UpdateStatisticsResponse()

    # --- reads -----------------------------------------------------------------------------------

    async def _read_object(
        self, kind: str, raw_id: str, field: str, render: Callable[[views.TreeView, Any], Any]
    ) -> Any:
        object_id = check_id(raw_id, kind, field)
        async with self._read() as session:
            tree, obj = await views.tree_of(session, kind, object_id)
            return await render(views.TreeView(session, tree, self._keyring), obj)

    @_rpc
    async def GetLoadBalancer(  # noqa: N802
        self, request: api.GetLoadBalancerRequest, context: grpc.aio.ServicerContext
    ) -> api.GetLoadBalancerResponse:
        async def render(view: views.TreeView, _obj: Any) -> Any:
            return await view.load_balancer()

        lb = await self._read_object("load_balancers", request.load_balancer_id, "load_balancer_id", render)
        return api.GetLoadBalancerResponse(load_balancer=lb)

    @_rpc
    async def GetListener(  # noqa: N802
        self, request: api.GetListenerRequest, context: grpc.aio.ServicerContext
    ) -> api.GetListenerResponse:
        async def render(view: views.TreeView, obj: Any) -> Any:
            return await view.listener(obj)

        return api.GetListenerResponse(
            listener=await self._read_object("listeners", request.listener_id, "listener_id", render)
        )

    @_rpc
    async def GetPool(self, request: api.GetPoolRequest, context: grpc.aio.ServicerContext) -> api.GetPoolResponse:  # noqa: N802
        async def render(view: views.TreeView, obj: Any) -> Any:
            return await view.pool(obj)

        return api.GetPoolResponse(pool=await self._read_object("pools", request.pool_id, "pool_id", render))

    @_rpc
    async def GetMember(  # noqa: N802
        self, request: api.GetMemberRequest, context: grpc.aio.ServicerContext
    ) -> api.GetMemberResponse:
        async def render(view: views.TreeView, obj: Any) -> Any:
            return view.member(obj)

        return api.GetMemberResponse(member=await self._read_object("members", request.member_id, "member_id", render))

    @_rpc
    async def GetHealthMonitor(  # noqa: N802
        self, request: api.GetHealthMonitorRequest, context: grpc.aio.ServicerContext
    ) -> api.GetHealthMonitorResponse:
        async def render(view: views.TreeView, obj: Any) -> Any:
            return view.health_monitor(obj)

        monitor = await self._read_object("health_monitors", request.health_monitor_id, "health_monitor_id", render)
        return api.GetHealthMonitorResponse(health_monitor=monitor)

    @_rpc
    async def GetL7Policy(  # noqa: N802
        self, request: api.GetL7PolicyRequest, context: grpc.aio.ServicerContext
    ) -> api.GetL7PolicyResponse:
        async def render(view: views.TreeView, obj: Any) -> Any:
            return view.l7policy(obj)

        policy = await self._read_object("l7_policies", request.l7_policy_id, "l7_policy_id", render)
        return api.GetL7PolicyResponse(l7_policy=policy)

    @_rpc
    async def GetL7Rule(  # noqa: N802
        self, request: api.GetL7RuleRequest, context: grpc.aio.ServicerContext
    ) -> api.GetL7RuleResponse:
        async def render(view: views.TreeView, obj: Any) -> Any:
            return view.l7rule(obj)

        rule = await self._read_object("l7_rules", request.l7_rule_id, "l7_rule_id", render)
        return api.GetL7RuleResponse(l7_rule=rule)

    @_rpc
    async def GetFlavor(  # noqa: N802
        self, request: api.GetFlavorRequest, context: grpc.aio.ServicerContext
    ) -> api.GetFlavorResponse:
        flavor_id = check_id(request.flavor_id, "flavors", "flavor_id")
        async with self._read() as session:
            return api.GetFlavorResponse(flavor=await views.flavor(session, flavor_id))

    @_rpc
    async def GetAvailabilityZone(  # noqa: N802
        self, request: api.GetAvailabilityZoneRequest, context: grpc.aio.ServicerContext
    ) -> api.GetAvailabilityZoneResponse:
        if not request.name or len(request.name) > 255:
            raise InvalidArgument("name: 1 to 255 characters expected", "availability_zones", request.name, "name")
        async with self._read() as session:
            return api.GetAvailabilityZoneResponse(
                availability_zone=await views.availability_zone(session, request.name)
            )
