"""Starting, watching, restarting and stopping the mesh's child processes, and choosing their ports."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


def _die_with_parent_prefix() -> list[str]:
    """What to run a child through so that it gets SIGTERM when the process that started it dies, even by SIGKILL:
    ``setpriv --pdeathsig`` (util-linux), which sets it and execs the child.

    The services run in sessions of their own (so a Ctrl-C reaches them only through us, in order); without
    this, a supervisor killed outright would leave them running with nothing to stop them. Not a ``preexec_fn``
    calling prctl(2): that makes Python fork instead of vfork, and a fork runs gRPC's fork handlers in the
    child, which restart its poller thread there; closing the inherited descriptors then aborted the child
    ("Epoll1Poller ... epoll_wait error: Bad file descriptor", a service exiting with -6 before exec, seen
    in a test run). With vfork no handler runs in the child.
    """
    if sys.platform != "linux":
        return []
    setpriv = shutil.which("setpriv", path=f"{os.environ.get('PATH', '')}:/usr/bin:/bin")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


_DIE_WITH_PARENT = _die_with_parent_prefix()


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


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: Ports that one of our processes on this host handed out lately, a marker file each: two meshes starting at
#: once (a test run starts dozens side by side) must not both pick a port that is free until the first binds it.
PORT_CLAIMS = Path(tempfile.gettempdir()) / "octavia-mesh-port-claims"
#: How long a claim keeps other processes off a port: longer than any service takes to bind it.
PORT_CLAIM_TTL_S = 120.0


def claim_port(port: int, refresh: bool = False) -> bool:
    """Claim ``port`` for this host's next few minutes; False if another process claimed it lately. ``refresh``
    renews a claim that is ours (a restarted mesh binds its old ports again). Where the claims directory cannot
    be written (another user's), no claim is kept and every port counts as unclaimed."""
    marker = PORT_CLAIMS / str(port)
    for _ in range(2):
        try:
            PORT_CLAIMS.mkdir(exist_ok=True)
            if refresh:
                marker.touch()
                return True
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return True
        except FileExistsError:
            try:
                if time.time() - marker.stat().st_mtime < PORT_CLAIM_TTL_S:
                    return False
                marker.unlink()  # a stale claim: take it over (O_EXCL decides between two that try at once)
            except FileNotFoundError:
                pass
        except OSError:
            return True
    return False


def listen_port(host: str = "127.0.0.1", avoid: set[int] | frozenset[int] = frozenset()) -> int:
    """A free port for a service to listen on, below the kernel's ephemeral range.

    A port the kernel hands out (``free_port``) is released before the service binds it, and meanwhile any
    outgoing connection may take it as its local port ("Address already in use" at the service's start). The
    kernel never gives out ports below the ephemeral range, so only another listener could take one of these:
    a listener is seen by the check here, and one about to listen, started by another of our processes, by
    its claim (:func:`claim_port`; a test run lost a mesh's start to two meshes picking the same port).
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 20000), low)  # noqa: S311 - not a secret
        if port not in avoid and port_is_free(host, port) and claim_port(port):
            return port
    return free_port(host)


class PortBook:
    """The ports of one state directory's mesh, kept in ``ports.json`` so that a restarted ``up`` listens where
    the last one did: amphorae that kept running stream their heartbeats to the same health ports."""

    def __init__(self, path: Path, host: str = "127.0.0.1", reserved: frozenset[int] = frozenset()) -> None:
        self.path, self.host = path, host
        try:
            self.ports: dict[str, int] = {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            self.ports = {}
        # Ports the mesh listens on that are not the book's to give (the REST edge's, which the caller chose):
        # nothing listens there yet when the book hands out ports, so the free-port check alone would not see it.
        self._given: set[int] = set(reserved)

    def port(self, name: str) -> int:
        """The port ``name`` had last time if it is free, else a new one (recorded)."""
        old = self.ports.get(name)
        if old is not None and old not in self._given and port_is_free(self.host, old):
            port = old
            claim_port(port, refresh=True)  # ours from the last start: keep others off it again
        else:
            port = listen_port(self.host, avoid=self._given | set(self.ports.values()))
        self.ports[name] = port
        self._given.add(port)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.ports, indent=1, sort_keys=True) + "\n")
        return port


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
                + _log_tail(proc.log_path)
            )
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise LaunchError(f"timed out after {timeout:.0f}s waiting for {what}")


def _log_tail(path: Path, lines: int = 8) -> str:
    """The last lines of a child's log, for an error that would otherwise only name a file a CI run deletes."""
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n  | {line}" for line in tail)


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
    started_at: float = field(default_factory=time.monotonic)
    #: Exits in a row that came soon after a start (see ``Supervisor.stable_after_s``).
    failures: int = 0
    restarts: int = 0
    gave_up: bool = False


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Supervisor:
    """Owns the child processes: restarts one that exits (``tick``/``watch``), stops them in reverse start order.

    Restarts are off until ``watch`` (or a caller of ``tick``) asks for them, so that tests which kill a
    service and start it again themselves keep that control.
    """

    log_dir: Path
    children: list[Child] = field(default_factory=list)
    #: Back-off before restart n of a child that keeps failing: initial * 2**(n-1), at most max.
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    #: A child that ran this long had a good start: its next exit starts the count of failures afresh.
    stable_after_s: float = 30.0
    #: Failed starts in a row after which a child is reported and left down.
    max_failures: int = 6
    report: Callable[[str], None] = _say
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _due: dict[str, float] = field(default_factory=dict, repr=False)
    _stopping: bool = field(default=False, repr=False)
    _watcher: threading.Thread | None = field(default=None, repr=False)
    _watch_end: threading.Event = field(default_factory=threading.Event, repr=False)

    def start(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> Child:
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its whole life
        merged = {**os.environ, **(env or {})}
        process = subprocess.Popen(
            [*_DIE_WITH_PARENT, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=merged,
            start_new_session=True,
        )
        log.close()
        child = Child(name, process, log_path, list(argv), dict(env or {}))
        with self._lock:
            self._stopping = False
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
        with self._lock:
            old = self.child(name)
            if old.process.poll() is None:
                old.process.terminate()
                old.process.wait()
            position = self.children.index(old)
            new = self.start(name, old.argv, old.env)
            self.children.pop()  # keep the start order, which stop_all reverses
            self.children[position] = new
            new.failures, new.restarts = old.failures, old.restarts
            self._due.pop(name, None)
            return new

    def tick(self) -> None:
        """One round of supervision: note children that exited, restart those whose back-off is over."""
        now = time.monotonic()
        with self._lock:
            if self._stopping:
                return
            for child in list(self.children):
                if child.gave_up or child.process.poll() is None:
                    continue
                if child.name not in self._due:
                    self._exited(child, now)
                elif now >= self._due[child.name]:
                    new = self.restart(child.name)
                    new.restarts += 1
                    new.started_at = time.monotonic()
                    self._log(
                        new, f"octavia-mesh: restarted {new.name} (pid {new.process.pid}, restart {new.restarts})"
                    )

    def _exited(self, child: Child, now: float) -> None:
        code = child.process.returncode
        ran = now - child.started_at
        child.failures = child.failures + 1 if ran < self.stable_after_s else 1
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        if child.failures > self.max_failures:
            child.gave_up = True
            self._log(
                child,
                f"octavia-mesh: {child.name} {how}; it failed {child.failures} times in a row, each within "
                f"{self.stable_after_s:.0f}s of its start: giving up on it (see {child.log_path}). "
                "The rest of the mesh keeps running.",
            )
            return
        delay = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (child.failures - 1))
        self._due[child.name] = now + delay
        self._log(child, f"octavia-mesh: {child.name} {how} after {ran:.1f}s; restarting it in {delay:.1f}s")

    def _log(self, child: Child, message: str) -> None:
        """A line for the operator, and the same in the child's log (where its next run's output follows)."""
        self.report(message)
        with contextlib.suppress(OSError), open(child.log_path, "a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def watch(self, interval_s: float = 0.1) -> None:
        """Supervise from a thread of our own until ``stop_all``.

        The thread lives until every child is stopped: a child gets its PDEATHSIG when the *thread* that
        started it ends, so the watcher must not end before the children it restarted are stopped in order.
        """
        if self._watcher is not None:
            return
        self._watch_end.clear()

        def loop() -> None:
            while not self._watch_end.wait(interval_s):
                self.tick()

        self._watcher = threading.Thread(target=loop, name="octavia-mesh-supervisor", daemon=True)
        self._watcher.start()

    def stop_all(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
            self._due.clear()
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while child.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait()
        with self._lock:
            self.children.clear()  # a later start begins afresh (nothing stopped may be taken for a crash)
        if self._watcher is not None:
            self._watch_end.set()
            self._watcher.join()
            self._watcher = None
