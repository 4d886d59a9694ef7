"""Fake Nova's servers as network namespaces (root only), for the tests that need what a VM has and a host
process lacks: network interfaces that appear when Nova attaches a port.

* **A server** is a namespace ``fv<run>-<n>`` running the image's agent (``ip netns exec``), reached by the
  worker over a veth pair: host end ``fvh<run><n>`` 169.254.252.(4n+1)/30, the VM's ``eth0`` .(4n+2)/30 (its
  management address, what Nova reports).
* **A Neutron network** is a namespace ``fvn<run>-<k>`` holding a bridge ``br0``, which also plays the
  clients: it gets the last address of each of the network's subnets.
* **Attaching a port** (Nova's ``os-interface``) adds a veth pair: one end in the VM with the port's MAC and no
  configuration (``eth1``, ``eth2``, ...: the agent finds it by MAC), the other on the network's bridge.
  Detaching removes it; deleting a server removes its namespace with every interface in it.

Nothing but the management veths touches the host's namespace, and those are removed with their servers.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

MGMT = ipaddress.ip_network("169.254.252.0/24")
_LOCK = Path("/tmp/octavia-mesh-fake-vms.lock")


def _ip(*args: str, check: bool = True) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@contextmanager
def _machine_lock() -> Iterator[None]:
    with open(_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class Vm:
    netns: str
    host_end: str
    address: str
    process: subprocess.Popen[bytes] | None = None
    nics: dict[str, str] = field(default_factory=dict)  # port id -> the network's end of its veth


@dataclass
class NetnsVms:
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    vms: dict[str, Vm] = field(default_factory=dict)
    networks: dict[str, str] = field(default_factory=dict)  # network id -> namespace
    _count: int = 0

    def allocate(self, server_id: str) -> str:
        """Make the server's namespace and management link; its management address."""
        with _machine_lock():
            used = {
                ipaddress.ip_interface(a).network
                for a in _ip("-4", "-o", "addr").split()
                if a.startswith("169.254.252.")
            }
            free = next(n for n in MGMT.subnets(new_prefix=30) if n not in used)
            self._count += 1
            netns, host_end = f"fv{self.run}-{self._count}", f"fvh{self.run}{self._count}"
            _ip("netns", "add", netns)
            _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", netns)
            host, vm = list(free.hosts())
            _ip("addr", "add", f"{host}/30", "dev", host_end)  # claims the /30 for other runs as well
            _ip("link", "set", host_end, "up")
        _ip("-n", netns, "addr", "add", f"{vm}/30", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        self.vms[server_id] = Vm(netns, host_end, str(vm))
        return str(vm)

    def boot(self, server_id: str, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        vm = self.vms[server_id]
        with open(log, "ab") as out:
            vm.process = subprocess.Popen(
                ["ip", "netns", "exec", vm.netns, *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return vm.process

    def network(self, network_id: str, cidrs: list[str]) -> str:
        """The namespace of a Neutron network (made on first use): a bridge with the last address of each subnet."""
        if network_id not in self.networks:
            netns = f"fvn{self.run}-{len(self.networks) + 1}"
            _ip("netns", "add", netns)
            _ip("-n", netns, "link", "add", "br0", "type", "bridge")
            _ip("-n", netns, "link", "set", "br0", "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            for cidr in cidrs:
                subnet = ipaddress.ip_network(cidr)
                last = subnet.broadcast_address - 1 if subnet.version == 4 else subnet[-2]
                _ip("-n", netns, "addr", "add", f"{last}/{subnet.prefixlen}", "dev", "br0")
            self.networks[network_id] = netns
        return self.networks[network_id]

    def client_address(self, cidr: str) -> str:
        subnet = ipaddress.ip_network(cidr)
        return str(subnet.broadcast_address - 1)

    def attach(self, server_id: str, port_id: str, mac: str, network_id: str, cidrs: list[str]) -> None:
        vm = self.vms.get(server_id)
        if vm is None:
            return  # a server of the tests that runs nothing
        netns = self.network(network_id, cidrs)
        far, near = f"v{port_id.replace('-', '')[:12]}", f"eth{len(vm.nics) + 1}"
        _ip("-n", netns, "link", "add", far, "type", "veth", "peer", "name", near, "netns", vm.netns)
        _ip("-n", vm.netns, "link", "set", near, "address", mac)
        _ip("-n", netns, "link", "set", far, "master", "br0", "up")
        vm.nics[port_id] = far

    def detach(self, server_id: str, port_id: str, network_id: str) -> None:
        vm = self.vms.get(server_id)
        far = vm.nics.pop(port_id, None) if vm is not None else None
        if far is not None and network_id in self.networks:
            _ip("-n", self.networks[network_id], "link", "del", far, check=False)

    def kill(self, server_id: str) -> None:
        vm = self.vms.pop(server_id, None)
        if vm is None:
            return
        if vm.process is not None and vm.process.poll() is None:
            os.killpg(vm.process.pid, signal.SIGKILL)  # switched off: agent, HAProxy, keepalived
            vm.process.wait()
        for pid in _ip("netns", "pids", vm.netns, check=False).split():  # anything else left in it
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        _ip("netns", "del", vm.netns, check=False)
        _ip("link", "del", vm.host_end, check=False)

    def python_in(self, network_id: str, code: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run ``code`` as a client on the network."""
        return subprocess.run(
            ["ip", "netns", "exec", self.networks[network_id], sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def addresses(self, server_id: str) -> str:
        return _ip("-n", self.vms[server_id].netns, "-o", "addr", "show")

    def stop_all(self) -> None:
        for server_id in list(self.vms):
            self.kill(server_id)
        for netns in self.networks.values():
            _ip("netns", "del", netns, check=False)
        self.networks.clear()
