"""Spawning children and reaping every one of them, orphans included.

The agent marks itself a *child subreaper*, so when an HAProxy master dies its
workers are re-parented to the agent rather than to PID 1 (which, on the
machines this runs on, does not reap promptly: dead daemons linger as zombies
and confuse pid-file checks). One ``waitpid(-1)`` loop, driven by SIGCHLD,
then collects every exit. Nothing else in the agent may wait for children:
``subprocess.Popen`` and asyncio's child watchers would race this loop for
exit statuses, which is why children are started with ``os.posix_spawn``.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True, slots=True)
class Child:
    """A spawned process: its pid, and a future resolved with its exit code (``-N`` for signal N)."""

    pid: int
    exited: asyncio.Future[int]

    @property
    def running(self) -> bool:
        return not self.exited.done()

    async def wait(self) -> int:
        # Shielded: a cancelled waiter must not cancel the future the reaper resolves for everyone.
        return await asyncio.shield(self.exited)


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        # Not fatal: HAProxy's workers exit by themselves when their master dies; we would only
        # lose the chance to reap them.
        logger.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))


class ChildReaper:
    """Spawns children and resolves their exit futures from a SIGCHLD-driven ``waitpid(-1)`` loop."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[int, asyncio.Future[int]] = {}

    def install(self) -> None:
        """Start reaping; call once, from the running event loop, before spawning anything."""
        self._loop = asyncio.get_running_loop()
        _become_subreaper()
        self._loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGCHLD)

    def spawn(self, argv: Sequence[str], output_fd: int, *, new_session: bool = True) -> Child:
        """Start ``argv`` with stdin on /dev/null and stdout+stderr on ``output_fd``.

        ``new_session`` puts the child in its own session and process group, so a signal meant for
        the agent (Ctrl-C in a terminal) does not reach it and the whole group can be killed at once.
        """
        assert self._loop is not None, "ChildReaper.install() first"
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, output_fd, 1),
            (os.POSIX_SPAWN_DUP2, output_fd, 2),
        ]
        pid = os.posix_spawn(argv[0], list(argv), dict(os.environ), file_actions=actions, setsid=new_session)
        # Registered before control returns to the loop, so the SIGCHLD callback cannot miss it.
        exited: asyncio.Future[int] = self._loop.create_future()
        self._waiting[pid] = exited
        return Child(pid, exited)

    def reap(self) -> bool:
        """Collect every exited child; True when the agent has no children left at all."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return False
            code = os.waitstatus_to_exitcode(status)
            exited = self._waiting.pop(pid, None)
            if exited is None:
                logger.debug("reaped orphan %d (exit %d)", pid, code)
            elif not exited.done():
                exited.set_result(code)

    async def wait_all(self, timeout: float) -> bool:
        """Wait until no child is left (orphaned workers finishing too); False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.reap():
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a whole process group, ignoring a group that is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
