"""The agent's contract over mutual TLS: info, configurations, activation, certificates, who may call."""

from __future__ import annotations

import collections
import hashlib
import os
import ssl
import stat
import uuid
from pathlib import Path

import grpc
import pytest
from amphora_testkit import AgentProcess, Backend, Pki, get, haproxy_config, vip, wait_serving
from grpc_health.v1 import health_pb2, health_pb2_grpc

from octavia_mesh.protos.agent.v1 import agent_pb2, agent_pb2_grpc

State = agent_pb2.HaproxyProcess


def _lb() -> str:
    return str(uuid.uuid4())


def _activate(stub: agent_pb2_grpc.AmphoraAgentStub, lb: str, config: str) -> agent_pb2.ActivateResponse:
    stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config=config), timeout=30)
    return stub.Activate(agent_pb2.ActivateRequest(load_balancer_id=lb), timeout=30)


def test_info(agent: AgentProcess) -> None:
    info = agent.stub().GetInfo(agent_pb2.GetInfoRequest(), timeout=10)
    assert info.amphora_id == "amp-1"
    assert info.api_version == "octavia_mesh.agent.v1"
    assert info.haproxy_version.startswith("2.8.")
    assert info.agent_version == "0.1.0"
    assert info.hostname


def test_health_is_served(agent: AgentProcess) -> None:
    stub = health_pb2_grpc.HealthStub(agent.channel())
    for service in ("", "octavia_mesh.agent.v1.AmphoraAgent"):
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_impostors_are_refused(agent: AgentProcess, pki: Pki) -> None:
    request = agent_pb2.GetInfoRequest()
    # Signed by the controller CA, but not the controller: the TLS handshake passes, the identity check does not.
    with pytest.raises(grpc.RpcError) as wrong:
        agent.stub(pki.wrong_identity).GetInfo(request, timeout=10)
    assert wrong.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as wrong_health:
        health_pb2_grpc.HealthStub(agent.channel(pki.wrong_identity)).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert wrong_health.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Claims the controller's name but is self-signed, or shows no certificate: refused in the handshake.
    with pytest.raises(grpc.RpcError) as self_signed:
        agent.stub(pki.self_signed).GetInfo(request, timeout=10)
    assert self_signed.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as anonymous:
        agent_pb2_grpc.AmphoraAgentStub(agent.channel(with_client_cert=False)).GetInfo(request, timeout=10)
    assert anonymous.value.code() == grpc.StatusCode.UNAVAILABLE
    # And plain text gets nowhere.
    with grpc.insecure_channel(agent.target) as channel, pytest.raises(grpc.RpcError) as plain:
        agent_pb2_grpc.AmphoraAgentStub(channel).GetInfo(request, timeout=10)
    assert plain.value.code() == grpc.StatusCode.UNAVAILABLE


def test_activate_serves_round_robin(agent: AgentProcess, two_backends: list[Backend]) -> None:
    stub, lb = agent.stub(), _lb()
    address, port = vip()
    answer = _activate(stub, lb, haproxy_config(address, port, two_backends))
    assert not answer.reloaded
    assert answer.process.state == State.STATE_RUNNING
    assert answer.process.master_pid > 0 and answer.process.worker_pid > 0
    wait_serving(address, port)
    seen = collections.Counter(get(address, port)[1].strip() for _ in range(10))
    assert seen == {"backend1": 5, "backend2": 5}

    status = stub.GetStatus(agent_pb2.GetStatusRequest(load_balancer_id=lb), timeout=10)
    assert [f.name for f in status.frontends] == ["listener1"]
    assert status.frontends[0].status == "OPEN"
    assert status.frontends[0].counters.total_requests >= 10
    (pool,) = status.backends
    assert pool.name == "pool1" and pool.status == "UP"
    assert [s.name for s in pool.servers] == ["m1", "m2"]
    assert {s.address for s in pool.servers} == {f"127.0.0.1:{b.port}" for b in two_backends}
    assert all(s.counters.total_sessions >= 5 for s in pool.servers)
    stub.DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=30)


