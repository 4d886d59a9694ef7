"""``octavia_mesh.agent.v1.AmphoraAgent``: protos in and out, the agent's errors mapped to status codes."""

from __future__ import annotations

import importlib.metadata
import logging
import socket

import grpc
from google.protobuf import timestamp_pb2

from octavia_mesh.amphora_agent.agent import Agent, NotConfigured
from octavia_mesh.amphora_agent.errors import mapped
from octavia_mesh.amphora_agent.haproxy import ProcessInfo, ProcessState
from octavia_mesh.amphora_agent.identity import AgentIdentity
from octavia_mesh.amphora_agent.keepalived import Keepalived
from octavia_mesh.amphora_agent.plug_rpc import PlugHandlers
from octavia_mesh.amphora_agent.vrrp_rpc import VrrpHandlers
from octavia_mesh.protos.agent.v1 import agent_pb2, agent_pb2_grpc

logger = logging.getLogger(__name__)

API_VERSION = "octavia_mesh.agent.v1"


_STATES = {
    ProcessState.STOPPED: agent_pb2.HaproxyProcess.STATE_STOPPED,
    ProcessState.STARTING: agent_pb2.HaproxyProcess.STATE_STARTING,
    ProcessState.RUNNING: agent_pb2.HaproxyProcess.STATE_RUNNING,
    ProcessState.RESTARTING: agent_pb2.HaproxyProcess.STATE_RESTARTING,
    ProcessState.FAILED: agent_pb2.HaproxyProcess.STATE_FAILED,
}


def _process(info: ProcessInfo) -> agent_pb2.HaproxyProcess:
    process = agent_pb2.HaproxyProcess(
        state=_STATES[info.state],
        master_pid=info.master_pid,
        worker_pid=info.worker_pid,
        old_worker_pids=info.old_worker_pids,
        config_sha256=info.config_sha256,
        reload_count=info.reload_count,
        restart_count=info.restart_count,
        last_error=info.last_error,
    )
    if info.start_time is not None:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromNanoseconds(int(info.start_time * 1e9))
        process.start_time.CopyFrom(stamp)
    return process


def _int(row: dict[str, str], key: str) -> int:
    value = row.get(key) or ""
    return int(value) if value.lstrip("-").isdigit() else 0


def _counters(row: dict[str, str]) -> agent_pb2.ProxyCounters:
    return agent_pb2.ProxyCounters(
        current_sessions=_int(row, "scur"),
        max_sessions=_int(row, "smax"),
        session_limit=_int(row, "slim"),
        total_sessions=_int(row, "stot"),
        bytes_in=_int(row, "bin"),
        bytes_out=_int(row, "bout"),
        total_requests=_int(row, "req_tot"),
        request_errors=_int(row, "ereq"),
        connection_errors=_int(row, "econ"),
        response_errors=_int(row, "eresp"),
        denied_requests=_int(row, "dreq"),
    )


def stat_rows_to_proto(
    rows: list[dict[str, str]],
) -> tuple[list[agent_pb2.FrontendStatus], list[agent_pb2.BackendStatus]]:
    """Frontends and backends (with their servers) from ``show stat`` rows; ``type`` 0/1/2 = fe/be/server."""
    frontends: list[agent_pb2.FrontendStatus] = []
    backends: dict[str, agent_pb2.BackendStatus] = {}
    for row in rows:
        name, kind = row.get("pxname", ""), row.get("type", "")
        if kind == "0":
            frontends.append(agent_pb2.FrontendStatus(name=name, status=row.get("status", ""), counters=_counters(row)))
            continue
        backend = backends.setdefault(name, agent_pb2.BackendStatus(name=name))
        if kind == "1":
            backend.status = row.get("status", "")
            backend.counters.CopyFrom(_counters(row))
        elif kind == "2":
            backend.servers.append(
                agent_pb2.ServerStatus(
                    name=row.get("svname", ""),
                    address=row.get("addr", ""),
                    status=row.get("status", ""),
                    check_status=row.get("check_status", "").lstrip("* "),
                    check_description=row.get("last_chk", ""),
                    weight=_int(row, "weight"),
                    last_change_seconds=_int(row, "lastchg"),
                    downtime_seconds=_int(row, "downtime"),
                    check_failures=_int(row, "chkfail"),
                    counters=_counters(row),
                )
            )
    return frontends, list(backends.values())


