"""A stand-in for Neutron at its HTTP boundary (Networking API v2.0, from Neutron's API reference).

Two users:

* clients that look subnets up before calling Octavia (the ``openstack loadbalancer`` commands): version
  discovery and ``GET /v2.0/subnets?id=…`` / ``/v2.0/subnets/{id}``, ``networks``, ``ports`` lookups, with a
  fixed set of subnets (:func:`running`);
* the ``neutron`` network driver (``tests/openstack``): also ``POST/PUT/DELETE /v2.0/ports`` (fixed IPs
  allocated from the subnet's CIDR; a taken address is 409 ``IpAddressAlreadyAllocated``, a full subnet 409
  ``IpAddressGenerationFailure``; ``allowed_address_pairs``, ``security_groups``, ``qos_policy_id``; several
  ``fixed_ips`` for additional VIPs; ``PUT`` replaces a list attribute whole, as Neutron's), networks with
  ``mtu`` and subnets with ``gateway_ip``/``host_routes`` (what the agent is told to configure), security
  groups and their rules (a new group has Neutron's two default egress rules; deleting a group a port still
  uses is 409 ``SecurityGroupInUse``), ``GET /v2.0/qos/policies/{id}``, and the ports' side of Nova's
  ``os-interface`` (:meth:`FakeNeutron.nova_interfaces`: ``device_id``/``device_owner`` follow attachment).

Neutron cannot run here; our own services are never faked. Errors have Neutron's body:
``{"NeutronError": {"type", "message", "detail"}}``.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _subnet(subnet_id: str, network_id: str, cidr: str) -> dict[str, Any]:
    return {
        "id": subnet_id,
        "name": f"subnet-{subnet_id[:8]}",
        "network_id": network_id,
        "cidr": cidr,
        "ip_version": ipaddress.ip_network(cidr).version,
        "project_id": "",
        "tenant_id": "",
        "enable_dhcp": True,
        "gateway_ip": None,
        "allocation_pools": [],
        "dns_nameservers": [],
        "host_routes": [],
        "tags": [],
    }


def _error(status: int, kind: str, message: str) -> tuple[int, Any]:
    return status, {"NeutronError": {"type": kind, "message": message, "detail": ""}}


#: Collections the driver writes, with their singular names.
_WRITABLE = {"ports": "port", "security-groups": "security_group", "security-group-rules": "security_group_rule"}


class FakeNeutron:
    def __init__(self, subnets: list[tuple[str, str, str]], networks: dict[str, str] | None = None) -> None:
        self.subnets = [_subnet(*s) for s in subnets]
        names = networks or {}
        self.networks = {
            s["network_id"]: {
                "id": s["network_id"],
                "name": names.get(s["network_id"], f"net-{s['network_id'][:8]}"),
                "subnets": [x["id"] for x in self.subnets if x["network_id"] == s["network_id"]],
                "status": "ACTIVE",
                "admin_state_up": True,
                "mtu": 1450,  # Neutron's default on a VXLAN tenant network
                "project_id": "",
                "tenant_id": "",
            }
            for s in self.subnets
        }
        self.items: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in _WRITABLE}
        self.qos_policies: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        # What happens in the server when Nova attaches or detaches a port (fake_vms: an interface appears).
        self.on_attach: Any = None
        self.on_detach: Any = None

    # --- reads (the clients' lookups) -----------------------------------------------------------------

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        return self.handle("GET", path, query, None)

    def _filter(self, items: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[str, Any]]:
        for key, values in query.items():
            if key in ("fields", "limit", "marker", "sort_key", "sort_dir"):
                continue
            items = [i for i in items if str(i.get(key)) in values or (i.get(key) is None and "" in values)]
        return items

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        with self.lock:
            return self._handle(method, path, query, body)

    def _handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = [p.removesuffix(".json") for p in path.split("/") if p and p not in ("v2.0", "v2")]
        if not parts:
            return 200, {
                "versions": [
                    {"id": "v2.0", "status": "CURRENT", "links": [{"href": "http://127.0.0.1/v2.0/", "rel": "self"}]}
                ]
            }
        if parts[0] == "qos" and parts[1:2] == ["policies"]:
            policy = self.qos_policies.get(parts[2]) if len(parts) > 2 else None
            if policy is None:
                return _error(404, "QosPolicyNotFound", f"QoS policy {parts[-1]} could not be found.")
            return 200, {"policy": policy}
        collection, ident = parts[0], (parts[1] if len(parts) > 1 else None)
        if collection in ("subnets", "networks"):
            items = self.subnets if collection == "subnets" else list(self.networks.values())
            if ident is not None:
                found = [s for s in items if s["id"] == ident]
                kind = "SubnetNotFound" if collection == "subnets" else "NetworkNotFound"
                if not found:
                    return _error(404, kind, f"{collection[:-1].title()} {ident} could not be found.")
                return 200, {collection[:-1]: found[0]}
            return 200, {collection: self._filter(items, query)}
        if collection not in _WRITABLE:
            return 200, {collection: []}
        store, singular = self.items[collection], _WRITABLE[collection]
        if method == "GET" and ident is None:
            return 200, {collection.replace("-", "_"): self._filter(list(store.values()), query)}
        if method == "POST" and ident is None:
            return getattr(self, f"_create_{singular}")(body[singular])
        if ident not in store:
            return _error(
                404, f"{singular.title().replace('_', '')}NotFound", f"{singular} {ident} could not be found."
            )
        if method == "GET":
            return 200, {singular: store[ident]}
        if method == "PUT":
            store[ident].update(body[singular])
            return 200, {singular: store[ident]}
        if method == "DELETE":
            if collection == "security-groups" and any(ident in p["security_groups"] for p in self.ports()):
                return _error(409, "SecurityGroupInUse", f"Security Group {ident} in use.")
            del store[ident]
            if collection == "security-groups":
                for rule in [r for r in self.rules() if r["security_group_id"] == ident]:
                    del self.items["security-group-rules"][rule["id"]]
            return 204, None
        return 405, None

    # --- writes (the network driver) ----------------------------------------------------------------------

    def ports(self) -> list[dict[str, Any]]:
        return list(self.items["ports"].values())

    def rules(self) -> list[dict[str, Any]]:
        return list(self.items["security-group-rules"].values())

    def _taken(self, subnet_id: str) -> set[str]:
        return {ip["ip_address"] for p in self.ports() for ip in p["fixed_ips"] if ip["subnet_id"] == subnet_id}

    def _create_port(self, spec: dict[str, Any]) -> tuple[int, Any]:
        if spec.get("network_id") not in self.networks:
            return _error(404, "NetworkNotFound", f"Network {spec.get('network_id')} could not be found.")
        if spec.get("qos_policy_id") and spec["qos_policy_id"] not in self.qos_policies:
            return _error(404, "QosPolicyNotFound", f"QoS policy {spec['qos_policy_id']} could not be found.")
        fixed_ips = []
        for wanted in spec.get("fixed_ips") or [{"subnet_id": self.networks[spec["network_id"]]["subnets"][0]}]:
            subnet = next((s for s in self.subnets if s["id"] == wanted.get("subnet_id")), None)
            if subnet is None:
                return _error(404, "SubnetNotFound", f"Subnet {wanted.get('subnet_id')} could not be found.")
            taken = self._taken(subnet["id"])
            if "ip_address" in wanted:
                if wanted["ip_address"] in taken:
                    return _error(
                        409,
                        "IpAddressAlreadyAllocated",
                        f"IP address {wanted['ip_address']} already allocated in subnet {subnet['id']}",
                    )
                address = wanted["ip_address"]
            else:
                free = (str(h) for h in ipaddress.ip_network(subnet["cidr"]).hosts() if str(h) not in taken)
                address = next(free, None)
                if address is None:
                    return _error(409, "IpAddressGenerationFailure", "No more IP addresses available on network.")
            fixed_ips.append({"subnet_id": subnet["id"], "ip_address": address})
        port_id = str(uuid.uuid4())
        port = {
            "id": port_id,
            "name": spec.get("name", ""),
            "network_id": spec["network_id"],
            "fixed_ips": fixed_ips,
            "admin_state_up": spec.get("admin_state_up", True),
            "device_id": spec.get("device_id", ""),
            "device_owner": spec.get("device_owner", ""),
            "security_groups": spec.get("security_groups", []),
            "status": "DOWN",
            "allowed_address_pairs": spec.get("allowed_address_pairs", []),
            "qos_policy_id": spec.get("qos_policy_id"),
            "mac_address": f"fa:16:3e:{port_id[:2]}:{port_id[2:4]}:01",
            "project_id": spec.get("project_id", ""),
            "tenant_id": spec.get("project_id", ""),
            "tags": [],
        }
        self.items["ports"][port_id] = port
        return 201, {"port": port}

    def _create_security_group(self, spec: dict[str, Any]) -> tuple[int, Any]:
        group_id = str(uuid.uuid4())
        group = {
            "id": group_id,
            "name": spec.get("name", ""),
            "description": spec.get("description", ""),
            "project_id": spec.get("project_id", ""),
            "tenant_id": "",
            "tags": [],
            "stateful": True,
        }
        self.items["security-groups"][group_id] = group
        for ethertype in ("IPv4", "IPv6"):  # Neutron's defaults
            self._create_security_group_rule(
                {"security_group_id": group_id, "direction": "egress", "ethertype": ethertype}
            )
        group["security_group_rules"] = [r for r in self.rules() if r["security_group_id"] == group_id]
        return 201, {"security_group": group}

    def _create_security_group_rule(self, spec: dict[str, Any]) -> tuple[int, Any]:
        if spec["security_group_id"] not in self.items["security-groups"]:
            return _error(404, "SecurityGroupNotFound", f"Security group {spec['security_group_id']} does not exist")
        rule = {
            "id": str(uuid.uuid4()),
            "protocol": None,
            "port_range_min": None,
            "port_range_max": None,
            "remote_ip_prefix": None,
            "remote_group_id": None,
            "ethertype": "IPv4",
            "description": "",
            "project_id": "",
            "tenant_id": "",
        } | spec
        if rule["protocol"] is not None:
            rule["protocol"] = str(rule["protocol"])
        duplicate = [
            r
            for r in self.rules()
            if {k: v for k, v in r.items() if k != "id"} == {k: v for k, v in rule.items() if k != "id"}
        ]
        if duplicate:
            return _error(
                409, "SecurityGroupRuleExists", f"Security group rule already exists. Rule id is {duplicate[0]['id']}."
            )
        self.items["security-group-rules"][rule["id"]] = rule
        return 201, {"security_group_rule": rule}

    # --- Nova's os-interface, on the ports' side ------------------------------------------------------

    def nova_interfaces(self, method: str, server: dict[str, Any], rest: list[str], body: Any) -> tuple[int, Any]:
        with self.lock:

            def view(port: dict[str, Any]) -> dict[str, Any]:
                return {
                    "port_id": port["id"],
                    "net_id": port["network_id"],
                    "fixed_ips": port["fixed_ips"],
                    "mac_addr": port["mac_address"],
                    "port_state": "ACTIVE",
                }

            mine = [p for p in self.ports() if p["device_id"] == server["id"]]
            if method == "GET" and not rest:
                return 200, {"interfaceAttachments": [view(p) for p in mine]}
            if method == "POST" and not rest:
                port = self.items["ports"].get(body["interfaceAttachment"].get("port_id", ""))
                if port is None:
                    return 404, {"itemNotFound": {"code": 404, "message": "Port could not be found."}}
                if port["device_id"] and port["device_id"] != server["id"]:
                    return 409, {"conflictingRequest": {"code": 409, "message": f"Port {port['id']} is still in use."}}
                port.update(device_id=server["id"], device_owner="compute:nova", status="ACTIVE")  # as Nova binds it
                if self.on_attach is not None:
                    self.on_attach(server["id"], port)
                return 200, {"interfaceAttachment": view(port)}
            if method == "DELETE" and len(rest) == 1:
                port = next((p for p in mine if p["id"] == rest[0]), None)
                if port is None:
                    return 404, {"itemNotFound": {"code": 404, "message": "Port is not attached."}}
                port.update(device_id="", device_owner="", status="DOWN")
                if self.on_detach is not None:
                    self.on_detach(server["id"], port)
                return 202, None
            return 404, {"itemNotFound": {"code": 404, "message": "not found"}}

    def release_device(self, server_id: str) -> None:
        """A deleted server's ports are detached (Nova deletes the ports it created; ours stay, unattached)."""
        with self.lock:
            for port in self.ports():
                if port["device_id"] == server_id:
                    port.update(device_id="", device_owner="", status="DOWN")


def serve_json(route: Any) -> tuple[ThreadingHTTPServer, str]:
    """An HTTP server on a free loopback port whose every request ``route(method, path, query, body, base)``
    answers with ``(status, json body or None)``; returns the server (running) and its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _do(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            base = f"http://{self.headers.get('Host')}"
            status, answer = route(self.command, url.path, urllib.parse.parse_qs(url.query), body, base)
            data = json.dumps(answer).encode() if answer is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("OpenStack-API-Version", "compute 2.64")
            self.send_header("X-OpenStack-Nova-API-Version", "2.64")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _do  # noqa: N815 - http.server's API

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@contextmanager
def running(subnets: list[tuple[str, str, str]]) -> Iterator[str]:
    """Serve a fake Neutron on a free loopback port; yields its URL."""
    fake = FakeNeutron(subnets)
    server, url = serve_json(lambda method, path, query, body, base: fake.handle(method, path, query, body))
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
