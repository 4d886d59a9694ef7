"""Amphorae of ACTIVE_STANDBY load balancers: each in a network namespace of its own, the pair on a bridge.

On one machine, "two amphorae and a VIP that moves between them" takes network namespaces and VRRP (measured
in ``dataplane.md`` §5), and both need root. Per load balancer::

    host                                                      amphora namespace (one per amphora)
    bridge omb<lb>  169.254.x.1/28 ───── veth omv<amphora> ── eth0 169.254.x.n/28   (agent :9443, keepalived,
      route_localnet=1, fixed MAC, no bridge netfilter                              HAProxy bound to the VIP)
    route <VIP>/32 dev omb<lb> (table local)                  lo down; 127.0.0.0/8 via 169.254.x.1

* **The VIP** stays the load balancer's address on the local VIP subnet (127.226.0.0/16). A host route in the
  ``local`` table, more specific than the 127.0.0.0/8 of ``lo``, sends it over the bridge, and the namespace
  whose keepalived is MASTER answers ARP for it; a new master's gratuitous ARPs move the host's neighbour
  entry. ``route_localnet`` on the bridge and on each ``eth0`` lets 127/8 addresses cross them. If the bridge
  goes, its route goes with it and the address is plain loopback again: nothing ever leaves the machine.
* **Members on the host's loopback** stay reachable: each namespace keeps its ``lo`` down (so 127.0.0.0/8 is
  not local there) and routes 127.0.0.0/8 to the bridge's address, i.e. to the host, which delivers it to
  its own loopback (members see the amphora's link address as the client). The heartbeats of the agent
  reach the health service on 127.0.0.1 the same way. The namespaces have no default route.
* **Management**: the worker calls the agent at its link address (mutual TLS as for any amphora).
* **Names** derive from the ids (``omb`` + 12 hex digits of the load balancer id, ``omv`` + 12 of the
  amphora id: 15 characters, the kernel's limit; namespace ``om-amp-`` + 12), so every step can be retried.
  Each load balancer gets its own /28 of ``link_cidr`` (the first one free on this machine from a slot the
  id hashes to, chosen under a machine-wide lock, so two meshes on one host do not collide).

The agent is started with ``ip netns exec``; its home directory is laid out as the local driver's (so
``octavia-mesh up`` stops it like any amphora), plus ``netns.json``, which names what to remove.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from octavia_mesh.worker.drivers.compute import InstanceSpec, LocalComputeDriver

logger = logging.getLogger(__name__)

#: The agent's port on its link address (Octavia's agent port).
AGENT_PORT = 9443
#: The interface of the amphora inside its namespace (what keepalived's ``interface`` names).
VRRP_INTERFACE = "eth0"
DEFAULT_LINK_CIDR = "169.254.64.0/18"
_LINK_PREFIX = 28
#: Never carve a link subnet over the cloud metadata address.
_RESERVED = ipaddress.ip_network("169.254.169.0/24")
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def _which_sbin(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *_SBIN]))


def missing_for_active_standby(
    euid: int | None = None,
    find: Callable[[str], str | None] = _which_sbin,
    netns: bool | None = None,
) -> list[str]:
    """What this machine lacks to run ACTIVE_STANDBY amphorae (arguments default to the real machine)."""
    missing = []
    if (os.geteuid() if euid is None else euid) != 0:
        missing.append("root privileges (network namespaces, veth links, VRRP)")
    if find("ip") is None:
        missing.append("the ip command (package iproute2)")
    if find("keepalived") is None:
        missing.append("keepalived (Debian/Ubuntu package keepalived: apt-get install keepalived)")
    if not (os.path.exists("/proc/self/ns/net") if netns is None else netns):
        missing.append("network namespace support in the kernel")
    return missing


class NamespaceError(RuntimeError):
    """The machine cannot build namespaced amphorae (not root, no ``ip``) or a step failed."""


@dataclass(frozen=True, slots=True)
class NamespacedInstanceSpec(InstanceSpec):
    """An amphora of an ACTIVE_STANDBY load balancer: it joins its load balancer's bridge."""

    load_balancer_id: str = ""
    vip_address: str = ""
    #: Link addresses the load balancer's other amphorae were given, dead ones included (whose namespaces may
    #: be gone after a restart, but whose rows still name them as VRRP peers): never handed out again.
    reserved: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Names:
    """The kernel objects of one amphora and its load balancer."""

    netns: str
    veth: str
    bridge: str

    @classmethod
    def of(cls, amphora_id: str, load_balancer_id: str) -> Names:
        return cls(f"om-amp-{_hex(amphora_id)}", f"omv{_hex(amphora_id)}", f"omb{_hex(load_balancer_id)}")


