"""Configuration changes under keep-alive load: no failed request, the new configuration served at once."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field

from amphora_testkit import AgentProcess, Backend, get, haproxy_config, vip, wait_serving

from octavia_mesh.protos.agent.v1 import agent_pb2

CLIENTS = 4
#: The load runs through every reload and this long after the last one (its version must reach the clients).
AFTER_LAST_RELOAD_S = 1.0
#: A bound on the whole load, whatever happens (six reloads take about 5 s on a quiet machine).
MAX_DURATION_S = 90.0
MAX_REQUESTS_PER_CLIENT = 50_000
RELOADS = 6


@dataclass
class LoadResult:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    # (monotonic time, X-Cfg) of every response, to find when each version was first served.
    seen: list[tuple[float, str]] = field(default_factory=list)


def _client(
    address: str, port: int, stop: threading.Event, deadline: float, result: LoadResult, lock: threading.Lock
) -> None:
    """One persistent connection, reopened only when HAProxy answers `Connection: close` (http.client does that)."""
    conn = http.client.HTTPConnection(address, port, timeout=5)
    ok, failures, seen = 0, [], []
    try:
        for _ in range(MAX_REQUESTS_PER_CLIENT):
            if stop.is_set() or time.monotonic() >= deadline:
                break
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(f"status {response.status}")
                else:
                    ok += 1
                    seen.append((time.monotonic(), response.getheader("X-Cfg", "")))
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))
                conn.close()
    finally:
        conn.close()
        with lock:
            result.ok += ok
            result.failures += failures
            result.seen += seen


def test_reloads_under_keep_alive_load_drop_nothing(agent: AgentProcess, two_backends: list[Backend]) -> None:
    stub, lb = agent.stub(), str(uuid.uuid4())
    address, port = vip()
    stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config=haproxy_config(address, port, two_backends)))
    first = stub.Activate(agent_pb2.ActivateRequest(load_balancer_id=lb), timeout=30)
    wait_serving(address, port, version="v1")

    result, lock, stop = LoadResult(), threading.Lock(), threading.Event()
    # The clients stop after the last reload, not at a fixed time: on a loaded machine the reloads took longer
    # than a fixed load ran, and the last version then "never reached" clients that had already stopped.
    deadline = time.monotonic() + MAX_DURATION_S
    clients = [
        threading.Thread(target=_client, args=(address, port, stop, deadline, result, lock), daemon=True)
        for _ in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    time.sleep(0.5)

    activations: list[tuple[str, float, float]] = []  # version, call issued, call returned
    served_after: list[float] = []  # from the call to the first fresh connection answered by the new config
    for version in range(2, RELOADS + 2):
        config = haproxy_config(address, port, two_backends, version=version)
        stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config=config), timeout=30)
        issued = time.monotonic()
        answer = stub.Activate(agent_pb2.ActivateRequest(load_balancer_id=lb), timeout=30)
        returned = time.monotonic()
        assert answer.reloaded and answer.process.master_pid == first.process.master_pid
        served_after.append(returned - issued + wait_serving(address, port, 1.0, f"v{version}"))
        activations.append((f"v{version}", issued, returned))
        time.sleep(0.6)
    time.sleep(AFTER_LAST_RELOAD_S)
    stop.set()
    for client in clients:
        client.join(10)

    assert result.failures == [], f"{len(result.failures)} failed requests: {result.failures[:5]}"
    assert result.ok > 500
    for version, issued, _ in activations:
        first_seen = min((t for t, v in result.seen if v == version), default=None)
        assert first_seen is not None, f"{version} never reached the load clients"
        assert first_seen - issued < 1.0, f"{version} served {first_seen - issued:.3f}s after Activate"
    assert max(served_after) < 1.0

    status = stub.GetStatus(agent_pb2.GetStatusRequest(load_balancer_id=lb), timeout=10)
    assert status.process.reload_count == RELOADS
    assert get(address, port)[2] == f"v{RELOADS + 1}"
    call_ms = [(r - i) * 1000 for _, i, r in activations]
    print(
        f"\nhitless reload: {result.ok} requests by {CLIENTS} keep-alive clients, {len(result.failures)} failed, "
        f"{RELOADS} reloads; Activate call {statistics.median(call_ms):.1f} ms median / {max(call_ms):.1f} ms max; "
        f"Activate -> new config on a fresh connection {statistics.median(served_after) * 1000:.1f} ms median / "
        f"{max(served_after) * 1000:.1f} ms max"
    )
    stub.DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=30)
