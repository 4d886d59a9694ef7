"""ACTIVE_STANDBY on Nova and Neutron (faked at their HTTP boundary), with servers that are network namespaces
(``fake_vms.py``, root only) running the image's real agent and keepalived.

The worker's create-pair flow, as the amphora provider runs it: both servers boot into the load balancer's
anti-affinity server group, each gets a VIP port carrying the VIP as an allowed address pair (and the VRRP rule
in the load balancer's security group), each agent configures its port found by MAC (``PlugVip``, the VIP left to
keepalived), and keepalived advertises on those ports: one amphora answers for the VIP on the VIP network, and
when its server is switched off the other takes the VIP over.

Every new step failing (server group, second boot, VIP port, the agent's plugging) reverts the flow without
leaving a server, a port or a server group behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_cloud import MGMT_NET, SERVICE_PROJECT, VIP_NET, VIP_SUBNET, FakeCloud, running
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support import ensure_keepalived

from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import Amphora, LoadBalancer
from octavia_mesh.common.network import VipRequest
from octavia_mesh.common.network.neutron import NeutronNetworkDriver
from octavia_mesh.protos.provider.v1 import commands_pb2
from octavia_mesh.worker.deps import AmphoraDeps
from octavia_mesh.worker.drivers.amphora import GrpcAmphoraDriver
from octavia_mesh.worker.drivers.certificates import LocalCertificateDriver
from octavia_mesh.worker.drivers.openstack_compute import NovaComputeDriver, NovaOptions, group_name
from octavia_mesh.worker.flows import vrrp
from octavia_mesh.worker.flows.engine import FlowContext, FlowEngine, FlowFailed
from octavia_mesh.worker.haproxy.render import HaproxyRenderer, create_environment
from octavia_mesh.worker.providers.amphora import AmphoraProvider
from octavia_mesh.worker.vrrp import render as vrrp_render

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="servers as network namespaces need root"),
    pytest.mark.timeout(300),
]


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    ensure_keepalived()
    with running(namespaced=True) as fake:
        fake.glance.add_image("amphora", ["octavia-mesh-amphora"], SERVICE_PROJECT)
        yield fake


@pytest.fixture
async def pair(engine: AsyncEngine, cloud: FakeCloud, tmp_path: Path) -> AsyncIterator[Any]:
    _, sessions = session_factories(engine)
    certificates = LocalCertificateDriver(tmp_path / "ca")
    agents = GrpcAmphoraDriver(certificates.controller_certificate())
    network = NeutronNetworkDriver(cloud.connection())
    options = NovaOptions(
        image_tag="octavia-mesh-amphora",
        image_owner=SERVICE_PROJECT,
        flavor_id="amphora",
        network_id=MGMT_NET[0],
        agent_port=cloud.nova.agent_port,
        poll_interval_s=0.05,
        boot_timeout_s=20.0,
        delete_timeout_s=20.0,
    )
    deps = AmphoraDeps(
        sessions=sessions,
        compute=NovaComputeDriver(cloud.connection(), options),
        amphora=agents,
        certificates=certificates,
        renderer=HaproxyRenderer(create_environment()),
        max_connections=1000,
        cert_validity=dt.timedelta(days=1),
        agent_timeout_s=60.0,
        vrrp=vrrp_render.VrrpOptions(vrrp_render.VrrpRenderer(vrrp_render.create_environment()), advert_int_s=0.1),
        network=network,
    )
    yield deps, sessions
    await agents.close()


async def _new_lb(deps: AmphoraDeps, sessions: async_sessionmaker[AsyncSession]) -> LoadBalancer:
    lb_id = str(uuid.uuid4())
    vip = await deps.network.allocate_vip(None, VipRequest(lb_id, "p", subnet_id=VIP_SUBNET))  # type: ignore[arg-type]
    lb = LoadBalancer(
        id=lb_id, project_id="p", provider="amphora", provisioning_status="PENDING_CREATE",
        operating_status="OFFLINE", topology="ACTIVE_STANDBY", vip_address=vip.address, vip_port_id=vip.port_id,
        vip_subnet_id=vip.subnet_id, vip_network_id=vip.network_id,
    )  # fmt: skip
    async with sessions() as session, session.begin():
        session.add(lb)
    return lb


async def _create(deps: AmphoraDeps, sessions: async_sessionmaker[AsyncSession], lb: LoadBalancer) -> None:
    context = FlowContext(command_id=str(uuid.uuid4()), load_balancer_id=lb.id, resource_id=lb.id)
    await FlowEngine(sessions).run(vrrp.create_flow(deps), context)


def _answered(cloud: FakeCloud, address: str) -> bool:
    """Whether a host on the VIP network answers for ``address`` (a closed port: refused, not silence)."""
    assert cloud.vms is not None
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({address!r}, 1), timeout=1)\n"
        "except ConnectionRefusedError: print('answered')\n"
        "except OSError as exc: print(exc)\n"
    )
    return cloud.vms.python_in(VIP_NET, code).stdout.strip() == "answered"


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def _holds_vip(cloud: FakeCloud, server_id: str, vip: str) -> bool:
    assert cloud.vms is not None
    return f" {vip}/32 " in cloud.vms.addresses(server_id)


def _assert_only_the_vip_left(cloud: FakeCloud, lb: LoadBalancer) -> None:
    assert cloud.nova._visible() == [], "leaked servers"
    assert cloud.nova.groups == {}, "leaked server groups"
    assert [p["id"] for p in cloud.neutron.ports()] == [lb.vip_port_id], "leaked ports"


class _SlowVrrpStarts:
    """The agents' driver with every keepalived start a second late (a loaded worker, slow agents): longer than
    a fresh keepalived's master-down interval (three 0.1 s advertisements), so a replacement started before the
    survivor lists it as a peer would elect itself and take the VIP."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def start_vrrp(self, endpoint: Any) -> Any:
        await asyncio.sleep(1.0)
        return await self._inner.start_vrrp(endpoint)


