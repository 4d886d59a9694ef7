"""Nova and Glance faked at their HTTP boundary, from their API references (Nova compute API v2.1 at
microversion 2.64; Glance image API v2.x), for the ``nova`` compute driver's tests.

Only what the driver and openstacksdk send is answered, with the documented bodies and status codes:

* Nova: version discovery (``GET /``, ``GET /v2.1/``: min 2.1, max 2.64, so openstacksdk negotiates 2.64 and
  sends ``OpenStack-API-Version: compute 2.64``); ``POST /servers`` (202; ``OS-SCH-HNT:scheduler_hints``
  honoured for ``group``), ``GET /servers/{id}`` (404 ``itemNotFound`` once deleted), ``GET /servers/detail``
  (``name`` is a regular expression, as Nova's), ``DELETE /servers/{id}`` (204; the server then lists as
  ``ACTIVE`` with ``OS-EXT-STS:task_state: deleting`` for ``delete_delay_s``), ``POST /os-server-groups``
  (2.64 body: ``policy``, ``rules``), ``GET /os-server-groups``, ``DELETE /os-server-groups/{id}``, and
  ``/servers/{id}/os-interface`` (list, attach a port, detach) for the Neutron driver.
* Glance: discovery and ``GET /v2/images`` with ``tag``, ``owner``, ``status``, ``sort=created_at:desc``,
  ``limit``.

Booting a server runs the amphora image's start-up contract on this machine (``amphora/image/README.md``):
the cloud-config ``write_files`` of the user data are written under the server's own directory (the image's
absolute paths relocated below it) and the agent is started with ``agent.env`` as its environment, the
command the image's systemd unit runs (``python -m octavia_mesh.amphora_agent``). What a VM has by itself is
given here: its management address (a loopback address of its own) and its disk (the state directory).
Scheduling knows ``hosts``; anti-affinity fails a boot with Nova's "No valid host was found" fault when every
host already holds a member of the group. ``fail_boots`` makes the next boots go to ERROR with a fault.
With ``vms`` (``fake_vms.NetnsVms``, root only) each server is a network namespace, and a port attached through
``os-interface`` appears in it as an interface with the port's MAC, as in a VM.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

MAX_MICROVERSION = "2.64"
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_found(what: str) -> tuple[int, Any]:
    return 404, {"itemNotFound": {"code": 404, "message": f"{what} could not be found."}}


#: The image recipe's agent unit: what a booted amphora runs.
UNIT = (
    Path(__file__).resolve().parents[2]
    / "amphora/image/elements/octavia-mesh-amphora/static/etc/systemd/system/octavia-mesh-amphora-agent.service"
)


def image_unit() -> tuple[list[str], str]:
    """``(ExecStart as argv, EnvironmentFile)`` of the image's agent unit."""
    values = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    return values["ExecStart"].split(), values["EnvironmentFile"]


class FakeGlance:
    def __init__(self) -> None:
        self.images: list[dict[str, Any]] = []

    def add_image(self, name: str, tags: list[str], owner: str, status: str = "active") -> str:
        image_id = str(uuid.uuid4())
        created = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=len(self.images))).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.images.append(
            {
                "id": image_id,
                "name": name,
                "status": status,
                "tags": tags,
                "owner": owner,
                "created_at": created,
                "updated_at": created,
                "visibility": "private",
                "disk_format": "qcow2",
                "container_format": "bare",
                "self": f"/v2/images/{image_id}",
                "schema": "/v2/schemas/image",
            }
        )
        return image_id

    def answer(self, method: str, parts: list[str], query: dict[str, list[str]], base: str) -> tuple[int, Any]:
        if not parts or parts == ["v2"]:
            return 200, {
                "versions": [{"id": "v2.9", "status": "CURRENT", "links": [{"href": f"{base}/v2/", "rel": "self"}]}]
            }
        if parts[:2] != ["v2", "images"] or method != "GET":
            return 404, {"message": "not found"}
        items = [i for i in self.images if all(t in i["tags"] for t in query.get("tag", []))]
        for key in ("owner", "status"):
            if key in query:
                items = [i for i in items if i[key] in query[key]]
        if query.get("sort") == ["created_at:desc"] or query.get("sort_dir") == ["desc"]:
            items = sorted(items, key=lambda i: i["created_at"], reverse=True)
        if "marker" in query:  # pages follow the marker image, as Glance's
            ids = [i["id"] for i in items]
            items = items[ids.index(query["marker"][0]) + 1 :] if query["marker"][0] in ids else []
        limit = int(query.get("limit", ["25"])[0])
        page = {"images": items[:limit], "first": "/v2/images", "schema": "/v2/schemas/images"}
        if len(items) > limit:
            page["next"] = f"/v2/images?limit={limit}&marker={items[limit - 1]['id']}"
        return 200, page


