"""Running amphorae. The local driver makes each amphora a process of this machine: our agent, which
supervises HAProxy. It runs in its own session, so it outlives a worker restart like a VM would."""

from __future__ import annotations

import hashlib
import os
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

    async def create_instance(self, spec: InstanceSpec) -> Instance: ...

    async def get_instance(self, compute_id: str) -> Instance | None: ...

    async def delete_instance(self, compute_id: str) -> None: ...


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class LocalComputeDriver:
    """Amphorae as local agent processes, each with a directory under ``base_dir``."""

    def __init__(self, base_dir: Path, host: str = "127.0.0.1", python: str = sys.executable) -> None:
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

    async def create_instance(self, spec: InstanceSpec) -> Instance:
        existing = await self.get_instance(spec.amphora_id)
        if existing is not None:
            return existing
        home = self._dir(spec.amphora_id)
        shutil.rmtree(home, ignore_errors=True)
        (home / "state").mkdir(parents=True, mode=0o700)
        _write(home / "agent.pem", spec.identity.certificate, 0o600)
        _write(home / "agent.key", spec.identity.private_key, 0o600)
        _write(home / "controller-ca.pem", spec.identity.ca_certificate, 0o600)
        address = f"{self._host}:{_free_port(self._host)}"
        argv = [
            self._python,
            "-m",
            "octavia_mesh.amphora_agent",
            "--amphora-id",
            spec.amphora_id,
            "--listen",
            address,
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
        with open(home / "agent.log", "ab") as log:
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=home
            )
        (home / "agent.pid").write_text(f"{process.pid}\n")
        (home / "agent.address").write_text(address)
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
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError):
            return None
        return pid if str(home).encode() in cmdline and state != "Z" else None

    async def delete_instance(self, compute_id: str) -> None:
        home = self._dir(compute_id)
        pid = self._pid(home)
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)  # the agent stops HAProxy and reaps it
            deadline = time.monotonic() + 10
            while self._pid(home) is not None and time.monotonic() < deadline:
                time.sleep(0.02)
            if self._pid(home) is not None:
                os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)

    def running(self) -> list[int]:
        """Pids of every amphora agent this driver started that still runs (for shutdown)."""
        return [pid for home in self._base.iterdir() if (pid := self._pid(home)) is not None]


class NoopComputeDriver:
    """Pretends to run amphorae (Octavia's no-op compute driver)."""

    async def create_instance(self, spec: InstanceSpec) -> Instance:
        return Instance(compute_id=spec.amphora_id, management_address="192.0.2.1:9443")

    async def get_instance(self, compute_id: str) -> Instance | None:
        return Instance(compute_id=compute_id, management_address="192.0.2.1:9443")

    async def delete_instance(self, compute_id: str) -> None:
        return None
