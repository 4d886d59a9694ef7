"""The supervisor: HAProxy restarted when it dies, nothing left behind by a delete or an agent stop."""

from __future__ import annotations

import http.client
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from amphora_testkit import (
    AgentProcess,
    Backend,
    alive,
    children_of,
    exists,
    get,
    haproxy_config,
    memory_kb,
    processes_mentioning,
    vip,
    wait_serving,
)

from octavia_mesh.amphora_agent.store import socket_key
from octavia_mesh.protos.agent.v1 import agent_pb2, agent_pb2_grpc

State = agent_pb2.HaproxyProcess


def _serve(stub: agent_pb2_grpc.AmphoraAgentStub, backends: list[Backend], version: int = 1) -> tuple[str, str, int]:
    lb = str(uuid.uuid4())
    address, port = vip()
    config = haproxy_config(address, port, backends, version=version)
    stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config=config), timeout=30)
    stub.Activate(agent_pb2.ActivateRequest(load_balancer_id=lb), timeout=30)
    wait_serving(address, port)
    return lb, address, port


def _process(stub: agent_pb2_grpc.AmphoraAgentStub, lb: str) -> agent_pb2.HaproxyProcess:
    return stub.GetStatus(agent_pb2.GetStatusRequest(load_balancer_id=lb), timeout=10).process


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.01)


@pytest.mark.parametrize("victim", ["master", "worker"])
def test_killed_haproxy_is_restarted(agent: AgentProcess, two_backends: list[Backend], victim: str) -> None:
    stub = agent.stub()
    lb, address, port = _serve(stub, two_backends)
    before = _process(stub, lb)
    os.kill(before.master_pid if victim == "master" else before.worker_pid, signal.SIGKILL)
    killed = time.monotonic()
    # A dead worker takes its master down with it (HAProxy's default), so both cases end in a restart.

    def restarted() -> bool:
        now = _process(stub, lb)
        return now.state == State.STATE_RUNNING and now.master_pid not in (0, before.master_pid)

    _wait(restarted, 10, "HAProxy restarted")
    restarted_after = time.monotonic() - killed
    wait_serving(address, port, timeout=5)
    after = _process(stub, lb)
    assert after.state == State.STATE_RUNNING
    assert after.master_pid not in (0, before.master_pid)
    assert after.restart_count == before.restart_count + 1
    assert after.last_error == ""  # cleared by the successful restart
    # The supervisor reaped them: no zombie left of either process.
    _wait(lambda: not exists(before.master_pid) and not exists(before.worker_pid), 5, "old processes reaped")
    print(f"\nHAProxy {victim} SIGKILL -> restarted and serving after {restarted_after * 1000:.0f} ms")
    stub.DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=30)


def test_delete_leaves_no_process_and_no_file(agent: AgentProcess, two_backends: list[Backend]) -> None:
    stub = agent.stub()
    lb, address, port = _serve(stub, two_backends)
    stub.PutCertificate(agent_pb2.PutCertificateRequest(load_balancer_id=lb, name="x.pem", pem=b"-----BEGIN X-----\n"))
    process = _process(stub, lb)
    pids = [process.master_pid, process.worker_pid]
    stub.DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=30)

    assert not any(exists(pid) for pid in pids)
    assert not (agent.state_dir / "lb" / lb).exists()
    assert not list((agent.state_dir / "run").glob(f"{socket_key(lb)}.*"))
    assert processes_mentioning(lb) == []
    with pytest.raises(OSError):
        get(address, port, timeout=1)
    assert lb not in stub.GetInfo(agent_pb2.GetInfoRequest(), timeout=10).load_balancer_ids