@pytest.mark.parametrize("slow_agents", [False, True], ids=["prompt", "slow-vrrp-starts"])
async def test_pair_boots_anti_affine_and_keepalived_moves_the_vip(
    cloud: FakeCloud, pair: Any, slow_agents: bool
) -> None:
    deps, sessions = pair
    lb = await _new_lb(deps, sessions)
    await _create(deps, sessions, lb)

    servers = {s["id"]: s for s in cloud.nova._visible()}
    (group,) = cloud.nova.groups.values()
    assert group["name"] == group_name(lb.id) and group["policy"] == "anti-affinity"
    assert sorted(group["members"]) == sorted(servers) and len({s["hostId"] for s in servers.values()}) == 2
    async with sessions() as session:
        amphorae = list((await session.execute(select(Amphora).where(Amphora.load_balancer_id == lb.id))).scalars())
    assert sorted(a.role for a in amphorae) == ["BACKUP", "MASTER"]
    ports = {p["device_id"]: p for p in cloud.neutron.ports() if p["name"].startswith("octavia-lb-vrrp-")}
    for amphora in amphorae:
        port = ports[amphora.compute_id]
        assert port["allowed_address_pairs"] == [{"ip_address": lb.vip_address}]
        # keepalived advertises from the VIP port's address, on the interface the agent found by its MAC.
        assert (amphora.vrrp_ip, amphora.vrrp_interface) == (port["fixed_ips"][0]["ip_address"], "eth1")
    group_id = ports[amphorae[0].compute_id]["security_groups"][0]
    vrrp_rules = [r for r in cloud.neutron.rules() if r["security_group_id"] == group_id and r["protocol"] == "112"]
    assert vrrp_rules and vrrp_rules[0]["remote_group_id"] == group_id

    master = next(a for a in amphorae if a.role == "MASTER")
    backup = next(a for a in amphorae if a.role == "BACKUP")
    _wait(lambda: _holds_vip(cloud, master.compute_id, lb.vip_address), 10, "the MASTER to hold the VIP")
    assert not _holds_vip(cloud, backup.compute_id, lb.vip_address)
    assert _answered(cloud, lb.vip_address)

    cloud.nova._kill(master.compute_id)  # the MASTER's server is switched off
    _wait(lambda: _holds_vip(cloud, backup.compute_id, lb.vip_address), 10, "the BACKUP to take the VIP over")
    _wait(lambda: _answered(cloud, lb.vip_address), 10, "the VIP to answer again")

    # The dead amphora's failover: a replacement in the group (a third host is free), the old server fenced.
    cloud.nova.hosts = ("compute-1", "compute-2", "compute-3")
    failing_over = dataclasses.replace(deps, amphora=_SlowVrrpStarts(deps.amphora)) if slow_agents else deps
    await AmphoraProvider(failing_over).apply(
        _command(lb.id, Kind.RESOURCE_KIND_AMPHORA, Op.OPERATION_FAILOVER, master.id)
    )
    assert master.compute_id not in {s["id"] for s in cloud.nova._visible()}
    (group,) = cloud.nova.groups.values()
    async with sessions() as session:
        live = list(
            (
                await session.execute(
                    select(Amphora).where(Amphora.load_balancer_id == lb.id, Amphora.status == "ALLOCATED")
                )
            ).scalars()
        )
    assert sorted(group["members"]) == sorted(a.compute_id for a in live) and len(live) == 2
    replacement = next(a for a in live if a.id != backup.id)
    assert replacement.role == "MASTER" and replacement.vrrp_interface == "eth1"
    assert _holds_vip(cloud, backup.compute_id, lb.vip_address)  # nopreempt: the survivor keeps serving
    assert _answered(cloud, lb.vip_address)

    # Deleting the load balancer leaves nothing: servers, their group, every port and the security group.
    await AmphoraProvider(deps).apply(_command(lb.id, Kind.RESOURCE_KIND_LOAD_BALANCER, Op.OPERATION_DELETE, lb.id))
    assert cloud.nova._visible() == [] and cloud.nova.groups == {}
    assert cloud.neutron.ports() == [] and cloud.neutron.items["security-groups"] == {}


