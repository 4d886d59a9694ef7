"""A stand-in for Neutron at its HTTP boundary, for clients that look subnets up before calling Octavia.

It answers what the `openstack loadbalancer` commands ask Neutron (version discovery and
``GET /v2.0/subnets?id=…`` / ``/v2.0/subnets/{id}``, ``networks``, ``ports`` lookups), from Neutron's documented
API, with a fixed set of subnets. Neutron cannot run here; our own services are never faked.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
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
        "ip_version": 4,
        "project_id": "",
        "tenant_id": "",
        "enable_dhcp": True,
        "gateway_ip": None,
        "allocation_pools": [],
        "dns_nameservers": [],
        "host_routes": [],
        "tags": [],
    }


class FakeNeutron:
    def __init__(self, subnets: list[tuple[str, str, str]]) -> None:
        self.subnets = [_subnet(*s) for s in subnets]

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p and p not in ("v2.0", "v2")]
        if not parts:
            return 200, {
                "versions": [
                    {"id": "v2.0", "status": "CURRENT", "links": [{"href": "http://127.0.0.1/v2.0/", "rel": "self"}]}
                ]
            }
        collection = parts[0].removesuffix(".json")
        if collection != "subnets":
            return 200, {collection: []}
        items = self.subnets
        wanted = query.get("id") or (parts[1:2] if len(parts) > 1 else None)
        if wanted:
            items = [s for s in items if s["id"] in wanted]
        if "name" in query:
            items = [s for s in items if s["name"] in query["name"]]
        if len(parts) > 1:
            return (200, {"subnet": items[0]}) if items else (404, {"NeutronError": {"message": "not found"}})
        return 200, {"subnets": items}


@contextmanager
def running(subnets: list[tuple[str, str, str]]) -> Iterator[str]:
    """Serve a fake Neutron on a free loopback port; yields its URL."""
    fake = FakeNeutron(subnets)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's API
            url = urllib.parse.urlsplit(self.path)
            status, body = fake.answer(url.path, urllib.parse.parse_qs(url.query))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