class AmphoraAgentServicer(VrrpHandlers, PlugHandlers, agent_pb2_grpc.AmphoraAgentServicer):
    """Thin: requests to :class:`Agent` calls, results to responses."""

    def __init__(
        self,
        agent: Agent,
        amphora_id: str,
        identity: AgentIdentity | None = None,
        keepalived: Keepalived | None = None,
    ) -> None:
        self._agent = agent
        self._keepalived = keepalived  # the VRRP calls (ACTIVE_STANDBY), in vrrp_rpc
        self._amphora_id = amphora_id
        self._identity = identity
        self._hostname = socket.gethostname()
        try:
            self._version = importlib.metadata.version("octavia-mesh-amphora-agent")
        except importlib.metadata.PackageNotFoundError:
            self._version = "unknown"

    @mapped
    async def GetInfo(
        self, request: agent_pb2.GetInfoRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.GetInfoResponse:
        return agent_pb2.GetInfoResponse(
            amphora_id=self._amphora_id,
            hostname=self._hostname,
            agent_version=self._version,
            haproxy_version=self._agent.haproxy_version,
            api_version=API_VERSION,
            load_balancer_ids=self._agent.load_balancer_ids(),
        )

    @mapped
    async def PutConfig(
        self, request: agent_pb2.PutConfigRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.PutConfigResponse:
        if not request.config.strip():
            raise ValueError("config is empty")
        digest, warnings = await self._agent.put_config(request.load_balancer_id, request.config.encode())
        logger.info("lb %s: configuration %s stored", request.load_balancer_id, digest[:12])
        return agent_pb2.PutConfigResponse(config_sha256=digest, warnings=warnings)

    @mapped
    async def PutCertificate(
        self, request: agent_pb2.PutCertificateRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.PutCertificateResponse:
        path, digest = await self._agent.put_certificate(request.load_balancer_id, request.name, request.pem)
        return agent_pb2.PutCertificateResponse(path=str(path), sha256=digest)

    @mapped
    async def DeleteCertificate(
        self, request: agent_pb2.DeleteCertificateRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.DeleteCertificateResponse:
        await self._agent.delete_certificate(request.load_balancer_id, request.name, request.allow_missing)
        return agent_pb2.DeleteCertificateResponse()

    @mapped
    async def Activate(
        self, request: agent_pb2.ActivateRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.ActivateResponse:
        reloaded, info = await self._agent.activate(request.load_balancer_id)
        logger.info("lb %s: configuration active (%s)", request.load_balancer_id, "reloaded" if reloaded else "started")
        return agent_pb2.ActivateResponse(reloaded=reloaded, process=_process(info))

    @mapped
    async def Start(
        self, request: agent_pb2.StartRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.StartResponse:
        return agent_pb2.StartResponse(process=_process(await self._agent.start_haproxy(request.load_balancer_id)))

    @mapped
    async def Stop(self, request: agent_pb2.StopRequest, context: grpc.aio.ServicerContext) -> agent_pb2.StopResponse:
        return agent_pb2.StopResponse(process=_process(await self._agent.stop_haproxy(request.load_balancer_id)))

    @mapped
    async def GetStatus(
        self, request: agent_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.GetStatusResponse:
        status = await self._agent.status(request.load_balancer_id)
        frontends, backends = stat_rows_to_proto(status.stat_rows)
        return agent_pb2.GetStatusResponse(process=_process(status.process), frontends=frontends, backends=backends)

    @mapped
    async def DeleteLoadBalancer(
        self, request: agent_pb2.DeleteLoadBalancerRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.DeleteLoadBalancerResponse:
        await self._agent.delete(request.load_balancer_id, request.allow_missing)
        return agent_pb2.DeleteLoadBalancerResponse()

    @mapped
    async def RotateCertificate(
        self, request: agent_pb2.RotateCertificateRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.RotateCertificateResponse:
        if self._identity is None:
            raise NotConfigured("this agent's identity cannot be replaced")
        digest = self._identity.replace(request.certificate, request.private_key)
        return agent_pb2.RotateCertificateResponse(certificate_sha256=digest)