class FakeNova:
    """Servers that run the amphora agent on this machine; see the module docstring."""

    def __init__(
        self,
        root: Path,
        network: tuple[str, str],  # (id, name) of the management network
        agent_port: int,
        address_prefix: str = "127.231",
        hosts: tuple[str, ...] = ("compute-1", "compute-2"),
        glance: FakeGlance | None = None,
        vms: Any = None,  # fake_vms.NetnsVms: servers as network namespaces (ports attach as interfaces)
    ) -> None:
        self.vms = vms
        self.root = root
        self.network_id, self.network_name = network
        self.agent_port = agent_port
        self.address_prefix = address_prefix
        self.hosts = hosts
        self.glance = glance
        self.servers: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.interfaces: dict[str, list[dict[str, Any]]] = {}
        self.fail_boots: list[str] = []  # faults for the next boots
        self.delete_delay_s = 0.0
        self.requests: list[tuple[str, str, Any]] = []
        self.neutron: Any = None  # set by the fake cloud: ports attached through os-interface
        self._lock = threading.Lock()
        self._next = 0

    # --- booting -------------------------------------------------------------------------------------

    def _address(self) -> str:
        self._next += 1
        return f"{self.address_prefix}.{self._next // 250}.{self._next % 250 + 2}"

    def _run_image(self, server_id: str, user_data: str, address: str) -> subprocess.Popen[bytes]:
        """What the image does at boot: cloud-init writes the files, systemd starts the agent."""
        home = self.root / server_id[:8]
        text = base64.b64decode(user_data).decode()
        assert text.startswith("#cloud-config\n"), "user data must be cloud-config"
        document = json.loads(text.split("\n", 1)[1])
        for item in document["write_files"]:
            target = home / item["path"].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(item["content"])
            target.chmod(int(item.get("permissions", "0644"), 8))
        command, env_file = image_unit()
        env_text = (home / env_file.lstrip("/")).read_text()
        env = dict(os.environ)
        for line in env_text.splitlines():
            key, _, value = line.partition("=")
            env[key] = str(home / value.lstrip("/")) if value.startswith("/") else value
        env["OCTAVIA_MESH_AGENT_LISTEN"] = f"{address}:{self.agent_port}"  # the VM's own address
        (home / "s").mkdir(exist_ok=True)
        env["OCTAVIA_MESH_AGENT_STATE_DIR"] = str(home / "s")  # its disk (short: unix-socket paths)
        if self.vms is not None:  # a namespace of its own: the image's python is this one
            return self.vms.boot(server_id, [sys.executable, *command[1:]], env, home / "agent.log")  # type: ignore[no-any-return]
        with open(home / "agent.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, *command[1:]],  # the image's python is this one
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _schedule(self, group_id: str | None) -> str | None:
        if not group_id:
            return self.hosts[len(self.servers) % len(self.hosts)]
        group = self.groups[group_id]
        used = {self.servers[m]["_host"] for m in group["members"] if m in self.servers}
        free = [h for h in self.hosts if h not in used] if group["policy"] == "anti-affinity" else list(self.hosts)
        return free[0] if free else None

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        spec = body["server"]
        hints = body.get("OS-SCH-HNT:scheduler_hints") or {}
        group_id = hints.get("group")
        if group_id and group_id not in self.groups:
            return 400, {"badRequest": {"code": 400, "message": f"Invalid server group {group_id}"}}
        image_id = spec.get("imageRef")
        if self.glance is not None and not any(i["id"] == image_id for i in self.glance.images):
            return 400, {"badRequest": {"code": 400, "message": f"Image {image_id} could not be found."}}
        server_id = str(uuid.uuid4())
        host = self._schedule(group_id)
        booting = host is not None and not self.fail_boots
        address = self.vms.allocate(server_id) if booting and self.vms is not None else self._address()
        server: dict[str, Any] = {
            "id": server_id,
            "name": spec["name"],
            "status": "ACTIVE",
            "metadata": spec.get("metadata", {}),
            "image": {"id": image_id},
            "flavor": {"original_name": spec.get("flavorRef")},
            "config_drive": "True" if spec.get("config_drive") else "",
            "key_name": spec.get("key_name"),
            "security_groups": spec.get("security_groups", [{"name": "default"}]),
            "created": _now(),
            "updated": _now(),
            "hostId": "",
            "OS-EXT-STS:task_state": None,
            "OS-EXT-STS:vm_state": "active",
            "OS-EXT-AZ:availability_zone": spec.get("availability_zone", "nova"),
            "tags": [],
            "addresses": {
                self.network_name: [
                    {
                        "addr": address,
                        "version": 4,
                        "OS-EXT-IPS:type": "fixed",
                        "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01",
                    }
                ]
            },
            "_host": host,
            "_networks": spec.get("networks"),
            "_user_data": spec.get("user_data"),
            "_group": group_id,
        }
        if host is None or self.fail_boots:
            message = self.fail_boots.pop(0) if host is not None else NO_VALID_HOST
            server.update(status="ERROR", addresses={}, fault={"code": 500, "message": message, "created": _now()})
            server["OS-EXT-STS:vm_state"] = "error"
        else:
            server["hostId"] = host
            self.processes[server_id] = self._run_image(server_id, spec["user_data"], address)
            if group_id:
                self.groups[group_id]["members"].append(server_id)
        self.servers[server_id] = server
        return 202, {"server": {"id": server_id, "links": [], "OS-DCF:diskConfig": "MANUAL", "adminPass": "x"}}

    def add_server(self, name: str) -> str:
        """An ACTIVE server that runs nothing here (for the network driver's tests)."""
        server_id = str(uuid.uuid4())
        self.servers[server_id] = {
            "id": server_id, "name": name, "status": "ACTIVE", "metadata": {}, "addresses": {}, "hostId": "h",
            "OS-EXT-STS:task_state": None, "_host": self.hosts[0],
        }  # fmt: skip
        return server_id

    def _kill(self, server_id: str) -> None:
        process = self.processes.pop(server_id, None)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # a VM switched off: HAProxy and all
            process.wait()
        # HAProxy (and keepalived) run in sessions of their own: whatever names the server's files goes too.
        needle = f"{self.root / server_id[:8]}/".encode()
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and needle in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue
        if self.vms is not None:
            self.vms.kill(server_id)

    def _delete(self, server_id: str) -> None:
        self._kill(server_id)
        server = self.servers[server_id]
        server["OS-EXT-STS:task_state"] = "deleting"
        server["_gone_at"] = time.monotonic() + self.delete_delay_s
        for group in self.groups.values():
            if server_id in group["members"]:
                group["members"].remove(server_id)
        if self.neutron is not None:
            self.neutron.release_device(server_id)

    def _visible(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        for server_id in [s for s, v in self.servers.items() if v.get("_gone_at", now + 1) <= now]:
            del self.servers[server_id]
        return list(self.servers.values())

    @staticmethod
    def _public(server: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in server.items() if not k.startswith("_")}

    # --- dispatch --------------------------------------------------------------------------------------

    def answer(
        self, method: str, parts: list[str], query: dict[str, list[str]], body: Any, base: str
    ) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((method, "/".join(parts), body))
            return self._answer(method, parts, query, body, base)

    def _answer(
        self, method: str, parts: list[str], query: dict[str, list[str]], body: Any, base: str
    ) -> tuple[int, Any]:
        version = {
            "id": "v2.1",
            "status": "CURRENT",
            "version": MAX_MICROVERSION,
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"href": f"{base}/v2.1/", "rel": "self"}],
        }
        if not parts:
            return 200, {"versions": [version]}
        if parts[0] != "v2.1":
            return 404, {"itemNotFound": {"code": 404, "message": "Unknown API version"}}
        parts = parts[1:]
        if parts and re.fullmatch(r"[0-9a-f]{32}", parts[0]):
            parts = parts[1:]  # a project id in the URL, as older catalogs give it
        if not parts:
            return 200, {"version": version}
        visible = {s["id"]: s for s in self._visible()}
        if parts[0] == "servers":
            if method == "POST" and len(parts) == 1:
                return self._create(body)
            if method == "GET" and parts[1:] in ([], ["detail"]):
                items = list(visible.values())
                if "name" in query:
                    items = [s for s in items if re.search(query["name"][0], s["name"])]
                return 200, {"servers": [self._public(s) for s in items]}
            server = visible.get(parts[1]) if len(parts) > 1 else None
            if server is None:
                return _not_found(f"Instance {parts[1] if len(parts) > 1 else ''}")
            if len(parts) == 2 and method == "GET":
                return 200, {"server": self._public(server)}
            if len(parts) == 2 and method == "DELETE":
                self._delete(server["id"])
                return 204, None
            if len(parts) >= 3 and parts[2] == "os-interface" and self.neutron is not None:
                return self.neutron.nova_interfaces(method, server, parts[3:], body)
            if len(parts) == 3 and parts[2] == "action" and method == "POST" and "os-stop" in body:
                self._kill(server["id"])
                server.update(status="SHUTOFF")
                return 202, None
        if parts[0] == "os-server-groups":
            if method == "POST" and len(parts) == 1:
                spec = body["server_group"]
                group_id = str(uuid.uuid4())
                self.groups[group_id] = {
                    "id": group_id,
                    "name": spec["name"],
                    "policy": spec["policy"],
                    "rules": spec.get("rules", {}),
                    "members": [],
                    "project_id": "p",
                    "user_id": "u",
                }
                return 200, {"server_group": self.groups[group_id]}
            if method == "GET" and len(parts) == 1:
                return 200, {"server_groups": list(self.groups.values())}
            if len(parts) == 2 and parts[1] in self.groups:
                if method == "DELETE":
                    del self.groups[parts[1]]
                    return 204, None
                return 200, {"server_group": self.groups[parts[1]]}
            return _not_found(f"Instance group {parts[-1]}")
        return 404, {"itemNotFound": {"code": 404, "message": "The resource could not be found."}}

    def stop_all(self) -> None:
        for server_id in list(self.processes):
            self._kill(server_id)
