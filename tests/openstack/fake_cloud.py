"""Nova, Glance and Neutron faked at their HTTP boundary on one loopback port, under ``/compute``, ``/image``
and ``/network`` (see ``fake_nova.py`` and ``../fake_neutron.py`` for what each answers), and an openstacksdk
connection to them. Keystone and Barbican are never faked: ``keystone.py`` runs the real ones."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_neutron import FakeNeutron, serve_json
from fake_nova import FakeGlance, FakeNova
from fake_vms import NetnsVms
from support import claim_vip_cidr

from octavia_mesh.cli.processes import listen_port

MGMT_NET = ("5d1e7a30-0000-4000-8000-00000000a001", "lb-mgmt-net")
MGMT_SUBNET = "5d1e7a30-0000-4000-8000-00000000a002"
VIP_NET = "5d1e7a30-0000-4000-8000-00000000b001"
VIP_SUBNET = "5d1e7a30-0000-4000-8000-00000000b002"
VIP_SUBNET_V6 = "5d1e7a30-0000-4000-8000-00000000b006"  # a second subnet of the VIP network (additional VIPs)
MEMBER_NET = "5d1e7a30-0000-4000-8000-00000000c001"
MEMBER_SUBNET = "5d1e7a30-0000-4000-8000-00000000c002"
SERVICE_PROJECT = "6b7c0d1e2f3a4b5c8d9e0f1a2b3c4d5e"


@dataclass
class FakeCloud:
    url: str
    nova: FakeNova
    glance: FakeGlance
    neutron: FakeNeutron
    vms: NetnsVms | None = None  # servers as network namespaces (``running(namespaced=True)``)

    def connect_options(self) -> dict[str, Any]:
        """What a ``clouds.yaml`` entry says to reach the fakes (no Keystone: endpoint overrides)."""
        return {
            "auth_type": "none",
            "compute_endpoint_override": f"{self.url}/compute/v2.1",
            "image_endpoint_override": f"{self.url}/image",
            "network_endpoint_override": f"{self.url}/network",
        }

    def connection(self) -> Any:
        import openstack

        return openstack.connect(**self.connect_options())


@contextmanager
def running(loopback_vips: bool = False, namespaced: bool = False) -> Iterator[FakeCloud]:
    """The fakes. Amphorae get management addresses of a /16 of 127.0.0.0/8 claimed like a test mesh's VIP
    subnet (``support.claim_vip_cidr``), so agents of concurrent sessions never share an address; VIPs come
    from ``10.0.0.0/24``, or with ``loopback_vips`` from a /24 of another claimed /16 (HAProxy binds those
    here). ``namespaced`` (root): servers are network namespaces whose attached ports appear as interfaces
    (``fake_vms.py``), on networks that are namespaces too."""
    mgmt_cidr, release_mgmt = claim_vip_cidr()
    vip_cidr, release_vips = claim_vip_cidr() if loopback_vips else ("10.0.0.0/24", lambda: None)
    vip_cidr = vip_cidr.replace(".0.0/16", ".0.0/24")
    address_prefix = mgmt_cidr.removesuffix(".0.0/16")
    root = Path(tempfile.mkdtemp(prefix="fc-", dir="/tmp"))  # short: agents keep unix sockets below it
    glance = FakeGlance()
    neutron = FakeNeutron(
        [
            (MGMT_SUBNET, MGMT_NET[0], mgmt_cidr),
            (VIP_SUBNET, VIP_NET, vip_cidr),
            (VIP_SUBNET_V6, VIP_NET, "fd00:b::/64"),
            (MEMBER_SUBNET, MEMBER_NET, "10.1.0.0/24"),
        ],
        networks={MGMT_NET[0]: MGMT_NET[1]},
    )
    vms = NetnsVms() if namespaced else None
    nova = FakeNova(root, MGMT_NET, listen_port(), address_prefix=address_prefix, glance=glance, vms=vms)
    nova.neutron = neutron
    if vms is not None:

        def cidrs(network_id: str) -> list[str]:
            return [s["cidr"] for s in neutron.subnets if s["network_id"] == network_id]

        neutron.on_attach = lambda server_id, port: vms.attach(
            server_id, port["id"], port["mac_address"], port["network_id"], cidrs(port["network_id"])
        )
        neutron.on_detach = lambda server_id, port: vms.detach(server_id, port["id"], port["network_id"])

    def route(method: str, path: str, query: dict[str, list[str]], body: Any, base: str) -> tuple[int, Any]:
        service, _, rest = path.lstrip("/").partition("/")
        parts = [p for p in rest.split("/") if p]
        if service == "compute":
            return nova.answer(method, parts, query, body, f"{base}/compute")
        if service == "image":
            return glance.answer(method, parts, query, f"{base}/image")
        if service == "network":
            return neutron.handle(method, rest, query, body)
        return 404, {"message": f"no service {service}"}

    server, url = serve_json(route)
    try:
        yield FakeCloud(url, nova, glance, neutron, vms)
    finally:
        nova.stop_all()
        if vms is not None:
            vms.stop_all()
        server.shutdown()
        server.server_close()
        release_vips()
        release_mgmt()
