"""The VRRP calls of ``octavia_mesh.agent.v1.AmphoraAgent`` (``PutVrrpConfig``, ``StartVrrp``, ``StopVrrp``,
``GetVrrpStatus``): protos in and out of :class:`~octavia_mesh.amphora_agent.keepalived.Keepalived`."""

from __future__ import annotations

import grpc
from google.protobuf import timestamp_pb2

from octavia_mesh.amphora_agent.errors import mapped
from octavia_mesh.amphora_agent.keepalived import Keepalived, VrrpError, VrrpInfo, VrrpState
from octavia_mesh.protos.agent.v1 import agent_pb2

_STATES = {
    VrrpState.UNSPECIFIED: agent_pb2.VrrpStatus.STATE_UNSPECIFIED,
    VrrpState.BACKUP: agent_pb2.VrrpStatus.STATE_BACKUP,
    VrrpState.MASTER: agent_pb2.VrrpStatus.STATE_MASTER,
    VrrpState.FAULT: agent_pb2.VrrpStatus.STATE_FAULT,
    VrrpState.STOP: agent_pb2.VrrpStatus.STATE_STOP,
}


def status_proto(info: VrrpInfo) -> agent_pb2.VrrpStatus:
    status = agent_pb2.VrrpStatus(
        running=info.running,
        pid=info.pid,
        state=_STATES[info.state],
        config_sha256=info.config_sha256,
        restart_count=info.restart_count,
        last_error=info.last_error,
    )
    if info.state_time is not None:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromNanoseconds(int(info.state_time * 1e9))
        status.state_time.CopyFrom(stamp)
    return status


class VrrpHandlers:
    """Mixed into the agent's servicer, which sets ``_keepalived`` (None: this agent runs no keepalived)."""

    _keepalived: Keepalived | None

    def _vrrp(self) -> Keepalived:
        if self._keepalived is None:
            raise VrrpError("this agent does not run keepalived")
        return self._keepalived

    @mapped
    async def PutVrrpConfig(
        self, request: agent_pb2.PutVrrpConfigRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.PutVrrpConfigResponse:
        return agent_pb2.PutVrrpConfigResponse(config_sha256=await self._vrrp().put_config(request.config))

    @mapped
    async def StartVrrp(
        self, request: agent_pb2.StartVrrpRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.StartVrrpResponse:
        keepalived = self._vrrp()
        reloaded = await keepalived.start()
        return agent_pb2.StartVrrpResponse(reloaded=reloaded, status=status_proto(keepalived.info()))

    @mapped
    async def StopVrrp(
        self, request: agent_pb2.StopVrrpRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.StopVrrpResponse:
        keepalived = self._vrrp()
        await keepalived.stop()
        return agent_pb2.StopVrrpResponse(status=status_proto(keepalived.info()))

    @mapped
    async def GetVrrpStatus(
        self, request: agent_pb2.GetVrrpStatusRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.VrrpStatus:
        return status_proto(self._vrrp().info())