def test_sigterm_stops_every_child(start_agent: Callable[..., AgentProcess], two_backends: list[Backend]) -> None:
    agent = start_agent()
    stub = agent.stub()
    lbs = [_serve(stub, two_backends)[0] for _ in range(2)]
    # An idle keep-alive client pins the old worker of a reload: it must not outlive the agent either.
    lb, address, port = _serve(stub, two_backends)
    idle = http.client.HTTPConnection(address, port, timeout=5)
    idle.request("GET", "/")
    idle.getresponse().read()
    config = haproxy_config(address, port, two_backends, version=2)
    stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config=config), timeout=30)
    stub.Activate(agent_pb2.ActivateRequest(load_balancer_id=lb), timeout=30)
    pids = []
    for each in [*lbs, lb]:
        process = _process(stub, each)
        pids += [process.master_pid, process.worker_pid, *process.old_worker_pids]
    assert len(pids) >= 7 and all(alive(pid) for pid in pids)
    agent_pid = agent.proc.pid if agent.proc else 0

    assert agent.signal(signal.SIGTERM) == 0
    idle.close()
    assert [pid for pid in pids if exists(pid)] == []
    assert children_of(agent_pid) == []
    assert processes_mentioning(str(agent.state_dir)) == []


def test_agent_restart_resumes_what_ran(start_agent: Callable[..., AgentProcess], two_backends: list[Backend]) -> None:
    agent = start_agent()
    stub = agent.stub()
    running, address, port = _serve(stub, two_backends)
    stopped, _, stopped_port = _serve(stub, two_backends)
    stub.Stop(agent_pb2.StopRequest(load_balancer_id=stopped), timeout=30)
    assert agent.signal(signal.SIGTERM) == 0
    with pytest.raises(OSError):
        get(address, port, timeout=1)

    again = start_agent(agent.state_dir)
    stub = again.stub()
    # Served as soon as the agent answers: load balancers are resumed before the server starts.
    assert get(address, port)[0] == 200
    assert _process(stub, running).state == State.STATE_RUNNING
    assert _process(stub, stopped).state == State.STATE_STOPPED
    assert sorted(stub.GetInfo(agent_pb2.GetInfoRequest(), timeout=10).load_balancer_ids) == sorted([running, stopped])


def test_haproxy_outlives_a_crashed_agent_and_is_taken_over(
    start_agent: Callable[..., AgentProcess], two_backends: list[Backend]
) -> None:
    agent = start_agent()
    stub = agent.stub()
    lb, address, port = _serve(stub, two_backends)
    orphan = _process(stub, lb)
    agent.signal(signal.SIGKILL)
    # The data plane does not depend on the agent.
    assert get(address, port)[0] == 200

    again = start_agent(agent.state_dir)
    process = _process(again.stub(), lb)
    assert process.state == State.STATE_RUNNING and process.master_pid != orphan.master_pid
    # The new HAProxy serves; the orphan was soft-stopped and is gone (or an unreaped zombie of PID 1).
    _wait(lambda: not alive(orphan.master_pid) and not alive(orphan.worker_pid), 10, "the orphan exits")
    assert get(address, port)[0] == 200


def test_memory(agent: AgentProcess, two_backends: list[Backend]) -> None:
    stub = agent.stub()
    lb, _, _ = _serve(stub, two_backends)
    process = _process(stub, lb)
    assert agent.proc is not None
    agent_rss, agent_pss = memory_kb(agent.proc.pid)
    master_rss, master_pss = memory_kb(process.master_pid)
    worker_rss, worker_pss = memory_kb(process.worker_pid)
    print(
        f"\nmemory: agent RSS {agent_rss / 1024:.1f} MiB / PSS {agent_pss / 1024:.1f} MiB; "
        f"HAProxy master RSS {master_rss / 1024:.1f} / PSS {master_pss / 1024:.1f} MiB, "
        f"worker RSS {worker_rss / 1024:.1f} / PSS {worker_pss / 1024:.1f} MiB"
    )
    assert agent_pss < 100 * 1024
    stub.DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=30)


def test_state_dir_is_private(agent: AgentProcess) -> None:
    for path in (agent.state_dir, agent.state_dir / "lb", agent.state_dir / "run"):
        assert Path(path).stat().st_mode & 0o077 == 0