def test_invalid_config_is_refused_and_nothing_changes(agent: AgentProcess, two_backends: list[Backend]) -> None:
    stub, lb = agent.stub(), _lb()
    address, port = vip()
    before = _activate(stub, lb, haproxy_config(address, port, two_backends)).process
    bad = haproxy_config(address, port, two_backends, version=2).replace("balance roundrobin", "balance sideways")
    with pytest.raises(grpc.RpcError) as refused:
        stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config=bad), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # HAProxy's own message, pointing at the line in the controller's file (not at a temporary name).
    assert "[haproxy.cfg:17] : balance only supports" in refused.value.details()

    # Nothing changed: the same process, configuration and traffic; an Activate reloads v1 again.
    after = stub.GetStatus(agent_pb2.GetStatusRequest(load_balancer_id=lb), timeout=10).process
    assert (after.master_pid, after.config_sha256) == (before.master_pid, before.config_sha256)
    assert get(address, port)[2] == "v1"
    again = stub.Activate(agent_pb2.ActivateRequest(load_balancer_id=lb), timeout=30)
    assert again.reloaded and again.process.config_sha256 == before.config_sha256
    assert get(address, port)[2] == "v1"
    stub.DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=30)


def test_warnings_are_returned(agent: AgentProcess, two_backends: list[Backend]) -> None:
    stub, lb = agent.stub(), _lb()
    address, port = vip()
    config = haproxy_config(address, port, two_backends).replace("    timeout client 30s\n", "")
    answer = stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config=config), timeout=30)
    assert any("missing timeouts" in warning for warning in answer.warnings), answer.warnings
    assert answer.config_sha256 == hashlib.sha256(config.encode()).hexdigest()
    stub.DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=30)


def test_invalid_config_for_a_new_load_balancer_leaves_no_files(agent: AgentProcess) -> None:
    stub, lb = agent.stub(), _lb()
    with pytest.raises(grpc.RpcError) as refused:
        stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config="frontend x\n  nonsense\n"), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert lb not in stub.GetInfo(agent_pb2.GetInfoRequest(), timeout=10).load_balancer_ids
    assert not (agent.state_dir / "lb" / lb).exists()


def test_bad_requests(agent: AgentProcess) -> None:
    stub = agent.stub()
    for lb in ("", "../etc", "a/b", "x" * 65):
        with pytest.raises(grpc.RpcError) as bad:
            stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config="global\n"), timeout=10)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, lb
    lb = _lb()
    with pytest.raises(grpc.RpcError) as unconfigured:
        stub.Activate(agent_pb2.ActivateRequest(load_balancer_id=lb), timeout=10)
    assert unconfigured.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetStatus(agent_pb2.GetStatusRequest(load_balancer_id=lb), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as missing_delete:
        stub.DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=10)
    assert missing_delete.value.code() == grpc.StatusCode.NOT_FOUND
    stub.DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb, allow_missing=True), timeout=10)
    with pytest.raises(grpc.RpcError) as not_pem:
        stub.PutCertificate(agent_pb2.PutCertificateRequest(load_balancer_id=lb, name="a.pem", pem=b"x"), timeout=10)
    assert not_pem.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as bad_name:
        stub.PutCertificate(
            agent_pb2.PutCertificateRequest(load_balancer_id=lb, name="../a.pem", pem=b"-----BEGIN X-----"), timeout=10
        )
    assert bad_name.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_certificates_are_private_files_haproxy_serves(
    agent: AgentProcess, pki: Pki, two_backends: list[Backend]
) -> None:
    stub, lb = agent.stub(), _lb()
    address, port = vip()
    listener = pki.issue_server("listener1.example", ips=(address,))
    put = stub.PutCertificate(
        agent_pb2.PutCertificateRequest(load_balancer_id=lb, name="listener1.pem", pem=listener.pem), timeout=10
    )
    path = Path(put.path)
    assert path.is_absolute() and path.read_bytes() == listener.pem
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700

    # The returned path is what the renderer writes into `crt`; HAProxy then terminates TLS with it.
    config = haproxy_config(address, port, two_backends, bind_extra=f" ssl crt {put.path}")
    _activate(stub, lb, config)
    context = ssl.create_default_context(cadata=pki.ca_cert.decode())
    context.check_hostname = False
    assert get(address, port, context=context)[0] == 200

    # A configuration naming a missing file is refused by `haproxy -c`.
    missing = config.replace(put.path, str(path.with_name("absent.pem")))
    with pytest.raises(grpc.RpcError) as refused:
        stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config=missing), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    delete = agent_pb2.DeleteCertificateRequest(load_balancer_id=lb, name="listener1.pem")
    stub.DeleteCertificate(delete, timeout=10)
    assert not path.exists()
    with pytest.raises(grpc.RpcError) as gone:
        stub.DeleteCertificate(delete, timeout=10)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    delete.allow_missing = True
    stub.DeleteCertificate(delete, timeout=10)
    stub.DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=30)


