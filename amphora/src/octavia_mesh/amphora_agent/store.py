"""Where a load balancer's files live under the agent's state directory, and how they are written.

::

    <state>/lb/<lb_id>/haproxy.cfg          the active configuration (what HAProxy runs)
    <state>/lb/<lb_id>/haproxy.cfg.staged   put and validated, not yet activated
    <state>/lb/<lb_id>/agent.cfg            the agent's own `global` fragment, loaded first
    <state>/lb/<lb_id>/certs/<name>         PEM files, mode 0600
    <state>/lb/<lb_id>/running              present while HAProxy is meant to run (survives agent restarts)
    <state>/lb/<lb_id>/haproxy.pid          the master's pid, to find an HAProxy a crashed agent left behind
    <state>/run/<key>.master                HAProxy's master CLI
    <state>/run/<key>.stats                 HAProxy's stats socket (level admin)

A unix-socket path may not exceed 107 bytes, so sockets sit in one directory
and are named by ``<key>``, the first 12 hex digits of the SHA-256 of the load
balancer id, rather than by the id itself (up to 64 characters).

Every file is written to a temporary name and renamed, so a crash never leaves
a half-written configuration for HAProxy to load.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class InvalidName(ValueError):
    """An identifier or file name the agent refuses (it would escape the state directory)."""


def check_id(value: str, what: str = "load_balancer_id") -> str:
    if not _ID.fullmatch(value):
        raise InvalidName(f"{what} must be 1-64 characters of [A-Za-z0-9_.-] starting with a letter or digit")
    return value


def check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise InvalidName("name must be 1-128 characters of [A-Za-z0-9_.-] starting with a letter or digit")
    return value


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def socket_key(lb_id: str) -> str:
    """The short name of a load balancer's sockets (see the module docstring)."""
    return sha256(lb_id.encode())[:12]


#: The longest socket path below ``run/``, relative to the state directory.
LONGEST_SOCKET = f"run/{'0' * 12}.master"


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` in one rename; the file never exists with a wider ``mode``."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT honours the umask, and an earlier tmp file may have another mode
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class LoadBalancerFiles:
    """The paths of one load balancer's files."""

    lb_id: str
    directory: Path
    run_dir: Path

    @property
    def config(self) -> Path:
        return self.directory / "haproxy.cfg"

    @property
    def staged(self) -> Path:
        return self.directory / "haproxy.cfg.staged"

    @property
    def fragment(self) -> Path:
        return self.directory / "agent.cfg"

    @property
    def certs(self) -> Path:
        return self.directory / "certs"

    @property
    def desired(self) -> Path:
        return self.directory / "running"

    @property
    def pidfile(self) -> Path:
        return self.directory / "haproxy.pid"

    @property
    def socket_key(self) -> str:
        return socket_key(self.lb_id)

    @property
    def master_socket(self) -> Path:
        return self.run_dir / f"{self.socket_key}.master"

    @property
    def stats_socket(self) -> Path:
        return self.run_dir / f"{self.socket_key}.stats"

    def exists(self) -> bool:
        return self.directory.is_dir()

    def ensure(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def certificate(self, name: str) -> Path:
        return self.certs / check_name(name)

    def put_certificate(self, name: str, pem: bytes) -> Path:
        path = self.certificate(name)
        self.ensure()
        self.certs.mkdir(mode=0o700, exist_ok=True)
        write_atomic(path, pem, 0o600)
        return path

    def active_sha256(self) -> str:
        try:
            return sha256(self.config.read_bytes())
        except FileNotFoundError:
            return ""

    @property
    def exporter_socket(self) -> Path:
        """HAProxy's native Prometheus exporter, for a PROMETHEUS listener (see :mod:`.prometheus`)."""
        return self.run_dir / f"{self.socket_key}.prom"

    def remove_sockets(self) -> None:
        remove(self.master_socket)
        remove(self.stats_socket)
        remove(self.exporter_socket)

    def remove_all(self) -> None:
        self.remove_sockets()
        shutil.rmtree(self.directory, ignore_errors=True)


class Store:
    """The state directory: one :class:`LoadBalancerFiles` per load balancer."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lb_root = root / "lb"
        self.run_dir = root / "run"
        for directory in (root, self.lb_root, self.run_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def files(self, lb_id: str) -> LoadBalancerFiles:
        return LoadBalancerFiles(check_id(lb_id), self.lb_root / lb_id, self.run_dir)

    def load_balancer_ids(self) -> list[str]:
        return sorted(p.name for p in self.lb_root.iterdir() if p.is_dir() and _ID.fullmatch(p.name))