def _hex(ident: str) -> str:
    return ident.replace("-", "")[:12].lower()


def find_ip() -> str | None:
    return shutil.which("ip", path=os.pathsep.join([os.environ.get("PATH", ""), *_SBIN]))


def unsupported_reason() -> str | None:
    """Why this process cannot build namespaced amphorae, or None when it can."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root privileges")
    if find_ip() is None:
        missing.append("the ip command (iproute2)")
    if not Path("/proc/self/ns/net").exists():
        missing.append("network namespace support")
    return ", ".join(missing) or None


def _run(*argv: str, check: bool = True) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise NamespaceError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


def _exists(interface: str) -> bool:
    return Path("/sys/class/net", interface).exists()


def _sysctl(path: str, value: str) -> None:
    Path("/proc/sys", path).write_text(value)


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Serializes link-subnet choices and bridge removals of every worker on this machine."""
    directory = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
    fd = os.open(directory / "octavia-mesh-namespaces.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _bridge_network(ip: str, bridge: str) -> ipaddress.IPv4Interface | None:
    match = re.search(r"inet (\S+)", _run(ip, "-4", "-o", "addr", "show", "dev", bridge, check=False))
    return ipaddress.IPv4Interface(match.group(1)) if match else None


def _host_networks(ip: str) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Interface(m).network for m in re.findall(r"inet (\S+)", _run(ip, "-4", "-o", "addr", "show"))]