def _command(lb_id: str, kind: int, operation: int, resource_id: str) -> commands_pb2.ProviderCommand:
    return commands_pb2.ProviderCommand(
        command_id=str(uuid.uuid4()), kind=kind, operation=operation, resource_id=resource_id,  # type: ignore[arg-type]
        load_balancer_id=lb_id,
    )  # fmt: skip


async def test_single_amphora_gets_its_vip_port_configured_by_its_agent(cloud: FakeCloud, pair: Any) -> None:
    """The SINGLE create flow on Nova: the agent puts the VIP itself on the port it finds by MAC."""
    deps, sessions = pair
    lb = await _new_lb(deps, sessions)
    async with sessions() as session, session.begin():
        (await session.get(LoadBalancer, lb.id)).topology = "SINGLE"  # type: ignore[union-attr]
    await AmphoraProvider(deps).apply(_command(lb.id, Kind.RESOURCE_KIND_LOAD_BALANCER, Op.OPERATION_CREATE, lb.id))
    (server,) = cloud.nova._visible()
    assert _holds_vip(cloud, server["id"], lb.vip_address)
    assert _answered(cloud, lb.vip_address)
    async with sessions() as session:
        assert (await session.get(LoadBalancer, lb.id)).provisioning_status == "ACTIVE"  # type: ignore[union-attr]


async def test_a_second_boot_nova_cannot_place_reverts_the_pair(cloud: FakeCloud, pair: Any) -> None:
    deps, sessions = pair
    cloud.nova.hosts = ("compute-1",)  # anti-affinity leaves the BACKUP no host: Nova's "No valid host"
    lb = await _new_lb(deps, sessions)
    with pytest.raises(FlowFailed, match="boot-pair-amphora failed: .*No valid host was found"):
        await _create(deps, sessions, lb)
    _assert_only_the_vip_left(cloud, lb)


async def test_a_server_group_nova_refuses_reverts_the_pair(cloud: FakeCloud, pair: Any) -> None:
    deps, sessions = pair
    original = cloud.nova._answer

    def quota(method: str, parts: list[str], query: Any, body: Any, base: str) -> tuple[int, Any]:
        if method == "POST" and parts[-1:] == ["os-server-groups"]:
            return 403, {"forbidden": {"code": 403, "message": "Quota exceeded, too many server groups."}}
        return original(method, parts, query, body, base)

    cloud.nova._answer = quota  # type: ignore[method-assign]
    lb = await _new_lb(deps, sessions)
    with pytest.raises(FlowFailed, match="boot-pair-amphora failed: .*Quota exceeded, too many server groups"):
        await _create(deps, sessions, lb)
    _assert_only_the_vip_left(cloud, lb)


async def test_a_vip_port_neutron_refuses_reverts_the_pair(cloud: FakeCloud, pair: Any) -> None:
    deps, sessions = pair
    original = cloud.neutron._create_port
    made: list[str] = []

    def second_refused(spec: dict[str, Any]) -> tuple[int, Any]:
        if spec.get("name", "").startswith("octavia-lb-vrrp-"):
            made.append(spec["name"])
            if len(made) == 2:  # the BACKUP's, after the MASTER's was made and attached
                return 500, {"NeutronError": {"type": "HTTPInternalServerError", "message": "boom", "detail": ""}}
        return original(spec)

    cloud.neutron._create_port = second_refused  # type: ignore[method-assign]
    lb = await _new_lb(deps, sessions)
    with pytest.raises(FlowFailed, match="plug-vip failed"):
        await _create(deps, sessions, lb)
    assert len(made) == 2
    _assert_only_the_vip_left(cloud, lb)


async def test_a_port_that_never_appears_in_the_vm_reverts_the_pair(cloud: FakeCloud, pair: Any) -> None:
    deps, sessions = pair
    cloud.neutron.on_attach = lambda server_id, port: None  # Nova said yes, but no interface shows up in the VM
    lb = await _new_lb(deps, sessions)
    with pytest.raises(FlowFailed, match="plug-interfaces failed: .*NOT_FOUND: no network interface has MAC"):
        await _create(deps, sessions, lb)
    _assert_only_the_vip_left(cloud, lb)
