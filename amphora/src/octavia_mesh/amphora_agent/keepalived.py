"""keepalived for ACTIVE_STANDBY amphorae: its configuration, and keepalived supervised like HAProxy.

keepalived runs as ``keepalived -n -P -l -G -f keepalived.conf -p <pid> -r <vrrp pid>``: in the foreground
(a child of the agent, reaped by its :class:`ChildReaper`), VRRP only, logging to the agent's log. Its
files live under ``<state>/vrrp/``::

    keepalived.conf           what keepalived runs: the agent's part, then the controller's vrrp_instance
    keepalived.conf.staged    put and validated (``keepalived --config-test``), not yet started or reloaded
    vrrp.conf[.staged]        the controller's part alone, as put (its SHA-256 is what status reports)
    keepalived.pid, vrrp.pid  keepalived's own pid files, one pair per amphora
    check-haproxy             the ``vrrp_script check_haproxy`` the controller's instance tracks
    notify.fifo               keepalived announces every state change here (``notify_fifo``)
    running                   present while keepalived is meant to run (survives agent restarts)

Two lessons of the measurements (``dataplane.md`` §5) shape the supervisor: keepalived refuses to start
while a pid file names a live process ("daemon is already running"), and a killed keepalived leaves its
pid files behind, naming pids that get reused. So the agent clears stale pid files before every start,
stops a keepalived a previous agent left running (it would fight the new one over the VIP), and waits
until the old process has exited and been reaped before it starts the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from octavia_mesh.amphora_agent.agent import NotConfigured
from octavia_mesh.amphora_agent.haproxy import HaproxyError, run
from octavia_mesh.amphora_agent.reaper import Child, ChildReaper, kill_group
from octavia_mesh.amphora_agent.store import remove, sha256, write_atomic

logger = logging.getLogger(__name__)

#: The largest controller configuration accepted (a vrrp_instance is a few hundred bytes).
MAX_CONFIG_BYTES = 64 * 1024
#: Where keepalived lives besides PATH (Debian installs it in /usr/sbin, often not on a service's PATH).
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_FIRST_BACKOFF_S = 0.05
_STABLE_S = 30.0
#: The vrrp_script the controller's instance may track (part of the agent's contract, see agent.proto).
CHECK_SCRIPT_NAME = "check_haproxy"


class VrrpError(NotConfigured):
    """keepalived is not installed, has no configuration, or failed to start."""


class VrrpConfigInvalid(ValueError):
    """``keepalived --config-test`` refused a configuration (the message carries its output)."""


class VrrpState(enum.Enum):
    UNSPECIFIED = "UNSPECIFIED"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"
    STOP = "STOP"


@dataclass(frozen=True, slots=True)
class VrrpInfo:
    """A snapshot of the supervised keepalived."""

    running: bool
    pid: int
    state: VrrpState
    state_time: float | None
    config_sha256: str
    restart_count: int
    last_error: str


def find_keepalived(configured: str = "") -> str | None:
    """The keepalived binary: ``configured`` (a path or a name), else keepalived on PATH or in an sbin."""
    name = configured or "keepalived"
    if "/" in name:
        return name if os.access(name, os.X_OK) else None
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(name, path=search)


MISSING = "keepalived is not installed on this amphora (Debian/Ubuntu: apt-get install keepalived)"


class Keepalived:
    """Supervises the amphora's keepalived (one VRRP instance per amphora, as in Octavia)."""

    def __init__(
        self,
        state_dir: Path,
        lb_root: Path,
        reaper: ChildReaper,
        *,
        binary: str | None,
        router_id: str,
        start_timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
        restart_backoff_max_s: float = 5.0,
    ) -> None:
        self.dir = state_dir / "vrrp"
        self._lb_root = lb_root
        self._reaper = reaper
        self._binary = binary
        self._router_id = router_id
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._backoff_max_s = restart_backoff_max_s
        self.lock = asyncio.Lock()
        self._child: Child | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False
        self._fifo_fd: int | None = None
        self._fifo_partial = b""
        self._output_fd: int | None = None
        self._tail: list[str] = []
        self._state = VrrpState.UNSPECIFIED
        self._state_time: float | None = None
        self._restart_count = 0
        self._backoff = _FIRST_BACKOFF_S
        self._started_at = 0.0
        self._last_error = ""
        self._loaded_sha = ""

    # -- paths --------------------------------------------------------------------------------------

    @property
    def config(self) -> Path:
        return self.dir / "keepalived.conf"

    @property
    def staged(self) -> Path:
        return self.dir / "keepalived.conf.staged"

    @property
    def pidfiles(self) -> tuple[Path, Path]:
        return self.dir / "keepalived.pid", self.dir / "vrrp.pid"

    @property
    def check_script(self) -> Path:
        return self.dir / "check-haproxy"

    @property
    def fifo(self) -> Path:
        return self.dir / "notify.fifo"

    @property
    def desired(self) -> Path:
        return self.dir / "running"

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    # -- configuration ------------------------------------------------------------------------------

    def _agent_part(self) -> str:
        # Script security: keepalived runs the check as root only from root-owned, non-writable paths, which
        # the agent's state directory is (mode 0700).
        return (
            "# Written by the amphora agent; the controller's configuration follows.\n"
            "global_defs {\n"
            f"    router_id {self._router_id}\n"
            "    script_user root\n"
            "    enable_script_security\n"
            f"    notify_fifo {self.fifo}\n"
            "}\n\n"
            f"vrrp_script {CHECK_SCRIPT_NAME} {{\n"
            f'    script "{self.check_script}"\n'
            "    interval 1\n"
            "    fall 2\n"
            "    rise 2\n"
            "}\n\n"
        )

    def _write_check_script(self) -> None:
        # Fails while an HAProxy the agent is meant to run (lb/<id>/running) has no live master. The agent
        # restarts a dead HAProxy within tens of milliseconds, so one failed check (fall 2) does not move the
        # VIP; an HAProxy that stays down, or an agent that died with it, does.
        script = (
            "#!/bin/sh\n"
            "# Written by the amphora agent: keepalived's check that this amphora's HAProxy serves.\n"
            f"for lb in '{self._lb_root}'/*/; do\n"
            '    [ -e "${lb}running" ] || continue\n'
            '    read -r pid < "${lb}haproxy.pid" || exit 1\n'
            '    kill -0 "$pid" 2>/dev/null || exit 1\n'
            "done\n"
            "exit 0\n"
        )
        write_atomic(self.check_script, script.encode(), 0o700)

    def _require_binary(self) -> str:
        if self._binary is None:
            raise VrrpError(MISSING)
        return self._binary

    async def put_config(self, config: str) -> str:
        """Validate the controller's ``vrrp_instance`` (with the agent's part before it) and stage it."""
        data = config.encode()
        if not config.strip():
            raise ValueError("config is empty")
        if len(data) > MAX_CONFIG_BYTES or "\0" in config:
            raise ValueError(f"config must be text of at most {MAX_CONFIG_BYTES} bytes")
        binary = self._require_binary()
        async with self.lock:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._write_check_script()
            candidate = self.dir / ".keepalived.conf.check"
            write_atomic(candidate, self._agent_part().encode() + data, 0o600)
            try:
                code, output = await run(self._reaper, [binary, "--config-test", "-f", str(candidate)], 30.0)
                if code != 0:
                    lines = [line for line in output.splitlines() if line.strip()]
                    message = "\n".join(lines).replace(str(candidate), "keepalived.conf")
                    raise VrrpConfigInvalid(message or f"keepalived --config-test exited with {code}")
                os.replace(candidate, self.staged)
            finally:
                remove(candidate)
            write_atomic(self.dir / "vrrp.conf.staged", data, 0o600)
        return sha256(data)

    # -- process ------------------------------------------------------------------------------------

    async def start(self) -> bool:
        """Start keepalived on the staged (else active) configuration, or make a running one reload; True if
        it reloaded."""
        return await asyncio.shield(asyncio.ensure_future(self._start()))

    async def _start(self) -> bool:
        self._require_binary()
        async with self.lock:
            if self.staged.exists():
                os.replace(self.staged, self.config)
                os.replace(self.dir / "vrrp.conf.staged", self.dir / "vrrp.conf")
            if not self.config.exists():
                raise VrrpError("no VRRP configuration: PutVrrpConfig first")
            self._write_check_script()
            self.desired.touch(mode=0o600)
            if self.running:
                assert self._child is not None
                os.kill(self._child.pid, signal.SIGHUP)
                self._loaded_sha = self._put_sha()
                return True
            self._stopping = False
            await self._cancel_monitor()
            await self._spawn()
            # A context of its own: what the monitor logs later is not the request's that started keepalived.
            self._monitor = asyncio.create_task(self._watch(), name="keepalived", context=contextvars.Context())
            return False

    async def stop(self, *, forget: bool = True) -> None:
        """Stop keepalived (SIGTERM: a master hands the VIP over at once) and reap it; ``forget`` keeps it stopped
        after an agent restart too."""
        await asyncio.shield(asyncio.ensure_future(self._stop(forget)))

    async def _stop(self, forget: bool) -> None:
        async with self.lock:
            self._stopping = True
            if forget:
                remove(self.desired)
            await self._cancel_monitor()
            if self._child is not None:
                await self._terminate(self._child)
                self._child = None
            self._clear_pidfiles()

    async def resume(self) -> None:
        """At agent start: stop a keepalived a previous agent left, then start again if it is meant to run."""
        await self._stop_orphans()
        if self.desired.exists() and self.config.exists() and self._binary is not None:
            try:
                await self.start()
            except (VrrpError, OSError) as exc:
                logger.error("could not resume keepalived: %s", exc)

    async def shutdown(self) -> None:
        """At agent stop: stop keepalived but keep the wish to run it."""
        await self.stop(forget=False)
        if self._fifo_fd is not None:
            asyncio.get_running_loop().remove_reader(self._fifo_fd)
            os.close(self._fifo_fd)
            self._fifo_fd = None

    def info(self) -> VrrpInfo:
        return VrrpInfo(
            running=self.running,
            pid=self._child.pid if self.running and self._child else 0,
            state=self._state if self.running or self._state is VrrpState.STOP else VrrpState.UNSPECIFIED,
            state_time=self._state_time,
            config_sha256=self._loaded_sha,
            restart_count=self._restart_count,
            last_error=self._last_error,
        )

    # -- internals ----------------------------------------------------------------------------------

    def _put_sha(self) -> str:
        try:
            return sha256((self.dir / "vrrp.conf").read_bytes())
        except FileNotFoundError:
            return ""

    def _open_fifo(self) -> None:
        if self._fifo_fd is not None:
            return
        if not self.fifo.exists():
            os.mkfifo(self.fifo, 0o600)
        # Read-write: the agent holds a writer too, so the FIFO never reads EOF while keepalived restarts.
        self._fifo_fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        asyncio.get_running_loop().add_reader(self._fifo_fd, self._read_fifo)

    def _read_fifo(self) -> None:
        assert self._fifo_fd is not None
        try:
            data = os.read(self._fifo_fd, 4096)
        except BlockingIOError:
            return
        *lines, self._fifo_partial = (self._fifo_partial + data).split(b"\n")
        for raw in lines:
            # e.g. `INSTANCE "VI_1" MASTER 100`
            words = raw.decode(errors="replace").split()
            if len(words) >= 3 and words[0] == "INSTANCE" and words[2] in VrrpState.__members__:
                self._state, self._state_time = VrrpState[words[2]], time.time()
                logger.info("vrrp %s %s", words[1], words[2])

    def _start_output(self) -> int:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        self._tail = []

        def read() -> None:
            try:
                data = os.read(read_fd, 65536)
            except BlockingIOError:
                return
            if not data:
                asyncio.get_running_loop().remove_reader(read_fd)
                os.close(read_fd)
                return
            for line in data.decode(errors="replace").splitlines():
                line = line.split(": ", 1)[-1].rstrip()  # keepalived prefixes its own timestamp
                if line:
                    self._tail = [*self._tail[-19:], line]
                    logger.info("keepalived %s", line)

        asyncio.get_running_loop().add_reader(read_fd, read)
        return write_fd

    def _clear_pidfiles(self) -> None:
        for path in self.pidfiles:
            remove(path)

    def _ours(self, pid: int) -> bool:
        """Whether ``pid`` is a live keepalived running this amphora's configuration."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z" and str(self.config).encode() in cmdline

    async def _stop_orphans(self) -> None:
        """Stop what a previous agent's keepalived left running, then clear its pid files (stale ones too)."""
        orphans = []
        for path in self.pidfiles:
            with contextlib.suppress(OSError, ValueError):
                pid = int(path.read_text().split()[0])
                if self._ours(pid):
                    orphans.append(pid)
        for pid in orphans:
            logger.warning("stopping keepalived %d left by a previous agent", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout_s
        while any(self._ours(p) for p in orphans) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for pid in orphans:
            if self._ours(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._clear_pidfiles()

    async def _spawn(self) -> None:
        binary = self._require_binary()
        self._open_fifo()
        # A stale pid file naming a live process (a reused pid) makes keepalived refuse to start.
        await self._stop_orphans()
        parent_pid, vrrp_pid = self.pidfiles
        argv = [
            binary,
            "--dont-fork",
            "--vrrp",
            "--log-console",
            "--log-detail",
            "--no-syslog",
            "-f",
            str(self.config),
            "-p",
            str(parent_pid),
            "-r",
            str(vrrp_pid),
        ]
        write_fd = self._start_output()
        try:
            child = self._reaper.spawn(argv, write_fd)
        finally:
            os.close(write_fd)
        self._child, self._started_at, self._state = child, time.time(), VrrpState.UNSPECIFIED
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout_s
        # Started once the VRRP child has written its pid file.
        while not self._vrrp_child_alive():
            if not child.running or loop.time() >= deadline:
                reason = "exited" if not child.running else f"did not start within {self._start_timeout_s:g}s"
                await self._terminate(child)
                self._child = None
                self._clear_pidfiles()
                self._last_error = f"keepalived {reason}:\n" + "\n".join(self._tail[-12:])
                raise VrrpError(self._last_error)
            await asyncio.sleep(0.01)
        self._loaded_sha, self._last_error = self._put_sha(), ""
        logger.info("keepalived %d running", child.pid)

    def _vrrp_child_alive(self) -> bool:
        try:
            pid = int(self.pidfiles[1].read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        return Path(f"/proc/{pid}").exists()

    async def _terminate(self, child: Child) -> None:
        if child.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), self._stop_timeout_s)
        # The VRRP child too, should the parent have been killed before it.
        kill_group(child.pid)
        await child.wait()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            self._reaper.reap()  # the VRRP child, orphaned to the agent (a subreaper) if the parent died first
            try:
                os.killpg(child.pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.01)
        if self._state is not VrrpState.STOP:
            self._state, self._state_time = VrrpState.STOP, time.time()

    async def _cancel_monitor(self) -> None:
        if self._monitor is not None and self._monitor is not asyncio.current_task():
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        self._monitor = None

    async def _watch(self) -> None:
        """Restart keepalived whenever it dies without being asked to, backing off while it keeps dying."""
        while True:
            child = self._child
            assert child is not None
            code = await child.wait()
            if self._stopping:
                return
            async with self.lock:
                if self._stopping:
                    return
                await self._terminate(child)
                self._clear_pidfiles()
                self._restart_count += 1
                self._last_error = f"keepalived exited unexpectedly (exit {code}):\n" + "\n".join(self._tail[-12:])
                ran = time.time() - self._started_at
                self._backoff = _FIRST_BACKOFF_S if ran > _STABLE_S else self._backoff
                logger.warning("keepalived %d exited with %d; restarting", child.pid, code)
            while True:
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, self._backoff_max_s)
                async with self.lock:
                    if self._stopping:
                        return
                    try:
                        await self._spawn()
                        break
                    except (VrrpError, HaproxyError, OSError) as exc:
                        logger.error("keepalived restart failed: %s", exc)
