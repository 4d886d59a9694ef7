"""Helpers of the heartbeat tests: a mesh with short heartbeat intervals (and several health replicas), the
status tree read through the API, and direct access to the heartbeat endpoint and the controller CA."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).resolve().parents[1] / "dataplane") not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataplane"))

from dataplane_helpers import LBS  # noqa: E402
from support import Rest, random_vip_in, start_mesh  # noqa: E402

from octavia_mesh.cli.mesh import Mesh  # noqa: E402

HEARTBEAT_S = 0.2
ENV = {
    "OCTAVIA_MESH_HEALTH_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
    "OCTAVIA_MESH_HEALTH_FLUSH_INTERVAL_S": "0.1",
    # These tests stop members and replicas, never amphorae: automatic failover stays out of the way.
    "OCTAVIA_MESH_HEALTH_FAILOVER_ENABLED": "false",
}
#: A health monitor that marks a member down on its first failed check (within about a second) and up on
#: its first good one.
MONITOR = {"delay": 1, "timeout": 1, "max_retries": 1, "max_retries_down": 1, "url_path": "/health"}
#: From a member's stop to its ERROR in the API: the monitor (about a second), a heartbeat, a flush, and
#: slack for a machine other tests load too.
STATUS_WITHIN_S = 10.0


def run_mesh(tmp_path_factory: pytest.TempPathFactory, project: str, health_replicas: int = 1) -> Iterator[Mesh]:
    """An amphora-provider mesh with :data:`ENV` (``OCTAVIA_MESH_TEST_DATABASE_URL`` picks the database)."""
    yield from start_mesh(tmp_path_factory, "noauth", project, "amphora", ENV, health_replicas)


def random_vip(api: Rest) -> str:
    """A VIP of the mesh's local subnet away from the low addresses its own creates allocate first."""
    return random_vip_in(api)


def heartbeat_endpoint(mesh: Mesh, replica: str = "health") -> str:
    return mesh.supervisor.child(replica).env["OCTAVIA_MESH_HEALTH_HEARTBEAT_LISTEN"]


def nats_url(mesh: Mesh) -> str:
    return mesh.supervisor.child("api").env["OCTAVIA_MESH_NATS_URL"]


def ca_dir(mesh: Mesh) -> Path:
    return mesh.state / "worker" / "ca"


def tree(api: Rest, lb_id: str) -> dict[str, str]:
    """Every operating status of the load balancer's status tree, by object id."""
    root = api.ok("GET", f"{LBS}/{lb_id}/status")["statuses"]["loadbalancer"]
    out = {root["id"]: root["operating_status"]}
    for listener in root.get("listeners", []):
        out[listener["id"]] = listener["operating_status"]
        for pool in listener.get("pools", []):
            out[pool["id"]] = pool["operating_status"]
            for member in pool.get("members", []):
                out[member["id"]] = member["operating_status"]
    return out


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll until ``check`` returns something truthy; fail naming ``what`` (and the last value) otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:g}s (last: {last!r})")


def wait_statuses(api: Rest, lb_id: str, expected: dict[str, str], timeout: float = STATUS_WITHIN_S) -> float:
    """Wait until every id of ``expected`` shows its status; the seconds it took."""
    started = time.monotonic()

    def reached() -> dict[str, str] | None:
        now = tree(api, lb_id)
        return now if all(now.get(k) == v for k, v in expected.items()) else None

    wait_for(reached, timeout, f"statuses {expected}")
    return time.monotonic() - started
