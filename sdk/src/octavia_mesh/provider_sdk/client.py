"""``DriverLibrary``: octavia-lib's driver library over the driver agent's gRPC service.

The methods and their arguments are octavia-lib's (``update_loadbalancer_status``
takes its status dictionary, ``update_listener_statistics`` its statistics
dictionary, ``get_*`` return provider dictionaries or ``None``); they are
coroutines, and failures raise the same-named errors with the same fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from octavia_mesh.protos.driveragent.v1 import driver_agent_pb2 as api
from octavia_mesh.protos.driveragent.v1 import driver_agent_pb2_grpc
from octavia_mesh.provider_sdk.models import to_provider_dict

#: octavia-lib's status dictionary keys (``octavia_lib.common.constants``) to the request's fields.
STATUS_KEYS = {
    "loadbalancers": "load_balancers",
    "listeners": "listeners",
    "pools": "pools",
    "members": "members",
    "healthmonitors": "health_monitors",
    "l7policies": "l7_policies",
    "l7rules": "l7_rules",
}
_LIB_NAMES = {field: key for key, field in STATUS_KEYS.items()}
_COUNTERS = ("active_connections", "bytes_in", "bytes_out", "request_errors", "total_connections")
#: Octavia's ``[driver_agent] status_request_timeout`` / ``stats_request_timeout`` / ``get_request_timeout``.
DEFAULT_TIMEOUT_S = 5.0


class DriverAgentError(Exception):
    """The driver agent could not be reached or failed (octavia-lib's ``DriverAgentTimeout`` and kin)."""


class UpdateStatusError(DriverAgentError):
    """A status report was refused (nothing of it was applied); as octavia-lib's, with the object named."""

    def __init__(
        self,
        fault_string: str,
        status_object: str | None = None,
        status_object_id: str | None = None,
        status_record: Any = None,
        code: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(fault_string)
        self.fault_string = fault_string
        self.status_object = status_object
        self.status_object_id = status_object_id
        self.status_record = status_record
        self.code = code


class UpdateStatisticsError(DriverAgentError):
    """A statistics report was refused; as octavia-lib's, with the listener named."""

    def __init__(
        self,
        fault_string: str,
        stats_object: str | None = None,
        stats_object_id: str | None = None,
        stats_record: Any = None,
        code: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(fault_string)
        self.fault_string = fault_string
        self.stats_object = stats_object
        self.stats_object_id = stats_object_id
        self.stats_record = stats_record
        self.code = code


def refused_object(error: grpc.aio.AioRpcError) -> tuple[str | None, str | None]:
    """``(kind, id)`` from the ``google.rpc.ResourceInfo`` detail of a refusal, kinds in octavia-lib's spelling."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            info = error_details_pb2.ResourceInfo()
            if detail.Unpack(info):
                return _LIB_NAMES.get(info.resource_type, info.resource_type), info.resource_name or None
    return None, None


def _status_entries(items: Sequence[Mapping[str, Any]]) -> list[api.StatusUpdate]:
    return [
        api.StatusUpdate(
            id=str(item.get("id") or ""),
            provisioning_status=item.get("provisioning_status") or "",
            operating_status=item.get("operating_status") or "",
        )
        for item in items
    ]


class DriverLibrary:
    """A provider's client of the driver agent (one channel; use it as an async context manager or ``close``)."""

    def __init__(self, address: str, provider: str = "", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Args:
        address: ``host:port`` of the driver agent.
        provider: the provider reporting; when set, the driver agent refuses reports about other providers'
            objects.
        timeout_s: deadline of each call; calls wait that long for the driver agent to come up.
        """
        self._channel = grpc.aio.insecure_channel(address)
        self.stub = driver_agent_pb2_grpc.DriverAgentStub(self._channel)
        self.provider = provider
        self.timeout_s = timeout_s

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> DriverLibrary:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _call(self, method: Any, request: Any) -> Any:
        return await method(request, timeout=self.timeout_s, wait_for_ready=True)

    # --- reports ---------------------------------------------------------------------------------

    async def update_loadbalancer_status(self, status: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
        """Apply octavia-lib's status dictionary; returns the load balancers whose pending change it completed.

        Raises:
            UpdateStatusError: the report was refused (nothing was applied) or could not be delivered.
        """
        unknown = set(status) - set(STATUS_KEYS) - set(STATUS_KEYS.values())
        if unknown:
            raise UpdateStatusError(f"unknown status keys: {', '.join(sorted(unknown))}")
        fields = {STATUS_KEYS.get(key, key): _status_entries(items) for key, items in status.items()}
        try:
            reply = await self._call(
                self.stub.UpdateStatuses, api.UpdateStatusesRequest(provider=self.provider, **fields)
            )
        except grpc.aio.AioRpcError as exc:
            kind, object_id = refused_object(exc)
            raise UpdateStatusError(exc.details() or str(exc.code()), kind, object_id, code=exc.code()) from None
        return list(reply.completed_load_balancer_ids)

    async def update_listener_statistics(self, statistics: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Record octavia-lib's statistics dictionary (``{"listeners": [{"id": ..., "bytes_in": ...}]}``).

        Entries may name the counting instance as ``amphora_id``; without it the listener stands for itself.

        Raises:
            UpdateStatisticsError: the report was refused or could not be delivered.
        """
        entries = [
            api.ListenerStatistics(
                id=str(item.get("id") or ""),
                amphora_id=str(item.get("amphora_id") or ""),
                **{name: int(item.get(name) or 0) for name in _COUNTERS},
            )
            for item in statistics.get("listeners", [])
        ]
        try:
            await self._call(
                self.stub.UpdateStatistics, api.UpdateStatisticsRequest(listeners=entries, provider=self.provider)
            )
        except grpc.aio.AioRpcError as exc:
            kind, object_id = refused_object(exc)
            raise UpdateStatisticsError(exc.details() or str(exc.code()), kind, object_id, code=exc.code()) from None

    # --- reads -----------------------------------------------------------------------------------

    async def _get(self, method: Any, request: Any, field: str, statuses: bool) -> dict[str, Any] | None:
        try:
            reply = await self._call(method, request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise DriverAgentError(f"{exc.code().name}: {exc.details()}") from None
        return to_provider_dict(getattr(reply, field), statuses=statuses)

    async def get_loadbalancer(self, loadbalancer_id: str, *, statuses: bool = False) -> dict[str, Any] | None:
        """The load balancer with everything under it, or ``None`` (``statuses``: keep the status fields)."""
        request = api.GetLoadBalancerRequest(load_balancer_id=loadbalancer_id)
        return await self._get(self.stub.GetLoadBalancer, request, "load_balancer", statuses)

    async def get_listener(self, listener_id: str, *, statuses: bool = False) -> dict[str, Any] | None:
        request = api.GetListenerRequest(listener_id=listener_id)
        return await self._get(self.stub.GetListener, request, "listener", statuses)

    async def get_pool(self, pool_id: str, *, statuses: bool = False) -> dict[str, Any] | None:
        return await self._get(self.stub.GetPool, api.GetPoolRequest(pool_id=pool_id), "pool", statuses)

    async def get_member(self, member_id: str, *, statuses: bool = False) -> dict[str, Any] | None:
        return await self._get(self.stub.GetMember, api.GetMemberRequest(member_id=member_id), "member", statuses)

    async def get_healthmonitor(self, healthmonitor_id: str, *, statuses: bool = False) -> dict[str, Any] | None:
        request = api.GetHealthMonitorRequest(health_monitor_id=healthmonitor_id)
        return await self._get(self.stub.GetHealthMonitor, request, "health_monitor", statuses)

    async def get_l7policy(self, l7policy_id: str, *, statuses: bool = False) -> dict[str, Any] | None:
        request = api.GetL7PolicyRequest(l7_policy_id=l7policy_id)
        return await self._get(self.stub.GetL7Policy, request, "l7_policy", statuses)

    async def get_l7rule(self, l7rule_id: str, *, statuses: bool = False) -> dict[str, Any] | None:
        request = api.GetL7RuleRequest(l7_rule_id=l7rule_id)
        return await self._get(self.stub.GetL7Rule, request, "l7_rule", statuses)

    async def get_flavor(self, flavor_id: str) -> dict[str, Any] | None:
        return await self._get(self.stub.GetFlavor, api.GetFlavorRequest(flavor_id=flavor_id), "flavor", False)

    async def get_availability_zone(self, name: str) -> dict[str, Any] | None:
        request = api.GetAvailabilityZoneRequest(name=name)
        return await self._get(self.stub.GetAvailabilityZone, request, "availability_zone", False)