def test_stop_and_start(agent: AgentProcess, two_backends: list[Backend]) -> None:
    stub, lb = agent.stub(), _lb()
    address, port = vip()
    # Start runs a configuration that was put but never activated.
    stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config=haproxy_config(address, port, two_backends)))
    started = stub.Start(agent_pb2.StartRequest(load_balancer_id=lb), timeout=30).process
    assert started.state == State.STATE_RUNNING
    wait_serving(address, port)

    stopped = stub.Stop(agent_pb2.StopRequest(load_balancer_id=lb), timeout=30).process
    assert stopped.state == State.STATE_STOPPED and stopped.master_pid == 0
    with pytest.raises(OSError):
        get(address, port, timeout=1)
    status = stub.GetStatus(agent_pb2.GetStatusRequest(load_balancer_id=lb), timeout=10)
    assert status.process.state == State.STATE_STOPPED and not status.frontends
    assert stub.Stop(agent_pb2.StopRequest(load_balancer_id=lb), timeout=30).process.state == State.STATE_STOPPED

    again = stub.Start(agent_pb2.StartRequest(load_balancer_id=lb), timeout=30).process
    assert again.state == State.STATE_RUNNING and again.master_pid != started.master_pid
    wait_serving(address, port)
    assert stub.Start(agent_pb2.StartRequest(load_balancer_id=lb), timeout=30).process.master_pid == again.master_pid
    stub.DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=30)


def test_a_config_haproxy_cannot_start_is_reported(agent: AgentProcess, two_backends: list[Backend]) -> None:
    stub, lb = agent.stub(), _lb()
    address, port = vip()
    # Valid for `haproxy -c`, which does not bind: 192.0.2.1 (TEST-NET) is not an address of this host.
    config = haproxy_config("192.0.2.1", port, two_backends)
    stub.PutConfig(agent_pb2.PutConfigRequest(load_balancer_id=lb, config=config), timeout=30)
    with pytest.raises(grpc.RpcError) as failed:
        stub.Activate(agent_pb2.ActivateRequest(load_balancer_id=lb), timeout=30)
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cannot bind" in failed.value.details().lower() or "cannot" in failed.value.details().lower()
    status = stub.GetStatus(agent_pb2.GetStatusRequest(load_balancer_id=lb), timeout=10).process
    assert status.state == State.STATE_FAILED and status.last_error

    # A good configuration then starts normally.
    _activate(stub, lb, haproxy_config(address, port, two_backends))
    wait_serving(address, port)
    stub.DeleteLoadBalancer(agent_pb2.DeleteLoadBalancerRequest(load_balancer_id=lb), timeout=30)
