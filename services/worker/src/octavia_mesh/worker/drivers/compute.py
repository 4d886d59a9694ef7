"""Running amphorae. The local driver makes each amphora a process of this machine: our agent, which
supervises HAProxy. It is not the worker's child: a launcher forks it into a session of its own and exits, so
it is reparented to init (or the nearest subreaper) and outlives the worker, its pod's supervisor and
``octavia-mesh up`` like a VM outlives its controller. A restarted worker finds it again from its directory
(pid, start time, address): nothing is rebuilt."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from octavia_mesh.worker.drivers.certificates import CONTROLLER_IDENTITY, CertBundle

#: The agent keeps unix sockets under its state directory (``<dir>/run/<12 hex>.stats``), and HAProxy takes
#: socket paths of at most 97 bytes: the state directory must stay short.
MAX_STATE_DIR = 74


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    amphora_id: str
    identity: CertBundle  # the amphora's server certificate, key and the controller CA


@dataclass(frozen=True, slots=True)
class Instance:
    compute_id: str
    management_address: str  # host:port of the agent


class ComputeDriver(Protocol):
    """Creates, inspects and deletes amphora instances; every call is idempotent."""

    def pairs_refusal(self) -> str | None:
        """Why the driver cannot boot ACTIVE_STANDBY pairs (instances that share a link for VRRP and take a
        ``NamespacedInstanceSpec``) on this machine now, or None when it can. flows/vrrp.py and the provider
        capabilities the worker announces ask this instead of checking the driver's class."""
        ...

    async def create_instance(self, spec: InstanceSpec) -> Instance: ...

    async def get_instance(self, compute_id: str) -> Instance | None: ...

    async def delete_instance(self, compute_id: str) -> None: ...

    async def fence_instance(self, compute_id: str) -> None:
        """Kill the instance at once, whatever state it is in (dead, hung, stopped), with no drain, and delete
        it: what an automatic failover does to the amphora it replaces."""
        ...

    async def kill_stopped(self, compute_id: str) -> int:
        """SIGKILL the instance's processes that are stopped (SIGSTOP: they serve nothing, and a stopped HAProxy
        holds its share of the VIP's new connections); how many."""
        ...

    async def list_instances(self) -> list[str]:
        """Compute ids of every instance, running or left behind (``delete_instance`` removes each).

        Instances still being created may be missing: callers that look for orphans list first, then read
        the amphora rows (a row always exists before its instance).
        """
        ...


