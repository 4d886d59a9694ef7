"""The HAProxy of one load balancer: validated, started, reloaded hitlessly, restarted when it dies.

HAProxy runs in master-worker mode, ``haproxy -W -db -S <master.sock> -f agent.cfg -f haproxy.cfg``,
as a child of the agent in its own process group. Reloads go through the master CLI: ``reload``
re-executes the master on the files, forks a new worker and answers ``Success=1`` once that worker
serves, while the old worker finishes its connections (the measured way to reload with zero failed
requests, together with ``option idle-close-on-response`` in the configuration and a
``hard-stop-after`` bound, which the agent's fragment sets).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import os
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from octavia_mesh.amphora_agent import hacli
from octavia_mesh.amphora_agent.reaper import Child, ChildReaper, kill_group
from octavia_mesh.amphora_agent.store import LoadBalancerFiles, remove, write_atomic

logger = logging.getLogger(__name__)

#: Restarts of an HAProxy that keeps dying back off from this delay up to ``restart_backoff_max_s``.
_FIRST_BACKOFF_S = 0.05
#: An HAProxy that ran this long before dying is restarted after the first delay again.
_STABLE_S = 30.0


class HaproxyError(RuntimeError):
    """HAProxy failed to start or reload; the message carries HAProxy's own output."""


class ConfigInvalid(HaproxyError):
    """``haproxy -c`` refused a configuration."""


class ProcessState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class HaproxyOptions:
    """What the supervisor needs from the agent's settings."""

    binary: str
    hard_stop_after_s: int = 30
    start_timeout_s: float = 10.0
    stop_timeout_s: float = 5.0
    reload_timeout_s: float = 30.0
    restart_backoff_max_s: float = 5.0


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A snapshot of the supervised HAProxy."""

    state: ProcessState
    config_sha256: str
    master_pid: int = 0
    worker_pid: int = 0
    old_worker_pids: tuple[int, ...] = ()
    start_time: float | None = None
    reload_count: int = 0
    restart_count: int = 0
    last_error: str = ""


async def run(reaper: ChildReaper, argv: Sequence[str], timeout: float) -> tuple[int, str]:
    """Run a short-lived command to completion; its exit code and combined output."""
    with tempfile.TemporaryFile() as out:
        child = reaper.spawn(argv, out.fileno())
        try:
            code = await asyncio.wait_for(child.wait(), timeout)
        except TimeoutError:
            kill_group(child.pid)
            await child.wait()
            raise HaproxyError(f"{os.path.basename(argv[0])} did not finish within {timeout:g}s") from None
        out.seek(0)
        return code, out.read().decode(errors="replace")


class _Output:
    """HAProxy's stdout/stderr: logged line by line, the last lines kept for error messages."""

    def __init__(self, lb_id: str, fd: int) -> None:
        self._lb_id = lb_id
        self._fd = fd
        self._partial = b""
        self._lines: collections.deque[str] = collections.deque(maxlen=40)
        self._closed = asyncio.Event()
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self.close()
            return
        *complete, self._partial = (self._partial + data).split(b"\n")
        for raw in complete:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._lines.append(line)
                logger.info("haproxy[%s] %s", self._lb_id, line)

    def close(self) -> None:
        if not self._closed.is_set():
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._closed.set()

    async def drained(self, timeout: float) -> None:
        """Wait until every writer (master and workers) is gone, so the tail is complete."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), timeout)

    def tail(self, count: int = 12) -> str:
        """The last lines, without HAProxy's version/path notices that every start prints."""
        return "\n".join([line for line in self._lines if not line.startswith("[NOTICE]")][-count:])


def _clean_messages(output: str, checked: str) -> str:
    """HAProxy's alerts and warnings about a configuration, naming it ``haproxy.cfg``, without notices."""
    lines = [line.replace(checked, "haproxy.cfg") for line in output.splitlines() if line.strip()]
    return "\n".join(line for line in lines if not line.startswith("[NOTICE]"))


