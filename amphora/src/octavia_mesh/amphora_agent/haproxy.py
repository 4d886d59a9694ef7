"""The HAProxy of one load balancer: validated, started, reloaded hitlessly, restarted when it dies.

HAProxy runs in master-worker mode, ``haproxy -W -db -S <master.sock> -f agent.cfg -f haproxy.cfg``,
as a child of the agent in its own process group. Reloads go through the master CLI: ``reload``
re-executes the master on the files, forks a new worker and answers ``Success=1`` once that worker
serves, while the old worker finishes its connections (the measured way to reload with zero failed
requests, together with ``option idle-close-on-response`` in the configuration and a
``hard-stop-after`` bound, which the agent's fragment sets).

What a worker learned survives a reload:

* server health: before a reload the agent saves the old worker's server states, filtered down to
  health (:mod:`.serverstate`), to the ``server-state-file`` the new worker loads;
* stick tables: the agent's fragment defines a ``peers`` section holding only the local peer, on a unix
  socket; stick tables that name it (``peers local``, which the controller's templates write) are
  handed by the stopping worker to the new one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import enum
import logging
import os
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from octavia_mesh.amphora_agent import hacli, prometheus, serverstate
from octavia_mesh.amphora_agent.reaper import Child, ChildReaper, kill_group
from octavia_mesh.amphora_agent.store import LoadBalancerFiles, remove, write_atomic

logger = logging.getLogger(__name__)

#: Restarts of an HAProxy that keeps dying back off from this delay up to ``restart_backoff_max_s``.
_FIRST_BACKOFF_S = 0.05
#: An HAProxy that ran this long before dying is restarted after the first delay again.
_STABLE_S = 30.0
#: The peers section the agent's fragment defines and the name of its only (local) peer. The controller's
#: configurations refer to the section by this name (``stick-table ... peers local``): a contract.
PEERS_SECTION = "local"
LOCAL_PEER = "amphora"


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
    #: How long a reload waits for a young worker to finish its own peer resynchronisation (HAProxy 2.8
    #: gives up on the previous worker after 5 s, then on remote peers after 5 s more) before it would
    #: lose stick-table entries, and then for the new worker to have learned them.
    peers_sync_timeout_s: float = 11.0


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
        self._loaded = b""  # the configuration the running worker loaded
        self._abandoned = False  # fenced or retired by an amphora host: never started again

    @property
    def running(self) -> bool:
        return self._master is not None and self._master.running

    @property
    def state_file(self) -> Path:
        """Server states saved for the next worker (present only during a reload)."""
        return self.files.directory / "servers.state"

    @property
    def peers_socket(self) -> Path:
        return self.files.run_dir / f"{self.files.socket_key}.peers"

    def _write_fragment(self, config: bytes) -> None:
        # The agent's own sections, loaded before the controller's file, at paths the controller need not
        # know: the stats socket GetStatus reads, the bound on draining workers, the server-state file a
        # reload fills, the local peer through which a stopping worker hands its stick tables over, and for a
        # PROMETHEUS listener the backend that serves Octavia's metric names (``config``: the file it goes with).
        fragment = (
            "# Written by the amphora agent; loaded before haproxy.cfg.\n"
            "global\n"
            f"    stats socket {self.files.stats_socket} mode 600 level admin\n"
            f"    hard-stop-after {self._options.hard_stop_after_s}s\n"
            f"    server-state-file {self.state_file}\n"
            f"    localpeer {LOCAL_PEER}\n"
            "\n"
            f"peers {PEERS_SECTION}\n"
            f"    bind unix@{self.peers_socket} mode 600\n"
            f"    server {LOCAL_PEER}\n"
        )
        if prometheus.BACKEND.encode() in config:
            fragment += prometheus.fragment(self.files.run_dir, self.files.lb_id)
        write_atomic(self.files.fragment, fragment.encode(), 0o600)

    async def validate(self, config: bytes) -> list[str]:
        """Check ``config`` with ``haproxy -c`` and keep it as the staged configuration.

        Returns HAProxy's warnings; raises :class:`ConfigInvalid` with its messages, leaving the
        staged and active files untouched.
        """
        self._write_fragment(config)
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
        # In a context of its own: what the monitor logs later (a restart) is not the request's that started it.
        self._monitor = asyncio.create_task(
            self._watch(), name=f"haproxy-{self.files.lb_id}", context=contextvars.Context()
        )

    async def reload(self) -> None:
        """Load the active configuration (and certificate files) into a new worker, hitlessly."""
        if not self.running:
            await self.start()
            return
        config = self.files.config.read_bytes()
        self._write_fragment(config)
        # Both steps cost round trips to the old worker; a configuration without stick tables (or checks) skips them.
        tables = await self._await_peers_resync() if b"stick-table" in self._loaded else False
        await self._save_server_state(config)
        try:
            answer = await hacli.command(self.files.master_socket, "reload", self._options.reload_timeout_s)
        except hacli.CliError as exc:
            raise HaproxyError(f"reload failed: {exc}") from exc
        finally:
            remove(self.state_file)  # read by the reload only: never by a later start
        if not hacli.reload_succeeded(answer):
            raise HaproxyError(f"reload failed:\n{answer.strip()}")
        self._loaded = config
        if tables:
            await self._await_peers_resync(after_reload=True)

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
        remove(self.peers_socket)
        self._state, self._start_time = ProcessState.STOPPED, None

    def abandon(self, sig: int = signal.SIGKILL) -> None:
        """Signal HAProxy's whole group with ``sig`` and supervise it no more, at once: no restart, no wait.

        What an amphora host does to the HAProxy of one amphora it fences (SIGKILL) or retires while it
        still serves (SIGUSR1: soft-stop, the requests in flight finish). Whoever removes the amphora reaps
        what is left (its processes name the amphora's directory)."""
        self._stopping = self._abandoned = True
        if self._monitor is not None:
            self._monitor.cancel()
            self._monitor = None
        if self._master is not None:
            kill_group(self._master.pid, sig)
        self._state = ProcessState.STOPPED

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

    async def _save_server_state(self, config: bytes) -> None:
        """Leave the old worker's server health, as far as ``config`` still applies it, for the new worker."""
        remove(self.state_file)
        if b" check" not in config or b" check" not in self._loaded:
            return  # no server is health-checked on one side: no health to carry over
        try:
            state = await hacli.command(self.files.stats_socket, "show servers state", 5.0)
        except hacli.CliError as exc:
            logger.warning("lb %s: server states not carried over: %s", self.files.lb_id, exc)
            return
        kept = serverstate.carry_over(state, self._loaded.decode(errors="replace"), config.decode(errors="replace"))
        if kept:
            # Read once, by the reload that follows: no fsync (write_atomic's), which costs reloads on a busy disk.
            tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(kept.encode())
            os.replace(tmp, self.state_file)

    async def _await_peers_resync(self, after_reload: bool = False) -> bool:
        """Wait until the running worker's stick tables can be handed over; whether any hold entries.

        A stopping HAProxy 2.8 worker teaches its tables to the next one only once its own peer
        resynchronisation is over, which takes a young worker up to 10 s with no remote peer. Before a
        reload, the wait happens only when a table holds entries (nothing to lose otherwise); after one,
        it makes the reload return once the new worker holds them.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._options.peers_sync_timeout_s
        while True:
            try:
                usage = hacli.parse_table_usage(await hacli.command(self.files.stats_socket, "show table", 2.0))
                if not (usage if after_reload else any(usage.values())):
                    return False  # no table (a peers section nothing uses never syncs), or nothing to lose
                answer = await hacli.command(self.files.stats_socket, "show peers", 2.0)
            except hacli.CliError as exc:
                logger.warning("lb %s: stick tables may not survive this reload: %s", self.files.lb_id, exc)
                return False
            flags = hacli.parse_show_peers(answer).get(PEERS_SECTION)
            finished = flags is None or flags & hacli.PEERS_RESYNC_FINISHED == hacli.PEERS_RESYNC_FINISHED
            if finished:
                waited = loop.time() - started
                if waited > 0.1:
                    stage = "the new worker to learn" if after_reload else "the worker to be able to teach"
                    logger.info("lb %s: waited %.1fs for %s stick tables", self.files.lb_id, waited, stage)
                return True
            if loop.time() >= deadline:
                logger.warning("lb %s: peers still resynchronising (flags %#x)", self.files.lb_id, flags)
                return True
            await asyncio.sleep(0.05)

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
        remove(self.peers_socket)
        for sock in (self.files.master_socket, self.files.stats_socket, self.peers_socket, self.files.exporter_socket):
            # HAProxy binds unix sockets through `<path>.<pid>.tmp` / `.bak` names a kill can leave behind.
            for leftover in sock.parent.glob(f"{sock.name}.*"):
                remove(leftover)

    async def _spawn(self) -> None:
        if self._abandoned:  # a shielded start still running when its amphora was fenced must not revive it
            raise HaproxyError("this amphora was fenced or retired")
        orphan = self.orphan_pid()
        self._clear_stale_sockets()
        remove(self.state_file)  # states of another process, however old: a start checks afresh
        config = self.files.config.read_bytes()
        self._write_fragment(config)
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
        self._loaded = config
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
