"""The agent's keepalived supervisor (ACTIVE_STANDBY amphorae), through the agent's VRRP calls.

The agent runs in a network namespace of this test's own, linked to the host by a veth pair (the agent listens
on the namespace's end; its VRRP peer is an address nobody holds, so keepalived becomes MASTER alone and its
advertisements never leave the link). Needs root; keepalived comes from the distribution's packages (`make
test`'s set-up installs it when missing).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from amphora_testkit import CONTROLLER, Pki, alive, processes_mentioning
from support import ensure_keepalived

from octavia_mesh.protos.agent.v1 import agent_pb2, agent_pb2_grpc

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="keepalived in a network namespace needs root")

HOST, AMPHORA, PEER, VIP = "169.254.250.1", "169.254.250.2", "169.254.250.3", "169.254.250.10"
State = agent_pb2.VrrpStatus


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


VRRP_INSTANCE = f"""vrrp_instance test {{
    state BACKUP
    interface eth0
    virtual_router_id 1
    priority 100
    nopreempt
    version 3
    advert_int 0.1
    unicast_src_ip {AMPHORA}
    unicast_peer {{
        {PEER}
    }}
    virtual_ipaddress {{
        {VIP}/32 dev eth0
    }}
    track_script {{
        check_haproxy
    }}
}}
"""


@dataclass
class NamespacedAgent:
    pki: Pki
    netns: str
    state: Path
    work: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 9443

    def start(self) -> None:
        paths = self.pki.write(self.work / "pki")
        argv = [
            "ip", "netns", "exec", self.netns, sys.executable, "-m", "octavia_mesh.amphora_agent",
            "--amphora-id=amp-vrrp", f"--listen={AMPHORA}:{self.port}", f"--state-dir={self.state}",
            f"--server-cert={paths['agent_cert']}", f"--server-key={paths['agent_key']}",
            f"--client-ca={paths['ca']}", f"--controller-identities={CONTROLLER}",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCTAVIA_MESH_AGENT_")}
        with open(self.work / "agent.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait(lambda: self._answers(), 30.0, "the agent to answer")

    def _answers(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, (self.work / "agent.log").read_text()[-3000:]
        try:
            self.stub().GetInfo(agent_pb2.GetInfoRequest(), timeout=1)
        except grpc.RpcError:
            return False
        return True

    def stub(self) -> agent_pb2_grpc.AmphoraAgentStub:
        creds = grpc.ssl_channel_credentials(self.pki.ca_cert, self.pki.controller.key, self.pki.controller.cert)
        channel = grpc.secure_channel(
            f"{AMPHORA}:{self.port}", creds, options=[("grpc.ssl_target_name_override", "localhost")]
        )
        return agent_pb2_grpc.AmphoraAgentStub(channel)

    def status(self) -> agent_pb2.VrrpStatus:
        return self.stub().GetVrrpStatus(agent_pb2.GetVrrpStatusRequest(), timeout=10)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    @property
    def pidfiles(self) -> tuple[Path, Path]:
        return self.state / "vrrp" / "keepalived.pid", self.state / "vrrp" / "vrrp.pid"


def wait(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.02)


def holds_vip(netns: str) -> bool:
    return f" {VIP}/" in _ip("-n", netns, "-4", "-o", "addr", "show", "dev", "eth0")


def keepalived_processes(state: Path) -> list[int]:
    return [p for p in processes_mentioning(str(state / "vrrp" / "keepalived.conf")) if alive(p)]


@pytest.fixture
def namespaced(pki: Pki, short_dir: Path) -> Iterator[NamespacedAgent]:
    ensure_keepalived()
    suffix = uuid.uuid4().hex[:8]
    netns, host_end = f"om-test-{suffix}", f"omt{suffix}"
    _ip("netns", "add", netns)
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("addr", "add", f"{HOST}/29", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("-n", netns, "addr", "add", f"{AMPHORA}/29", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        agent = NamespacedAgent(pki, netns, short_dir / "state", short_dir)
        agent.start()
        try:
            yield agent
        finally:
            agent.stop()
            for pid in keepalived_processes(agent.state):  # whatever a failed test left
                os.kill(pid, signal.SIGKILL)
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


def test_config_is_checked_then_keepalived_holds_the_vip(namespaced: NamespacedAgent) -> None:
    stub = namespaced.stub()
    with pytest.raises(grpc.RpcError) as refused:
        stub.PutVrrpConfig(agent_pb2.PutVrrpConfigRequest(config="vrrp_instance broken {\n    bogus_keyword 1\n"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as early:
        stub.StartVrrp(agent_pb2.StartVrrpRequest(), timeout=10)
    assert early.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # nothing put yet

    put = stub.PutVrrpConfig(agent_pb2.PutVrrpConfigRequest(config=VRRP_INSTANCE), timeout=30)
    started = stub.StartVrrp(agent_pb2.StartVrrpRequest(), timeout=30)
    assert not started.reloaded and started.status.running and started.status.config_sha256 == put.config_sha256
    # Alone on its link, it becomes MASTER after three missed advertisements, and takes the VIP.
    wait(lambda: namespaced.status().state == State.STATE_MASTER, 10.0, "keepalived MASTER")
    assert holds_vip(namespaced.netns)
    assert stub.StartVrrp(agent_pb2.StartVrrpRequest(), timeout=30).reloaded  # a second start reloads

    stopped = stub.StopVrrp(agent_pb2.StopVrrpRequest(), timeout=30)
    assert not stopped.status.running and stopped.status.state == State.STATE_STOP
    assert not holds_vip(namespaced.netns), "a stopped keepalived gives the VIP back"
    assert keepalived_processes(namespaced.state) == []
    assert not any(p.exists() for p in namespaced.pidfiles)


def test_stale_pid_files_are_cleared_and_a_killed_keepalived_is_reaped_and_restarted(
    namespaced: NamespacedAgent,
) -> None:
    stub = namespaced.stub()
    stub.PutVrrpConfig(agent_pb2.PutVrrpConfigRequest(config=VRRP_INSTANCE), timeout=30)
    # Pid files naming a live process (a reused pid): keepalived alone would refuse, "already running".
    squatter = subprocess.Popen(["sleep", "60"])
    try:
        namespaced.pidfiles[0].parent.mkdir(parents=True, exist_ok=True)
        for pidfile in namespaced.pidfiles:
            pidfile.write_text(f"{squatter.pid}\n")
        status = stub.StartVrrp(agent_pb2.StartVrrpRequest(), timeout=30).status
        assert status.running and status.pid != squatter.pid
        assert alive(squatter.pid), "the agent signalled a process that was not its keepalived"
    finally:
        squatter.kill()
        squatter.wait()
    wait(lambda: namespaced.status().state == State.STATE_MASTER, 10.0, "keepalived MASTER")

    parent = int(namespaced.pidfiles[0].read_text())
    child = int(namespaced.pidfiles[1].read_text())
    os.kill(parent, signal.SIGKILL)  # its VRRP child is orphaned to the agent, a subreaper
    wait(lambda: namespaced.status().restart_count == 1 and namespaced.status().running, 10.0, "a restart")
    wait(lambda: not Path(f"/proc/{parent}").exists(), 5.0, "the killed keepalived reaped")
    wait(lambda: not Path(f"/proc/{child}").exists(), 5.0, "its VRRP child gone and reaped")
    status = namespaced.status()
    assert status.pid not in (parent, child)
    wait(lambda: namespaced.status().state == State.STATE_MASTER, 10.0, "MASTER again")
    assert len(keepalived_processes(namespaced.state)) == 2  # the new parent and its VRRP child, nothing else


def test_keepalived_outlives_no_agent_and_comes_back_with_the_next(namespaced: NamespacedAgent) -> None:
    stub = namespaced.stub()
    stub.PutVrrpConfig(agent_pb2.PutVrrpConfigRequest(config=VRRP_INSTANCE), timeout=30)
    stub.StartVrrp(agent_pb2.StartVrrpRequest(), timeout=30)
    wait(lambda: namespaced.status().state == State.STATE_MASTER, 10.0, "keepalived MASTER")

    namespaced.stop(signal.SIGTERM)  # a stopping agent stops keepalived (the VIP goes to the peer) ...
    assert keepalived_processes(namespaced.state) == [] and not holds_vip(namespaced.netns)
    namespaced.start()  # ... and the next agent starts it again, as it was meant to run
    wait(lambda: namespaced.status().state == State.STATE_MASTER, 10.0, "keepalived resumed")

    orphan = int(namespaced.pidfiles[0].read_text())
    namespaced.stop(signal.SIGKILL)  # an agent that dies leaves keepalived running, with its pid files
    assert alive(orphan)
    namespaced.start()  # the next agent stops the orphan rather than fight it for the VIP, then starts its own
    wait(lambda: not alive(orphan), 10.0, "the orphaned keepalived stopped")
    wait(lambda: namespaced.status().state == State.STATE_MASTER, 10.0, "keepalived of the new agent")
    assert int(namespaced.pidfiles[0].read_text()) != orphan
