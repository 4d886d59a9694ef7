"""Amphorae as Nova servers (compute driver ``nova``), through openstacksdk.

What it does, after Octavia's ``octavia/compute/drivers/nova_driver.py``:

* **boot**: the newest ACTIVE Glance image carrying the configured tag (and owner, when set: a tag alone lets
  any project that shares an image pick the amphorae's image), in the configured flavor, on the management
  network with the configured security groups, named ``amphora-<amphora id>`` with the amphora id in the
  server's metadata. The agent's identity (certificate, key, controller CA) and settings go in the user data as
  cloud-init ``write_files`` (``amphora/image/README.md`` is the contract); the user data is put on a config
  drive by default, as Octavia's ``user_data_config_drive``, so the key does not sit in the metadata service.
  The driver waits for ACTIVE (Octavia's ``ComputeActiveWait``) and answers the server's address on the
  management network with the agent's port.
* **anti-affinity**: an amphora of an ACTIVE_STANDBY load balancer (its spec names the load balancer) boots
  into the server group ``octavia-lb-<lb id>`` (policy ``anti-affinity``, microversion 2.64), created on first
  use; deleting the last member deletes the group (Octavia deletes it in the load balancer's delete flow).
* **delete** (and **fence**): a failed-over amphora's server is deleted and the driver waits until Nova no
  longer lists it, so a failover never leaves a live old amphora beside its replacement. A boot that fails
  (ERROR, timeout) deletes what it created: the server, and a group it left empty.

Every Nova/Glance call is synchronous in openstacksdk; they run in threads so the worker's other flows go on.
Instances are addressed by server id or by amphora id (the flows ask for an amphora's instance before its row
records the server id), and ``list_instances`` names each server by the amphora id in its metadata, so an
instance whose row has no ``compute_id`` yet is never taken for an orphan.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from openstack import exceptions as os_exc

from octavia_mesh.common.lifecycle.status import NovaServer
from octavia_mesh.worker.drivers.certificates import CONTROLLER_IDENTITY
from octavia_mesh.worker.drivers.compute import Instance, InstanceSpec

logger = logging.getLogger(__name__)

#: Server metadata keys the driver sets (and finds its servers by).
META_AMPHORA = "octavia_mesh_amphora_id"
META_LB = "octavia_mesh_load_balancer_id"
#: Where the image's agent reads its files (``amphora/image/README.md``).
AGENT_DIR = "/etc/octavia-mesh"
AGENT_STATE_DIR = "/var/lib/octavia-mesh"

T = TypeVar("T")


class ComputeError(RuntimeError):
    """Nova or Glance refused, or a server did not come up; the flow reverts."""


@dataclass(frozen=True, slots=True)
class NovaOptions:
    """What the driver boots (``OCTAVIA_MESH_WORKER_NOVA_*``; Octavia's ``[controller_worker]`` options)."""

    image_tag: str
    flavor_id: str
    network_id: str  # the management network (Octavia's amp_boot_network_list, first entry)
    image_owner: str = ""
    security_group_ids: tuple[str, ...] = ()
    key_name: str = ""
    availability_zone: str = ""
    config_drive: bool = True
    agent_port: int = 9443
    boot_timeout_s: float = 300.0
    delete_timeout_s: float = 120.0
    poll_interval_s: float = 1.0
    health_endpoints: tuple[str, ...] = ()
    heartbeat_interval_s: float = 1.0
    #: The agent's log format, and where it sends its spans (the worker's own: the amphora must reach it over the
    #: management network; empty: no traces).
    log_format: str = "text"
    otlp_endpoint: str = ""


def user_data(spec: InstanceSpec, options: NovaOptions) -> str:
    """The cloud-config that gives the image's agent its identity and settings (``amphora/image/README.md``)."""
    env = {
        "OCTAVIA_MESH_AGENT_AMPHORA_ID": spec.amphora_id,
        "OCTAVIA_MESH_AGENT_LISTEN": f"0.0.0.0:{options.agent_port}",
        "OCTAVIA_MESH_AGENT_STATE_DIR": AGENT_STATE_DIR,
        "OCTAVIA_MESH_AGENT_SERVER_CERT": f"{AGENT_DIR}/agent.pem",
        "OCTAVIA_MESH_AGENT_SERVER_KEY": f"{AGENT_DIR}/agent.key",
        "OCTAVIA_MESH_AGENT_CLIENT_CA": f"{AGENT_DIR}/controller-ca.pem",
        "OCTAVIA_MESH_AGENT_CONTROLLER_IDENTITIES": CONTROLLER_IDENTITY,
    }
    if options.health_endpoints:
        env["OCTAVIA_MESH_AGENT_HEALTH_ENDPOINTS"] = ",".join(options.health_endpoints)
        env["OCTAVIA_MESH_AGENT_HEARTBEAT_INTERVAL_S"] = str(options.heartbeat_interval_s)
    env["OCTAVIA_MESH_AGENT_LOG_FORMAT"] = options.log_format
    if options.otlp_endpoint:
        env["OCTAVIA_MESH_AGENT_OTLP_ENDPOINT"] = options.otlp_endpoint
    files = [
        ("agent.pem", spec.identity.certificate.decode(), "0600"),
        ("agent.key", spec.identity.private_key.decode(), "0600"),
        ("controller-ca.pem", spec.identity.ca_certificate.decode(), "0644"),
        ("agent.env", "".join(f"{k}={v}\n" for k, v in env.items()), "0600"),  # systemd's EnvironmentFile
    ]
    document = {
        "write_files": [
            {"path": f"{AGENT_DIR}/{name}", "content": content, "permissions": mode, "owner": "root:root"}
            for name, content, mode in files
        ]
    }
    return "#cloud-config\n" + json.dumps(document, indent=1)  # JSON is YAML: no YAML writer needed


def group_name(load_balancer_id: str) -> str:
    return f"octavia-lb-{load_balancer_id}"


class NovaComputeDriver:
    """Amphorae as Nova servers booted from the amphora image."""

    def pairs_refusal(self) -> str | None:
        # Pairs boot into an anti-affinity server group; the network driver gives each a VIP port with the VIP
        # as an allowed address pair, and each image runs keepalived (amphora/image/README.md).
        return None

    def __init__(self, connection: Any, options: NovaOptions) -> None:
        self._conn = connection  # an openstack.connection.Connection (service credentials)
        self._options = options
        self._group_lock = threading.Lock()

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # --- lookups ---------------------------------------------------------------------------------

    def _image_id(self) -> str:
        """Octavia's ``_get_image_uuid``: the newest ACTIVE image with the tag (and owner)."""
        query: dict[str, Any] = {"tag": self._options.image_tag, "status": "active", "sort": "created_at:desc"}
        if self._options.image_owner:
            query["owner"] = self._options.image_owner
        images = list(itertools.islice(self._conn.image.images(limit=2, **query), 2))
        if not images:
            owner = f" owned by {self._options.image_owner}" if self._options.image_owner else ""
            raise ComputeError(f"no active amphora image tagged {self._options.image_tag!r}{owner}")
        if len(images) > 1:
            logger.debug("several images tagged %r: booting the newest, %s", self._options.image_tag, images[0].id)
        return str(images[0].id)

    def _find(self, compute_id: str) -> Any | None:
        """The server ``compute_id`` names: a server id, or an amphora id (``amphora-<id>``)."""
        try:
            return self._conn.compute.get_server(compute_id)
        except os_exc.NotFoundException:
            pass
        return next(iter(self._servers_of(compute_id)), None)

    def _servers_of(self, amphora_id: str) -> list[Any]:
        return [
            server
            for server in self._conn.compute.servers(name=f"^amphora-{amphora_id}$")
            if (server.metadata or {}).get(META_AMPHORA) == amphora_id
        ]

    def _address(self, server: Any) -> str | None:
        """The server's address on the management network (Nova names networks by label: match by port)."""
        addresses: Mapping[str, list[dict[str, Any]]] = server.addresses or {}
        network = self._network_name()
        for label, entries in addresses.items():
            if network is not None and label != network:
                continue
            for entry in entries:
                if entry.get("version", 4) == 4 and entry.get("OS-EXT-IPS:type", "fixed") == "fixed":
                    return str(entry["addr"])
        return None

    def _network_name(self) -> str | None:
        try:
            return str(self._conn.network.get_network(self._options.network_id).name)
        except Exception:  # no Neutron to ask: take the first address
            return None

    def _instance(self, server: Any) -> Instance:
        address = self._address(server)
        if address is None:
            raise ComputeError(f"server {server.id} has no address on network {self._options.network_id}")
        host = f"[{address}]" if ":" in address else address
        return Instance(compute_id=str(server.id), management_address=f"{host}:{self._options.agent_port}")

    # --- server groups -----------------------------------------------------------------------------

    def _group(self, load_balancer_id: str) -> tuple[str, bool]:
        """The load balancer's anti-affinity group, created when missing; ``(id, created)``."""
        name = group_name(load_balancer_id)
        with self._group_lock:  # the pair boots at once: one group, not two
            found = sorted(str(g.id) for g in self._conn.compute.server_groups() if g.name == name)
            if found:
                return found[0], False
            self._conn.compute.create_server_group(name=name, policy="anti-affinity")
            # Another worker may have created one at the same moment: every booter takes the lowest id.
            found = sorted(str(g.id) for g in self._conn.compute.server_groups() if g.name == name)
            return found[0], True

    def _drop_group_if_empty(self, load_balancer_id: str, leaving: str = "") -> None:
        name = group_name(load_balancer_id)
        for group in list(self._conn.compute.server_groups()):
            if group.name == name and not [m for m in group.member_ids or () if m != leaving]:
                self._conn.compute.delete_server_group(group.id, ignore_missing=True)

    # --- the protocol --------------------------------------------------------------------------------

    def _create(self, spec: InstanceSpec) -> Instance:
        for leftover in self._servers_of(spec.amphora_id):
            if leftover.status == NovaServer.ACTIVE and self._address(leftover) is not None:
                return self._instance(leftover)  # a create that completed but was not recorded
            # A boot a dead worker left in BUILD or ERROR: its amphora row keeps it from ever being an orphan.
            self._delete(str(leftover.id))
        lb_id = getattr(spec, "load_balancer_id", "")  # ACTIVE_STANDBY specs name their load balancer
        group_id, group_created = self._group(lb_id) if lb_id else ("", False)
        server = None
        try:
            image_id = self._image_id()
            attrs: dict[str, Any] = {
                "name": f"amphora-{spec.amphora_id}",
                "image_id": image_id,
                "flavor_id": self._options.flavor_id,
                "networks": [{"uuid": self._options.network_id}],
                "metadata": {META_AMPHORA: spec.amphora_id, **({META_LB: lb_id} if lb_id else {})},
                "user_data": base64.b64encode(user_data(spec, self._options).encode()).decode(),
                "config_drive": self._options.config_drive,
            }
            if self._options.security_group_ids:
                attrs["security_groups"] = [{"name": sg} for sg in self._options.security_group_ids]
            if self._options.key_name:
                attrs["key_name"] = self._options.key_name
            if self._options.availability_zone:
                attrs["availability_zone"] = self._options.availability_zone
            if group_id:
                attrs["scheduler_hints"] = {"group": group_id}
            server = self._conn.compute.create_server(**attrs)
            server = self._conn.compute.wait_for_server(
                server,
                status=NovaServer.ACTIVE,
                failures=[NovaServer.ERROR],
                interval=self._options.poll_interval_s,
                wait=self._options.boot_timeout_s,
            )
            return self._instance(server)
        except Exception as exc:
            detail = self._fault(server) if server is not None else None  # Nova's reason, for the log
            # Nothing of a failed boot survives it: the flow's revert cannot know the server id yet.
            if server is not None:
                self._delete(str(server.id))
            if group_created:
                self._drop_group_if_empty(lb_id)
            if isinstance(exc, ComputeError):
                raise
            raise ComputeError(f"amphora {spec.amphora_id} did not boot: {detail or exc}") from exc

    def _fault(self, server: Any) -> str | None:
        try:
            fault = self._conn.compute.get_server(server.id).fault
        except Exception:
            return None
        return str(fault["message"]) if isinstance(fault, dict) and fault.get("message") else None

    async def create_instance(self, spec: InstanceSpec) -> Instance:
        return await self._call(self._create, spec)

    async def get_instance(self, compute_id: str) -> Instance | None:
        server = await self._call(self._find, compute_id)
        if server is None or server.status != NovaServer.ACTIVE:
            return None
        address = await self._call(self._address, server)
        if address is None:
            return None
        return await self._call(self._instance, server)

    def _delete(self, compute_id: str) -> None:
        server = self._find(compute_id)
        if server is None:
            return
        lb_id = (server.metadata or {}).get(META_LB)
        self._conn.compute.delete_server(server.id, ignore_missing=True)
        deadline = time.monotonic() + self._options.delete_timeout_s
        while self._find(str(server.id)) is not None:
            if time.monotonic() >= deadline:
                raise ComputeError(f"server {server.id} was not deleted within {self._options.delete_timeout_s} s")
            time.sleep(self._options.poll_interval_s)
        if lb_id:
            self._drop_group_if_empty(lb_id, leaving=str(server.id))

    async def delete_instance(self, compute_id: str) -> None:
        """Delete the server and wait until it is gone: this fences a failed-over amphora."""
        await self._call(self._delete, compute_id)

    async def fence_instance(self, compute_id: str) -> None:
        """Nova's delete destroys the server whatever state it is in (hung or not) and we wait until it is gone,
        so fencing is the delete."""
        await self._call(self._delete, compute_id)

    async def kill_stopped(self, compute_id: str) -> int:
        """A server's processes are not visible from here; a hung server is fenced by its delete."""
        return 0

    def _list(self) -> list[str]:
        out = []
        for server in self._conn.compute.servers(name="^amphora-"):
            amphora_id = (server.metadata or {}).get(META_AMPHORA)
            if amphora_id:
                out.append(str(amphora_id))
        return out

    async def list_instances(self) -> list[str]:
        return await self._call(self._list)