class Haproxy:
    """Supervises the HAProxy of one load balancer.

    Callers hold :attr:`lock` around every operation, so that a configuration change, a start and
    a restart after a crash never interleave.
    """

    def __init__(self, files: LoadBalancerFiles, reaper: ChildReaper, options: HaproxyOptions) -> None:
        self.files = files
        self.lock = asyncio.Lock()
        self._reaper = reaper
        self._options = options
        self._state = ProcessState.STOPPED
        self._master: Child | None = None
        self._output: _Output | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self._start_time: float | None = None
        self._restart_count = 0
        self._backoff = _FIRST_BACKOFF_S
        self._last_error = ""

    @property
    def running(self) -> bool:
        return self._master is not None and self._master.running

    def _write_fragment(self) -> None:
        # The agent's own `global` section, loaded before the controller's file: the stats socket
        # GetStatus reads, at a path the controller need not know, and the bound on draining workers.
        fragment = (
            "# Written by the amphora agent; loaded before haproxy.cfg.\n"
            "global\n"
            f"    stats socket {self.files.stats_socket} mode 600 level admin\n"
            f"    hard-stop-after {self._options.hard_stop_after_s}s\n"
        )
        write_atomic(self.files.fragment, fragment.encode(), 0o600)

    async def validate(self, config: bytes) -> list[str]:
        """Check ``config`` with ``haproxy -c`` and keep it as the staged configuration.

        Returns HAProxy's warnings; raises :class:`ConfigInvalid` with its messages, leaving the
        staged and active files untouched.
        """
        self._write_fragment()
        candidate = self.files.directory / ".haproxy.cfg.check"
        write_atomic(candidate, config, 0o600)
        try:
            argv = [self._options.binary, "-c", "-f", str(self.files.fragment), "-f", str(candidate)]
            code, output = await run(self._reaper, argv, self._options.reload_timeout_s)
            messages = _clean_messages(output, str(candidate))
            if code != 0:
                raise ConfigInvalid(messages or f"haproxy -c exited with {code}")
            os.replace(candidate, self.files.staged)
        finally:
            remove(candidate)
        return [line for line in messages.splitlines() if "[WARNING]" in line]

    async def start(self) -> None:
        """Start HAProxy on the active configuration unless it is running; raises :class:`HaproxyError`."""
        if self.running:
            return
        self._stopping = False
        # A restart loop that keeps failing may still be backing off; this start supersedes it.
        await self._cancel_monitor()
        try:
            await self._spawn()
        except HaproxyError as exc:
            self._state, self._last_error = ProcessState.FAILED, str(exc)
            raise
        self.files.desired.touch(mode=0o600)
        self._monitor = asyncio.create_task(self._watch(), name=f"haproxy-{self.files.lb_id}")

    async def reload(self) -> None:
        """Load the active configuration (and certificate files) into a new worker, hitlessly."""
        if not self.running:
            await self.start()
            return
        self._write_fragment()
        try:
            answer = await hacli.command(self.files.master_socket, "reload", self._options.reload_timeout_s)
        except hacli.CliError as exc:
            raise HaproxyError(f"reload failed: {exc}") from exc
        if not hacli.reload_succeeded(answer):
            raise HaproxyError(f"reload failed:\n{answer.strip()}")

    async def stop(self, *, forget: bool = True) -> None:
        """Stop HAProxy and every process of its group.

        ``forget`` clears the wish to run, so that an agent restart does not start it again; the
        agent's own shutdown keeps it.
        """
        self._stopping = True
        if forget:
            remove(self.files.desired)
        await self._cancel_monitor()
        if self._master is not None:
            await self._terminate(self._master)
            self._master = None
        remove(self.files.pidfile)
        self.files.remove_sockets()
        self._state, self._start_time = ProcessState.STOPPED, None

    async def info(self) -> ProcessInfo:
        procs = hacli.Processes()
        if self.running and self._state is ProcessState.RUNNING:
            with contextlib.suppress(hacli.CliError):
                answer = await hacli.command(self.files.master_socket, "show proc;quit", 2.0)
                procs = hacli.parse_show_proc(answer)
        return ProcessInfo(
            state=self._state,
            config_sha256=self.files.active_sha256(),
            master_pid=self._master.pid if self.running and self._master else 0,
            worker_pid=procs.worker_pid,
            old_worker_pids=procs.old_worker_pids,
            start_time=self._start_time,
            reload_count=procs.reloads,
            restart_count=self._restart_count,
            last_error=self._last_error,
        )

    async def show_stat(self) -> list[dict[str, str]]:
        """The ``show stat`` rows of the running worker; empty when HAProxy is not running."""
        if not self.running:
            return []
        return hacli.parse_show_stat(await hacli.command(self.files.stats_socket, "show stat", 5.0))

    # -- internals -------------------------------------------------------------------------------

    async def _cancel_monitor(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None

    def orphan_pid(self) -> int:
        """The master of an HAProxy that a previous, crashed agent left running for this load balancer."""
        try:
            pid = int(self.files.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return 0
        return pid if str(self.files.config).encode() in cmdline else 0

    def _clear_stale_sockets(self) -> None:
        self.files.remove_sockets()
        for sock in (self.files.master_socket, self.files.stats_socket):
            # HAProxy binds unix sockets through `<path>.<pid>.tmp` / `.bak` names a kill can leave behind.
            for leftover in sock.parent.glob(f"{sock.name}.*"):
                remove(leftover)

    async def _spawn(self) -> None:
        orphan = self.orphan_pid()
        self._clear_stale_sockets()
        self._write_fragment()
        argv = [
            self._options.binary,
            "-W",
            "-db",
            "-S",
            f"{self.files.master_socket},mode,600",
            "-f",
            str(self.files.fragment),
            "-f",
            str(self.files.config),
        ]
        read_fd, write_fd = os.pipe()
        output = _Output(self.files.lb_id, read_fd)
        try:
            child = self._reaper.spawn(argv, write_fd)
        except OSError:
            output.close()
            raise
        finally:
            os.close(write_fd)
        self._state, self._master, self._output = ProcessState.STARTING, child, output
        ready = asyncio.create_task(self._wait_ready())
        done, _ = await asyncio.wait(
            {ready, child.exited}, timeout=self._options.start_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            await self._terminate(child)
            self._master = None
            reason = "exited" if child.exited.done() else f"did not serve within {self._options.start_timeout_s:g}s"
            raise HaproxyError(f"haproxy {reason}:\n{output.tail()}")
        write_atomic(self.files.pidfile, f"{child.pid}\n".encode(), 0o600)
        self._state, self._start_time, self._last_error = ProcessState.RUNNING, time.time(), ""
        if orphan:
            # Ours serves now (both listen thanks to SO_REUSEPORT); let the orphan finish its connections.
            logger.warning("lb %s: soft-stopping haproxy %d left by a previous agent", self.files.lb_id, orphan)
            with contextlib.suppress(ProcessLookupError):
                os.kill(orphan, signal.SIGUSR1)
        logger.info("lb %s: haproxy %d serving", self.files.lb_id, child.pid)

    async def _wait_ready(self) -> None:
        # The master binds every listener before it forks the worker, so the stats socket accepts
        # early; only the worker answers `show info`, and it does so once its proxies serve. The
        # master opens its own CLI a moment later; reloads and `show proc` need that one too.
        checks = (
            (self.files.stats_socket, "show info", "Pid:"),
            (self.files.master_socket, "show proc;quit", "worker"),
        )
        for socket, line, expected in checks:
            while True:
                with contextlib.suppress(hacli.CliError):
                    if expected in await hacli.command(socket, line, 1.0):
                        break
                await asyncio.sleep(0.002)

    async def _terminate(self, child: Child) -> None:
        if child.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), self._options.stop_timeout_s)
        # Old workers still draining, or a worker whose master was killed: the whole group goes.
        kill_group(child.pid)
        await child.wait()
        await self._group_gone(child.pid)
        if self._output is not None:
            await self._output.drained(1.0)

    async def _group_gone(self, pgid: int, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._reaper.reap()
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            await asyncio.sleep(0.01)
        logger.warning("lb %s: processes of group %d outlived SIGKILL", self.files.lb_id, pgid)

    async def _watch(self) -> None:
        """Restart HAProxy whenever it dies without being asked to, backing off while it keeps dying."""
        while True:
            child = self._master
            assert child is not None
            code = await child.wait()
            if self._stopping:
                return
            kill_group(child.pid)
            if self._output is not None:
                await self._output.drained(0.5)
            tail = self._output.tail() if self._output is not None else ""
            self._last_error = f"haproxy exited unexpectedly (exit {code}):\n{tail}"
            self._state = ProcessState.RESTARTING
            self._restart_count += 1
            ran = time.time() - (self._start_time or 0.0)
            self._backoff = _FIRST_BACKOFF_S if ran > _STABLE_S else self._backoff
            logger.warning("lb %s: haproxy %d exited with %d; restarting", self.files.lb_id, child.pid, code)
            while True:
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, self._options.restart_backoff_max_s)
                async with self.lock:
                    if self._stopping:
                        return
                    try:
                        await self._spawn()
                        break
                    except HaproxyError as exc:
                        self._state, self._last_error = ProcessState.FAILED, str(exc)
                        logger.error("lb %s: restart failed: %s", self.files.lb_id, exc)
