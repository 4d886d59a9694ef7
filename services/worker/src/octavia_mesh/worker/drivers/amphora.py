"""Talking to amphora agents: the controller's side of ``octavia_mesh.agent.v1`` over mutual TLS."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from octavia_mesh.common.network import AmphoraInterface
from octavia_mesh.common.observability import tracing
from octavia_mesh.common.observability.interceptors import RequestIdClientInterceptor
from octavia_mesh.protos.agent.v1 import agent_pb2, agent_pb2_grpc
from octavia_mesh.worker.drivers.certificates import CertBundle, amphora_identity

#: Channel options that keep gRPC's reconnect attempts to an agent at most a second apart (see ``_stub``).
AGENT_RECONNECT_BACKOFF = (("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000))


class AmphoraError(Exception):
    """An agent refused a call or could not be reached."""


@dataclass(frozen=True, slots=True)
class AgentEndpoint:
    """Where an amphora's agent listens, and who it must prove to be."""

    address: str
    amphora_id: str


class AmphoraDriver(Protocol):
    """The calls the flows make on an amphora."""

    async def wait_until_reachable(self, endpoint: AgentEndpoint, timeout_s: float) -> None: ...

    async def put_certificate(self, endpoint: AgentEndpoint, lb_id: str, name: str, pem: bytes) -> str: ...

    async def put_config(self, endpoint: AgentEndpoint, lb_id: str, config: str) -> None: ...

    async def activate(self, endpoint: AgentEndpoint, lb_id: str) -> None: ...

    async def delete_load_balancer(self, endpoint: AgentEndpoint, lb_id: str) -> None: ...

    async def rotate_certificate(self, endpoint: AgentEndpoint, identity: CertBundle) -> None:
        """Make ``identity`` the agent's own certificate; later calls verify it on a new connection."""
        ...

    async def put_vrrp_config(self, endpoint: AgentEndpoint, config: str) -> None:
        """Stage the amphora's keepalived ``vrrp_instance`` (ACTIVE_STANDBY)."""
        ...

    async def start_vrrp(self, endpoint: AgentEndpoint) -> None:
        """Start keepalived on the staged configuration, or make it reload."""
        ...

    async def vrrp_state(self, endpoint: AgentEndpoint) -> str:
        """The VRRP state keepalived last announced: MASTER, BACKUP, FAULT, STOP or UNSPECIFIED."""
        ...

    async def plug_vip(self, endpoint: AgentEndpoint, port: AmphoraInterface, vrrp_managed: bool) -> str:
        """Have the agent configure the VIP's port attached to its VM; the interface's name there."""
        ...

    async def plug_network(self, endpoint: AgentEndpoint, port: AmphoraInterface) -> str:
        """Have the agent configure a member subnet's port attached to its VM; the interface's name there."""
        ...


def _addresses(pairs: tuple[tuple[str, str], ...]) -> list[agent_pb2.InterfaceAddress]:
    """(address, subnet CIDR) pairs as the agent takes them: the address with its subnet's prefix length."""
    return [
        agent_pb2.InterfaceAddress(address=address, prefix_length=int(cidr.rsplit("/", 1)[1]) if cidr else 32)
        for address, cidr in pairs
    ]


def _routes(port: AmphoraInterface) -> list[agent_pb2.HostRoute]:
    return [agent_pb2.HostRoute(destination=d, next_hop=n) for d, n in port.host_routes]