def _mac(load_balancer_id: str) -> str:
    # A fixed (locally administered) MAC: a bridge otherwise takes its lowest port's, which changes when an
    # amphora is replaced and would leave the namespaces with a stale neighbour entry for their gateway.
    digest = hashlib.sha256(load_balancer_id.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


class NamespaceComputeDriver(LocalComputeDriver):
    """The local driver, plus amphorae in network namespaces for :class:`NamespacedInstanceSpec` (the worker
    asks for those for ACTIVE_STANDBY load balancers; SINGLE ones keep plain local processes)."""

    def pairs_refusal(self) -> str | None:
        # Checked each time (a few stat calls): installing keepalived counts.
        missing = missing_for_active_standby()
        return f"it needs {'; '.join(missing)} on the machine that runs the amphorae" if missing else None

    def __init__(self, base_dir: Path, *, link_cidr: str = DEFAULT_LINK_CIDR, **kwargs: object) -> None:
        super().__init__(base_dir, **kwargs)  # type: ignore[arg-type]
        self._link = ipaddress.IPv4Network(link_cidr)
        if self._link.prefixlen > _LINK_PREFIX - 1:
            raise ValueError(f"link_cidr {link_cidr} must hold at least two /{_LINK_PREFIX} subnets")

    # -- LocalComputeDriver hooks -------------------------------------------------------------------

    async def _place(self, spec: InstanceSpec, home: Path) -> str:
        if not isinstance(spec, NamespacedInstanceSpec):
            return await super()._place(spec, home)
        address = await asyncio.to_thread(self._plug, spec, home)
        return f"{address}:{AGENT_PORT}"

    def _launcher(self, spec: InstanceSpec) -> list[str]:
        if not isinstance(spec, NamespacedInstanceSpec):
            return super()._launcher(spec)
        return [self._ip(), "netns", "exec", Names.of(spec.amphora_id, spec.load_balancer_id).netns]

    async def delete_instance(self, compute_id: str) -> None:
        home = self._dir(compute_id)
        record = self._record(home)
        if record is not None:
            await self._release_vip(home)
        await super().delete_instance(compute_id)
        if record is not None:
            await asyncio.to_thread(teardown, record)

    async def fence_instance(self, compute_id: str, timeout_s: float = 5.0) -> None:
        home = self._dir(compute_id)
        record = self._record(home)
        await super().fence_instance(compute_id, timeout_s)
        if record is not None:
            await asyncio.to_thread(teardown, record)

    async def _release_vip(self, home: Path, timeout_s: float = 10.0) -> None:
        """Stop the amphora's agent the graceful way: it stops keepalived first (a master advertises priority 0
        and its peer takes the VIP within the skew time, ~60 ms at 0.1 s adverts), then HAProxy. Killing it
        would leave keepalived holding the VIP of a stopped HAProxy until killed in turn, and the peer would
        wait for three missed advertisements. Draining the old HAProxy gains nothing here: once the VIP has
        moved, the host sends its connections to the peer anyway."""
        loop = asyncio.get_running_loop()
        pid = self._pid(home)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = loop.time() + timeout_s
            while self._pid(home) is not None and loop.time() < deadline:
                await asyncio.sleep(0.02)
        # A keepalived whose agent died before it: stopped the same graceful way.
        for pid in _keepalived_pids(home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = loop.time() + 3.0
            while pid in _keepalived_pids(home) and loop.time() < deadline:
                await asyncio.sleep(0.02)

    # -- internals ----------------------------------------------------------------------------------

    @staticmethod
    def _ip() -> str:
        ip = find_ip()
        if ip is None:
            raise NamespaceError("ACTIVE_STANDBY amphorae need the ip command (iproute2)")
        return ip

    @staticmethod
    def _record(home: Path) -> dict[str, str] | None:
        try:
            return dict(json.loads((home / "netns.json").read_text()))
        except (OSError, ValueError):
            return None

    def _plug(self, spec: NamespacedInstanceSpec, home: Path) -> str:
        """Build the amphora's namespace on its load balancer's bridge; the amphora's link address."""
        reason = unsupported_reason()
        if reason is not None:
            raise NamespaceError(f"ACTIVE_STANDBY amphorae need {reason}")
        ip = self._ip()
        names = Names.of(spec.amphora_id, spec.load_balancer_id)
        record = {"netns": names.netns, "veth": names.veth, "bridge": names.bridge}
        # Written first: whatever the next steps leave behind, delete_instance knows what to remove.
        (home / "netns.json").write_text(json.dumps(record))
        with _machine_lock():
            gateway = self._ensure_bridge(ip, names.bridge, spec.load_balancer_id)
            _route_vip(ip, names.bridge, spec.vip_address, gateway)
            _remove_amphora(ip, names.netns, names.veth)  # a half-built earlier attempt
            address = self._free_address(ip, names.bridge, gateway, spec.reserved)
            _run(ip, "netns", "add", names.netns)
            _run(ip, "link", "add", names.veth, "type", "veth", "peer", "name", VRRP_INTERFACE, "netns", names.netns)
            _sysctl(f"net/ipv6/conf/{names.veth}/disable_ipv6", "1")
            _run(ip, "link", "set", names.veth, "master", names.bridge, "up")
        eth = VRRP_INTERFACE
        _run(
            ip,
            "netns",
            "exec",
            names.netns,
            "sysctl",
            "-qw",
            f"net.ipv4.conf.{eth}.route_localnet=1",  # the VIP and members are 127/8 addresses
            "net.ipv4.ip_nonlocal_bind=1",  # the BACKUP's HAProxy binds the VIP it does not hold yet
            "net.ipv6.conf.all.disable_ipv6=1",
        )
        _run(ip, "-n", names.netns, "addr", "add", f"{address}/{gateway.network.prefixlen}", "dev", eth)
        _run(ip, "-n", names.netns, "link", "set", eth, "up")
        _run(ip, "-n", names.netns, "route", "add", "127.0.0.0/8", "via", str(gateway.ip))
        logger.info("amphora %s: namespace %s, %s on bridge %s", spec.amphora_id, names.netns, address, names.bridge)
        return str(address)

    def _ensure_bridge(self, ip: str, bridge: str, load_balancer_id: str) -> ipaddress.IPv4Interface:
        if _exists(bridge):
            current = _bridge_network(ip, bridge)
            if current is not None:
                return current
            _run(ip, "link", "del", bridge, check=False)
        gateway = self._free_subnet(ip, load_balancer_id)
        _run(
            ip, "link", "add", "name", bridge, "address", _mac(load_balancer_id), "type", "bridge",
            # Bridged VRRP and VIP traffic must not meet the host's iptables FORWARD policy (br_netfilter).
            "nf_call_iptables", "0", "nf_call_ip6tables", "0", "nf_call_arptables", "0",
        )  # fmt: skip
        _sysctl(f"net/ipv4/conf/{bridge}/route_localnet", "1")
        _sysctl(f"net/ipv6/conf/{bridge}/disable_ipv6", "1")
        _run(ip, "addr", "add", str(gateway), "dev", bridge)
        _run(ip, "link", "set", bridge, "up")
        return gateway

    def _free_subnet(self, ip: str, load_balancer_id: str) -> ipaddress.IPv4Interface:
        blocks = [b for b in self._link.subnets(new_prefix=_LINK_PREFIX) if not b.overlaps(_RESERVED)]
        used = _host_networks(ip)
        start = int(hashlib.sha256(load_balancer_id.encode()).hexdigest(), 16) % len(blocks)
        for i in range(len(blocks)):
            block = blocks[(start + i) % len(blocks)]
            if not any(block.overlaps(n) for n in used):
                return ipaddress.IPv4Interface(f"{block[1]}/{_LINK_PREFIX}")
        raise NamespaceError(f"no free /{_LINK_PREFIX} left in {self._link} for another ACTIVE_STANDBY bridge")

    @staticmethod
    def _free_address(
        ip: str, bridge: str, gateway: ipaddress.IPv4Interface, reserved: tuple[str, ...]
    ) -> ipaddress.IPv4Address:
        taken = {gateway.ip, *(ipaddress.IPv4Address(r) for r in reserved)}
        for port in sorted(os.listdir(f"/sys/class/net/{bridge}/brif")):
            if port.startswith("omv"):
                out = _run(ip, "-n", f"om-amp-{port[3:]}", "-4", "-o", "addr", "show", check=False)
                taken.update(ipaddress.IPv4Interface(m).ip for m in re.findall(r"inet (\S+)", out))
        for candidate in gateway.network.hosts():
            if candidate not in taken:
                return candidate
        raise NamespaceError(f"no free address left on bridge {bridge}")


def _keepalived_pids(home: Path) -> list[int]:
    """The live keepalived (parent) of the amphora in ``home``, per its pid file."""
    try:
        pid = int((home / "state" / "vrrp" / "keepalived.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return []
    return [pid] if str(home).encode() in cmdline and state != "Z" else []


def _route_vip(ip: str, bridge: str, vip: str, gateway: ipaddress.IPv4Interface) -> None:
    # In the `local` table: there 127.0.0.0/8 of `lo` would win over any route of the main table.
    _run(ip, "route", "replace", f"{vip}/32", "dev", bridge, "table", "local", "scope", "link", "src", str(gateway.ip))


def _remove_amphora(ip: str, netns: str, veth: str) -> None:
    if Path("/run/netns", netns).exists():
        for pid in _run(ip, "netns", "pids", netns, check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    if _exists(veth):
        _run(ip, "link", "del", veth, check=False)  # both ends
    if Path("/run/netns", netns).exists():
        _run(ip, "netns", "del", netns, check=False)


def teardown(record: dict[str, str]) -> None:
    """Remove an amphora's namespace and veth, and its load balancer's bridge (with the VIP route) once no
    amphora is left on it. Processes still in the namespace are killed: its agent is gone by then."""
    ip = find_ip()
    if ip is None:
        return
    with _machine_lock():
        _remove_amphora(ip, record["netns"], record["veth"])
        bridge = record["bridge"]
        if _exists(bridge) and not os.listdir(f"/sys/class/net/{bridge}/brif"):
            _run(ip, "link", "del", bridge, check=False)


def remove_all(directory: Path) -> None:
    """Remove what the namespaced amphorae under ``directory`` (a driver's base) left, after their agents were
    stopped (``octavia-mesh up`` stopping)."""
    for path in directory.glob("*/netns.json"):
        try:
            teardown(dict(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError, NamespaceError) as exc:
            logger.warning("could not remove %s: %s", path.parent, exc)
