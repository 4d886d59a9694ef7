"""Starting, watching and stopping the mesh's child processes."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the process that started it dies, even by SIGKILL.

    The services run in sessions of their own (so a Ctrl-C reaches them only through us, in order); without
    this, a supervisor killed outright would leave them running with nothing to stop them.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class LaunchError(Exception):
    """Something the operator must fix before the mesh can start (a taken port, a missing binary)."""


def find_binary(name: str, hint: str) -> str:
    """The ``name`` binary of this environment (installed by a pip package), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise LaunchError(f"{name} is not installed: {hint}")
    return found


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def require_free(host: str, port: int, what: str) -> None:
    if not port_is_free(host, port):
        raise LaunchError(
            f"port {port} on {host} is taken, so {what} cannot listen there; "
            f"stop whatever uses it or choose another port"
        )


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: Child | None = None) -> None:
    """Poll ``check`` until it holds, failing early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.process.poll() is not None:
            raise LaunchError(
                f"{proc.name} exited with code {proc.process.returncode} before {what}; see {proc.log_path}"
            )
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise LaunchError(f"timed out after {timeout:.0f}s waiting for {what}")


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection((host, port), timeout=0.5):
            return True

    return check


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Supervisor:
    """Owns the child processes; stops them in reverse start order."""

    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Child:
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its whole life
        merged = {**os.environ, **(env or {})}
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=merged,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509 - only prctl, no locks
        )
        log.close()
        child = Child(name, process, log_path, list(argv), dict(env or {}))
        self.children.append(child)
        return child

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL a child, as a crash would end it."""
        child = self.child(name)
        child.process.kill()
        child.process.wait()

    def restart(self, name: str) -> Child:
        """Start a child again with its original command and environment (after a crash or a kill)."""
        old = self.child(name)
        if old.process.poll() is None:
            old.process.terminate()
            old.process.wait()
        position = self.children.index(old)
        new = self.start(name, old.argv, old.env)
        self.children.pop()  # keep the start order, which stop_all reverses
        self.children[position] = new
        return new

    def first_exited(self) -> Child | None:
        return next((c for c in self.children if c.process.poll() is not None), None)

    def stop_all(self, timeout: float = 10.0) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while child.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait()