@dataclass
class GrpcAmphoraDriver:
    """Calls agents with the controller's client certificate, checking each agent's own identity."""

    identity: CertBundle
    timeout_s: float = 30.0
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    _closing: set[asyncio.Task[None]] = field(default_factory=set)

    def _stub(self, endpoint: AgentEndpoint) -> agent_pb2_grpc.AmphoraAgentStub:
        key = f"{endpoint.address}/{endpoint.amphora_id}"
        channel = self._channels.get(key)
        if channel is None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self.identity.ca_certificate,
                private_key=self.identity.private_key,
                certificate_chain=self.identity.certificate,
            )
            options = [
                # The agent's certificate names the amphora, not the address it happens to listen on.
                ("grpc.ssl_target_name_override", amphora_identity(endpoint.amphora_id)),
                # gRPC's own reconnect back-off (1 s growing by 1.6 up to 120 s) makes calls fail at once, with
                # the last error ("Connection refused"), between attempts: an agent that took 45 s to start
                # listening on a loaded machine was reached only 21 s later, past the 60 s a create waits.
                # Attempts at most a second apart reach it as soon as it listens (and a restarted one too).
                *AGENT_RECONNECT_BACKOFF,
            ]
            # Each call carries the request id of the work in progress and, with tracing on, its trace context.
            interceptors = [RequestIdClientInterceptor(), *tracing.grpc_client_interceptors()]
            channel = self._channels[key] = grpc.aio.secure_channel(
                endpoint.address, credentials, options=options, interceptors=interceptors
            )
        return agent_pb2_grpc.AmphoraAgentStub(channel)

    async def _call(self, endpoint: AgentEndpoint, method: str, request: object) -> object:
        try:
            return await getattr(self._stub(endpoint), method)(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise AmphoraError(f"amphora {endpoint.amphora_id}: {method}: {exc.code().name}: {exc.details()}") from exc

    async def wait_until_reachable(self, endpoint: AgentEndpoint, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                info = await self._stub(endpoint).GetInfo(agent_pb2.GetInfoRequest(), timeout=2.0)
            except grpc.aio.AioRpcError as exc:
                if loop.time() >= deadline:
                    raise AmphoraError(f"amphora {endpoint.amphora_id} unreachable: {exc.details()}") from exc
                await asyncio.sleep(0.05)
                continue
            if info.amphora_id != endpoint.amphora_id:
                raise AmphoraError(f"{endpoint.address} answers as amphora {info.amphora_id}")
            return

    async def put_certificate(self, endpoint: AgentEndpoint, lb_id: str, name: str, pem: bytes) -> str:
        reply = await self._call(
            endpoint, "PutCertificate", agent_pb2.PutCertificateRequest(load_balancer_id=lb_id, name=name, pem=pem)
        )
        return reply.path  # type: ignore[attr-defined]

    async def put_config(self, endpoint: AgentEndpoint, lb_id: str, config: str) -> None:
        await self._call(endpoint, "PutConfig", agent_pb2.PutConfigRequest(load_balancer_id=lb_id, config=config))

    async def activate(self, endpoint: AgentEndpoint, lb_id: str) -> None:
        await self._call(endpoint, "Activate", agent_pb2.ActivateRequest(load_balancer_id=lb_id))

    async def delete_load_balancer(self, endpoint: AgentEndpoint, lb_id: str) -> None:
        await self._call(
            endpoint,
            "DeleteLoadBalancer",
            agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb_id, allow_missing=True),
        )

    async def rotate_certificate(self, endpoint: AgentEndpoint, identity: CertBundle) -> None:
        request = agent_pb2.RotateCertificateRequest(certificate=identity.certificate, private_key=identity.private_key)
        reply = await self._call(endpoint, "RotateCertificate", request)
        if reply.certificate_sha256 != hashlib.sha256(identity.certificate).hexdigest():  # type: ignore[attr-defined]
            raise AmphoraError(f"amphora {endpoint.amphora_id} did not take the new certificate")
        # The cached channel's connection was authenticated with the old certificate, and TLS never checks it
        # again: later calls go through a new channel, whose handshake verifies the new one (chain and name).
        # The old channel is closed once calls already on it (another flow's, perhaps) had their time.
        old = self._channels.pop(f"{endpoint.address}/{endpoint.amphora_id}", None)
        if old is not None:
            task = asyncio.create_task(old.close(grace=self.timeout_s))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def put_vrrp_config(self, endpoint: AgentEndpoint, config: str) -> None:
        await self._call(endpoint, "PutVrrpConfig", agent_pb2.PutVrrpConfigRequest(config=config))

    async def start_vrrp(self, endpoint: AgentEndpoint) -> None:
        await self._call(endpoint, "StartVrrp", agent_pb2.StartVrrpRequest())

    async def vrrp_state(self, endpoint: AgentEndpoint) -> str:
        status = await self._call(endpoint, "GetVrrpStatus", agent_pb2.GetVrrpStatusRequest())
        return agent_pb2.VrrpStatus.State.Name(status.state).removeprefix("STATE_")  # type: ignore[attr-defined]

    async def plug_vip(self, endpoint: AgentEndpoint, port: AmphoraInterface, vrrp_managed: bool) -> str:
        request = agent_pb2.PlugVipRequest(
            mac_address=port.mac_address,
            addresses=_addresses(port.fixed_ips),
            vips=_addresses(port.vips),
            gateway=port.gateway or "",
            host_routes=_routes(port),
            mtu=port.mtu or 0,
            vrrp_managed=vrrp_managed,
        )
        return (await self._call(endpoint, "PlugVip", request)).interface  # type: ignore[attr-defined]

    async def plug_network(self, endpoint: AgentEndpoint, port: AmphoraInterface) -> str:
        request = agent_pb2.PlugNetworkRequest(
            mac_address=port.mac_address,
            addresses=_addresses(port.fixed_ips),
            host_routes=_routes(port),
            mtu=port.mtu or 0,
        )
        return (await self._call(endpoint, "PlugNetwork", request)).interface  # type: ignore[attr-defined]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


class NoopAmphoraDriver:
    """Accepts every call and does nothing (Octavia's no-op amphora driver)."""

    async def wait_until_reachable(self, endpoint: AgentEndpoint, timeout_s: float) -> None:
        return None

    async def put_certificate(self, endpoint: AgentEndpoint, lb_id: str, name: str, pem: bytes) -> str:
        return f"/noop/{lb_id}/{name}"

    async def put_config(self, endpoint: AgentEndpoint, lb_id: str, config: str) -> None:
        return None

    async def activate(self, endpoint: AgentEndpoint, lb_id: str) -> None:
        return None

    async def delete_load_balancer(self, endpoint: AgentEndpoint, lb_id: str) -> None:
        return None

    async def rotate_certificate(self, endpoint: AgentEndpoint, identity: CertBundle) -> None:
        return None

    async def put_vrrp_config(self, endpoint: AgentEndpoint, config: str) -> None:
        return None

    async def start_vrrp(self, endpoint: AgentEndpoint) -> None:
        return None

    async def vrrp_state(self, endpoint: AgentEndpoint) -> str:
        return "MASTER"

    async def plug_vip(self, endpoint: AgentEndpoint, port: AmphoraInterface, vrrp_managed: bool) -> str:
        return "eth1"

    async def plug_network(self, endpoint: AgentEndpoint, port: AmphoraInterface) -> str:
        return "eth2"