def _free_port(host: str) -> int:
    """A port for an agent to listen on, below the kernel's ephemeral range: a port the kernel hands out is free
    only until the agent binds it, and meanwhile any outgoing connection may take it as its local port (the
    agent then cannot start). Below that range only another listener can take it, which this check sees."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(max(1024, low - 20000), low)  # noqa: S311 - not a secret
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def processes_under(home: Path) -> list[int]:
    """Live processes whose command line names a file under ``home`` (HAProxy names its configuration there)."""
    needle = str(home).encode() + b"/"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle not in (proc / "cmdline").read_bytes():
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":  # a zombie holds nothing
                found.append(int(proc.name))
        except (OSError, IndexError):
            continue
    return found


async def kill_everything_under(home: Path, compute_id: str, timeout_s: float) -> None:
    """SIGKILL every process naming ``home`` (an amphora's HAProxy runs in a group of its own) until none is
    left; raise if any survives ``timeout_s`` (fencing must not report success over a live data plane)."""
    deadline = time.monotonic() + timeout_s
    while (victims := processes_under(home)) and time.monotonic() < deadline:
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        await asyncio.sleep(0.01)
    if victims:
        raise RuntimeError(f"amphora {compute_id}: processes {victims} survived SIGKILL")


async def stop_leftovers(home: Path, drain_s: float = 5.0) -> None:
    """Stop what an amphora without its agent left running: its HAProxy (own process group) may still hold the
    VIP. Soft-stop first (SIGUSR1: stop accepting, finish the requests in flight, while the replacement, bound
    to the same VIP with SO_REUSEPORT, takes the new connections), then kill what is left after ``drain_s``."""
    leftovers = processes_under(home)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + drain_s
    while leftovers and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        leftovers = processes_under(home)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


#: Runs between the worker and the agent: forks the agent into a new session, waits until it has exec'd (the
#: pipe is close-on-exec), records its pid and start time in its home and exits. The agent is then nobody's
#: child but init's: no signal to the worker (or PDEATHSIG of whatever started the worker) reaches it, and the
#: worker never reaps it. The launcher records, not the worker, so that a worker killed meanwhile leaves no
#: agent that nobody knows of: its successor finds it there.
_LAUNCHER = """
import os, sys
home, argv = sys.argv[1], sys.argv[2:]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.setsid()
    os.dup2(2, 1)
    try:
        os.execv(argv[0], argv)
    except OSError as exc:
        os.write(w, str(exc).encode())
    os._exit(127)
os.close(w)
failed = os.read(r, 4096)
if failed:
    sys.exit("cannot start the amphora agent: " + failed.decode())
with open(f"/proc/{pid}/stat") as stat:
    started = stat.read().rsplit(")", 1)[1].split()[19]
for name, value in (("agent.start", started), ("agent.pid", str(pid))):
    with open(f"{home}/{name}.tmp", "w") as out:
        out.write(value + "\\n")
    os.replace(f"{home}/{name}.tmp", f"{home}/{name}")
print(pid, flush=True)
"""


async def spawn_detached(argv: list[str], home: Path) -> int:
    """Start ``argv`` as a grandchild in its own session (see ``_LAUNCHER``); its pid, once it has exec'd."""
    with open(home / "agent.log", "ab") as log:
        launcher = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _LAUNCHER,
            str(home),
            *argv,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=home,
            start_new_session=True,
        )
        out, _ = await launcher.communicate()
    if launcher.returncode != 0:
        raise RuntimeError(f"cannot start the amphora agent (see {home / 'agent.log'})")
    return int(out)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class LocalComputeDriver:
    """Amphorae as local agent processes, each with a directory under ``base_dir``."""

    def pairs_refusal(self) -> str | None:
        return "the local compute driver runs plain processes (pairs need the namespace driver)"

    def __init__(
        self,
        base_dir: Path,
        host: str = "127.0.0.1",
        python: str = sys.executable,
        health_endpoints: tuple[str, ...] = (),
        heartbeat_interval_s: float = 1.0,
    ) -> None:
        self._health = (health_endpoints, heartbeat_interval_s)
        wanted = base_dir.resolve()
        self._base = wanted
        if len(str(wanted)) > MAX_STATE_DIR - 19:  # keep room for "/<12 hex>/state" below it
            digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:12]
            self._base = Path("/tmp") / f"octavia-mesh-amphorae-{digest}"
            # Whoever shuts the whole mesh down finds the amphorae through this pointer.
            wanted.parent.mkdir(parents=True, exist_ok=True)
            (wanted.parent / f"{wanted.name}.location").write_text(str(self._base))
        self._base.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._host = host
        self._python = python

    def _dir(self, amphora_id: str) -> Path:
        return self._base / amphora_id.replace("-", "")[:12]

    async def _place(self, spec: InstanceSpec, home: Path) -> str:
        """Prepare where a new instance runs; the host:port its agent listens on. (The namespace driver of
        ACTIVE_STANDBY amphorae builds a network namespace here.)"""
        return f"{self._host}:{_free_port(self._host)}"

    def _launcher(self, spec: InstanceSpec) -> list[str]:
        """The prefix of the agent's command line (``ip netns exec <namespace>`` for a namespaced instance)."""
        return []

    def _prepare_home(self, spec: InstanceSpec) -> Path:
        """A fresh home for the instance: its id, its certificate and key, the controller CA."""
        home = self._dir(spec.amphora_id)
        shutil.rmtree(home, ignore_errors=True)
        (home / "state").mkdir(parents=True, mode=0o700)
        _write(home / "amphora.id", spec.amphora_id.encode(), 0o600)  # list_instances names it by this
        _write(home / "agent.pem", spec.identity.certificate, 0o600)
        _write(home / "agent.key", spec.identity.private_key, 0o600)
        _write(home / "controller-ca.pem", spec.identity.ca_certificate, 0o600)
        return home

    def _agent_flags(self, spec: InstanceSpec, home: Path) -> list[str]:
        """The agent's flags but ``--listen`` (an agent process and an amphora host's unit take the same)."""
        flags = [
            "--amphora-id",
            spec.amphora_id,
            "--state-dir",
            str(home / "state"),
            "--server-cert",
            str(home / "agent.pem"),
            "--server-key",
            str(home / "agent.key"),
            "--client-ca",
            str(home / "controller-ca.pem"),
            "--controller-identities",
            CONTROLLER_IDENTITY,
        ]
        endpoints, interval = self._health
        if endpoints:
            # Heartbeats go out with the amphora's own certificate, to a health service verified by the same CA.
            flags += ["--health-endpoints", ",".join(endpoints), "--heartbeat-interval-s", str(interval)]
        return flags

    async def create_instance(self, spec: InstanceSpec) -> Instance:
        existing = await self.get_instance(spec.amphora_id)
        if existing is not None:
            return existing
        home = self._prepare_home(spec)
        address = await self._place(spec, home)
        argv = [
            *self._launcher(spec),
            self._python,
            "-m",
            "octavia_mesh.amphora_agent",
            "--listen",
            address,
            *self._agent_flags(spec, home),
        ]
        argv[0] = shutil.which(argv[0]) or argv[0]  # the launcher execs a path (``ip`` for a namespaced agent)
        (home / "agent.address").write_text(address)
        # The launcher records the agent's pid and its start time: the process is ours exactly while that pid
        # has it, whatever its command line reads (it reads empty for a moment during the exec).
        await spawn_detached(argv, home)
        return Instance(compute_id=spec.amphora_id, management_address=address)

    async def get_instance(self, compute_id: str) -> Instance | None:
        home = self._dir(compute_id)
        pid = self._pid(home)
        if pid is None:
            return None
        return Instance(compute_id=compute_id, management_address=(home / "agent.address").read_text().strip())

    def _pid(self, home: Path) -> int | None:
        try:
            pid = int((home / "agent.pid").read_text())
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if (home / "agent.start").exists():  # the start time identifies it, whatever its command line reads
                started = (home / "agent.start").read_text().strip()
                return pid if fields[0] != "Z" and fields[19] == started else None
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()  # an instance created before start times were kept
        except (OSError, ValueError, IndexError):
            return None
        return pid if str(home).encode() in cmdline and fields[0] != "Z" else None

    async def delete_instance(self, compute_id: str) -> None:
        home = self._dir(compute_id)
        pid = self._pid(home)
        if pid is not None and any(p != pid for p in processes_under(home)):
            # HAProxy still serves (a failover retiring a live amphora): the agent's own shutdown would hard-stop
            # it, cutting requests in flight, so the agent goes first and HAProxy drains below.
            os.killpg(pid, signal.SIGKILL)
        elif pid is not None:
            os.killpg(pid, signal.SIGTERM)  # the agent stops HAProxy and reaps it
            deadline = time.monotonic() + 10
            while self._pid(home) is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # not time.sleep: the worker's other flows go on meanwhile
            if self._pid(home) is not None:
                os.killpg(pid, signal.SIGKILL)
        await stop_leftovers(home)
        shutil.rmtree(home, ignore_errors=True)

    async def fence_instance(self, compute_id: str, timeout_s: float = 5.0) -> None:
        # SIGKILL, not SIGTERM: a stopped (SIGSTOP) or hung process never acts on a catchable signal, and a
        # stopped HAProxy still holds its SO_REUSEPORT socket on the VIP, where the kernel keeps queueing a
        # share of the new connections. The agent's process group first (anything it forked), then every
        # process naming the amphora's directory (HAProxy runs in a group of its own), until none is left.
        home = self._dir(compute_id)
        pid = self._pid(home)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        await kill_everything_under(home, compute_id, timeout_s)
        shutil.rmtree(home, ignore_errors=True)

    async def kill_stopped(self, compute_id: str) -> int:
        killed = 0
        for pid in processes_under(self._dir(compute_id)):
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            except (OSError, IndexError):
                continue
        return killed

    #: A directory younger than this with no ``amphora.id`` yet may be an instance being created: not listed.
    CREATING_GRACE_S = 60.0

    async def list_instances(self) -> list[str]:
        out = []
        for home in sorted(self._base.iterdir()) if self._base.is_dir() else []:
            if not home.is_dir():
                continue
            try:
                out.append((home / "amphora.id").read_text().strip())
                continue
            except OSError:
                pass
            try:  # the process or the directory may go away while we look
                pid = self._pid(home)
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if pid is not None else []
                if b"--amphora-id" in argv[:-1]:  # an instance started before amphora.id was written
                    out.append(argv[argv.index(b"--amphora-id") + 1].decode())
                elif time.time() - home.stat().st_mtime > self.CREATING_GRACE_S:
                    out.append(home.name)  # a leftover: delete_instance(<its name>) removes it
            except OSError:
                continue
        return out

    def running(self) -> list[int]:
        """Pids of every amphora agent this driver started that still runs (for shutdown)."""
        return [pid for home in self._base.iterdir() if (pid := self._pid(home)) is not None]


class NoopComputeDriver:
    """Pretends to run amphorae (Octavia's no-op compute driver)."""

    def pairs_refusal(self) -> str | None:
        return "the noop compute driver boots nothing"

    async def create_instance(self, spec: InstanceSpec) -> Instance:
        return Instance(compute_id=spec.amphora_id, management_address="192.0.2.1:9443")

    async def get_instance(self, compute_id: str) -> Instance | None:
        return Instance(compute_id=compute_id, management_address="192.0.2.1:9443")

    async def delete_instance(self, compute_id: str) -> None:
        return None

    async def fence_instance(self, compute_id: str) -> None:
        return None

    async def kill_stopped(self, compute_id: str) -> int:
        return 0

    async def list_instances(self) -> list[str]:
        return []
