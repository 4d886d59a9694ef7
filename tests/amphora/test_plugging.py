"""``PlugVip`` / ``PlugNetwork``: the agent configures ports attached to its VM, found by MAC address.

The "VM" is a network namespace of this test's own with the real agent in it (management over a veth pair to the
host, as the keepalived tests); the "Neutron networks" are veth pairs whose other ends sit in a second namespace,
which also plays the client and the subnets' gateway. Nothing but the management veth touches the host.

Real traffic checks it: a TCP client on another network (192.0.2.10, behind the gateway) reaches a server bound
to the VIP only if the agent's source routing sends the replies back through the VIP port's gateway (the VM's
main table has no route there); a member network's address answers on its own subnet.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from amphora_testkit import CONTROLLER, Pki

from octavia_mesh.protos.agent.v1 import agent_pb2, agent_pb2_grpc

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

HOST, AMPHORA = "169.254.251.1", "169.254.251.2"
VIP_MAC, MEMBER_MAC = "fa:16:3e:aa:bb:01", "fa:16:3e:aa:bb:02"
CLIENT = "192.0.2.10"  # on another network: reached through the VIP subnet's gateway only


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


@dataclass
class Vm:
    netns: str
    net: str  # the networks' far ends, the gateway and the client
    stub: agent_pb2_grpc.AmphoraAgentStub


def _python_in(netns: str, code: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def vm(pki: Pki, short_dir: Path) -> Iterator[Vm]:
    suffix = uuid.uuid4().hex[:8]
    netns, net, host_end = f"om-plug-{suffix}", f"om-pnet-{suffix}", f"omp{suffix}"
    agent = None
    _ip("netns", "add", netns)
    _ip("netns", "add", net)
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("addr", "add", f"{HOST}/29", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("-n", netns, "addr", "add", f"{AMPHORA}/29", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        # What Nova's interface attach does: a NIC with the port's MAC appears in the VM, unconfigured.
        for name, mac, gateway in (("vip0", VIP_MAC, "gw0"), ("mem0", MEMBER_MAC, "mgw0")):
            _ip("-n", net, "link", "add", gateway, "type", "veth", "peer", "name", name, "netns", netns)
            _ip("-n", netns, "link", "set", name, "address", mac)
            _ip("-n", net, "link", "set", gateway, "up")
        _ip("-n", net, "addr", "add", "10.0.0.1/24", "dev", "gw0")
        _ip("-n", net, "addr", "add", "10.1.0.1/24", "dev", "mgw0")
        _ip("-n", net, "addr", "add", f"{CLIENT}/32", "dev", "lo")
        _ip("-n", net, "link", "set", "lo", "up")
        paths = pki.write(short_dir / "pki")
        argv = [
            "ip", "netns", "exec", netns, sys.executable, "-m", "octavia_mesh.amphora_agent",
            "--amphora-id=amp-plug", f"--listen={AMPHORA}:9443", f"--state-dir={short_dir / 'state'}",
            f"--server-cert={paths['agent_cert']}", f"--server-key={paths['agent_key']}",
            f"--client-ca={paths['ca']}", f"--controller-identities={CONTROLLER}",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCTAVIA_MESH_AGENT_")}
        with open(short_dir / "agent.log", "ab") as log:
            agent = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        creds = grpc.ssl_channel_credentials(pki.ca_cert, pki.controller.key, pki.controller.cert)
        channel = grpc.secure_channel(
            f"{AMPHORA}:9443", creds, options=[("grpc.ssl_target_name_override", "localhost")]
        )
        stub = agent_pb2_grpc.AmphoraAgentStub(channel)
        deadline = time.monotonic() + 30
        while True:
            assert agent.poll() is None, (short_dir / "agent.log").read_text()[-3000:]
            try:
                stub.GetInfo(agent_pb2.GetInfoRequest(), timeout=1)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "the agent did not answer"
                time.sleep(0.1)
        yield Vm(netns, net, stub)
        channel.close()
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, check=False)
        for name in (netns, net):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _addresses(netns: str, dev: str) -> set[str]:
    out = _ip("-n", netns, "-o", "addr", "show", "dev", dev)
    return {line.split()[3] for line in out.splitlines() if " inet" in line and "scope link" not in line}


def _serve(netns: str, address: str, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "http.server", "--bind", address, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not _listening(netns, port):
        assert server.poll() is None and time.monotonic() < deadline, f"nothing listens on {address}:{port}"
        time.sleep(0.1)
    return server


def _listening(netns: str, port: int) -> bool:
    return any(
        line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"
        for line in _python_in(netns, "print(open('/proc/net/tcp').read())").stdout.splitlines()[1:]
        if len(line.split()) > 3
    )


def _reaches(vm: Vm, address: str, port: int, source: str) -> bool:
    code = (
        "import socket\n"
        f"s = socket.create_connection(({address!r}, {port}), timeout=3, source_address=({source!r}, 0))\n"
        "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); print(s.recv(12).decode())\n"
    )
    return _python_in(vm.net, code).stdout.startswith("HTTP/1.0 200")


def _vip_request(**overrides: object) -> agent_pb2.PlugVipRequest:
    values: dict[str, object] = {
        "mac_address": VIP_MAC.upper(),  # Neutron's case need not be the kernel's
        "addresses": [agent_pb2.InterfaceAddress(address="10.0.0.5", prefix_length=24)],
        "vips": [agent_pb2.InterfaceAddress(address="10.0.0.10", prefix_length=24)],
        "gateway": "10.0.0.1",
        "host_routes": [agent_pb2.HostRoute(destination="203.0.113.0/24", next_hop="10.0.0.1")],
        "mtu": 1450,
    } | overrides
    return agent_pb2.PlugVipRequest(**values)  # type: ignore[arg-type]


def test_plug_vip_configures_the_port_with_source_routing(vm: Vm) -> None:
    assert _addresses(vm.netns, "vip0") == set()  # as Nova attached it: unconfigured
    reply = vm.stub.PlugVip(_vip_request(), timeout=30)
    assert reply.interface == "vip0"
    assert _addresses(vm.netns, "vip0") == {"10.0.0.5/24", "10.0.0.10/32"}
    link = _ip("-n", vm.netns, "-o", "link", "show", "dev", "vip0")
    assert "mtu 1450" in link and ",UP" in link
    server = _serve(vm.netns, "10.0.0.10", 8080)
    try:
        # The client is on another network: only the VIP port's own table routes the replies to it.
        assert _reaches(vm, "10.0.0.10", 8080, CLIENT)
        _ip("-n", vm.netns, "rule", "del", "from", "10.0.0.10")
        assert not _reaches(vm, "10.0.0.10", 8080, CLIENT)  # without the rule the replies have no way back
        assert "default via 10.0.0.1" not in _ip("-n", vm.netns, "route", "show")  # the main table is untouched
        assert "203.0.113.0/24 via 10.0.0.1" in _ip("-n", vm.netns, "route", "show", "table", "all")

        again = vm.stub.PlugVip(_vip_request(), timeout=30)  # repeatable, and repairs what went missing
        assert again.interface == "vip0" and _addresses(vm.netns, "vip0") == {"10.0.0.5/24", "10.0.0.10/32"}
        assert _reaches(vm, "10.0.0.10", 8080, CLIENT)
        vm.stub.PlugVip(_vip_request(), timeout=30)
        rules = _ip("-n", vm.netns, "rule", "show").splitlines()
        assert len([r for r in rules if "from 10.0.0.10 lookup" in r]) == 1  # not one more per call
        assert len([r for r in rules if "from 10.0.0.5 lookup" in r]) == 1
        moved = [agent_pb2.InterfaceAddress(address="10.0.0.11", prefix_length=24)]
        vm.stub.PlugVip(_vip_request(vips=moved), timeout=30)
        assert _addresses(vm.netns, "vip0") == {"10.0.0.5/24", "10.0.0.11/32"}  # converges: the old VIP goes

        # ACTIVE_STANDBY: keepalived holds the VIPs; the agent configures the rest and leaves them alone.
        vm.stub.PlugVip(_vip_request(vips=moved, vrrp_managed=True), timeout=30)
        assert _addresses(vm.netns, "vip0") == {"10.0.0.5/24", "10.0.0.11/32"}
        _ip("-n", vm.netns, "addr", "del", "10.0.0.11/32", "dev", "vip0")  # a BACKUP holds no VIP
        vm.stub.PlugVip(_vip_request(vips=moved, vrrp_managed=True), timeout=30)
        assert _addresses(vm.netns, "vip0") == {"10.0.0.5/24"}
    finally:
        server.kill()
        server.wait()


def test_plug_network_configures_a_member_port(vm: Vm) -> None:
    request = agent_pb2.PlugNetworkRequest(
        mac_address=MEMBER_MAC,
        addresses=[agent_pb2.InterfaceAddress(address="10.1.0.5", prefix_length=24)],
        host_routes=[agent_pb2.HostRoute(destination="198.51.100.0/24", next_hop="10.1.0.1")],
        mtu=1400,
    )
    assert vm.stub.PlugNetwork(request, timeout=30).interface == "mem0"
    assert _addresses(vm.netns, "mem0") == {"10.1.0.5/24"}
    assert "198.51.100.0/24 via 10.1.0.1 dev mem0" in _ip("-n", vm.netns, "route", "show")
    server = _serve(vm.netns, "10.1.0.5", 8081)
    try:
        assert _reaches(vm, "10.1.0.5", 8081, "10.1.0.1")
    finally:
        server.kill()
        server.wait()


def test_refusals(vm: Vm) -> None:
    with pytest.raises(grpc.RpcError) as bad:
        vm.stub.PlugVip(_vip_request(mac_address="not-a-mac"), timeout=30)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as bad:
        vm.stub.PlugVip(_vip_request(vips=[]), timeout=30)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as missing:
        vm.stub.PlugNetwork(agent_pb2.PlugNetworkRequest(mac_address="fa:16:3e:00:00:99"), timeout=30)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND and "fa:16:3e:00:00:99" in missing.value.details()
