"""The agent's domain: load balancers' files and their HAProxy supervisors, independent of gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from octavia_mesh.amphora_agent import hacli
from octavia_mesh.amphora_agent.haproxy import Haproxy, HaproxyError, HaproxyOptions, ProcessInfo, run
from octavia_mesh.amphora_agent.reaper import ChildReaper
from octavia_mesh.amphora_agent.store import Store, remove, sha256

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The largest PEM file the agent stores (chains with intermediates fit many times over).
MAX_PEM_BYTES = 1 << 20


class NotFound(LookupError):
    """The load balancer or file does not exist on this amphora."""


class NotConfigured(RuntimeError):
    """The load balancer has no configuration to run yet."""


@dataclass(frozen=True, slots=True)
class Status:
    process: ProcessInfo
    stat_rows: list[dict[str, str]]


class Agent:
    """Everything the controller can ask of an amphora, for every load balancer it serves.

    Mutations run shielded from the caller's cancellation: a controller that gives up on a call must
    not leave a half-started HAProxy behind. Per load balancer they are serialized by the
    supervisor's lock.
    """

    def __init__(self, store: Store, reaper: ChildReaper, options: HaproxyOptions) -> None:
        self._store = store
        self._reaper = reaper
        self._options = options
        self._haproxies: dict[str, Haproxy] = {}
        self.haproxy_version = "unknown"
        #: Heartbeats hook in here to read HAProxy's counters right before a reload or stop resets them,
        #: and to drop a deleted load balancer's counters.
        self.before_reset: Callable[[str], Awaitable[None]] | None = None
        self.forgotten: Callable[[str], None] | None = None

    def _haproxy(self, lb_id: str) -> Haproxy:
        files = self._store.files(lb_id)
        if lb_id not in self._haproxies:
            self._haproxies[lb_id] = Haproxy(files, self._reaper, self._options)
        return self._haproxies[lb_id]

    def supervisor(self, lb_id: str) -> Haproxy:
        """The supervisor of ``lb_id``'s HAProxy (heartbeats read its stats socket)."""
        return self._haproxy(lb_id)

    async def _reset_ahead(self, haproxy: Haproxy) -> None:
        if self.before_reset is not None and haproxy.running:
            try:
                await self.before_reset(haproxy.files.lb_id)
            except Exception:  # counting must never block a reload or a stop
                logger.exception("lb %s: reading counters before a reset failed", haproxy.files.lb_id)

    @staticmethod
    async def _shielded(coro: Awaitable[T]) -> T:
        return await asyncio.shield(asyncio.ensure_future(coro))

    async def start(self) -> None:
        """Learn HAProxy's version, then bring back every load balancer that was running before."""
        code, output = await run(self._reaper, [self._options.binary, "-v"], 10.0)
        self.haproxy_version = hacli.parse_version(output) if code == 0 else "unknown"
        for lb_id in self._store.load_balancer_ids():
            files = self._store.files(lb_id)
            haproxy = self._haproxy(lb_id)
            if files.desired.exists() and files.config.exists():
                try:
                    async with haproxy.lock:
                        await haproxy.start()
                except HaproxyError as exc:
                    logger.error("lb %s: could not resume: %s", lb_id, exc)
            else:
                self._terminate_orphan(haproxy)

    def _terminate_orphan(self, haproxy: Haproxy) -> None:
        # An HAProxy a crashed agent left running for a load balancer that was stopped since.
        orphan = haproxy.orphan_pid()
        if orphan:
            logger.warning("lb %s: stopping orphaned haproxy %d", haproxy.files.lb_id, orphan)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(orphan, signal.SIGTERM)
        remove(haproxy.files.pidfile)

    async def shutdown(self, *, reap_all: bool = True) -> None:
        """Stop every HAProxy (keeping the wish to run it, for the next agent start) and reap everything.

        ``reap_all`` waits until the process has no child at all: not in an amphora host, whose other
        amphorae's HAProxy processes are its children too."""
        await asyncio.gather(*(self._stop_kept(h) for h in self._haproxies.values()))
        if reap_all and not await self._reaper.wait_all(5.0):
            logger.warning("children still running after shutdown")

    def abandon(self, sig: int = signal.SIGKILL) -> None:
        """Signal every HAProxy of this amphora with ``sig`` and supervise them no more (see
        :meth:`Haproxy.abandon`): an amphora host fencing or retiring one of its amphorae."""
        for haproxy in self._haproxies.values():
            haproxy.abandon(sig)

    async def _stop_kept(self, haproxy: Haproxy) -> None:
        async with haproxy.lock:
            await self._reset_ahead(haproxy)
            await haproxy.stop(forget=False)

    def load_balancer_ids(self) -> list[str]:
        return self._store.load_balancer_ids()

    async def put_config(self, lb_id: str, config: bytes) -> tuple[str, list[str]]:
        """Validate and stage a configuration; its SHA-256 and HAProxy's warnings."""
        return await self._shielded(self._put_config(lb_id, config))

    async def _put_config(self, lb_id: str, config: bytes) -> tuple[str, list[str]]:
        haproxy = self._haproxy(lb_id)
        async with haproxy.lock:
            fresh = not haproxy.files.exists()
            haproxy.files.ensure()
            try:
                warnings = await haproxy.validate(config)
            except HaproxyError:
                if fresh:
                    haproxy.files.remove_all()
                raise
        return sha256(config), warnings

    async def put_certificate(self, lb_id: str, name: str, pem: bytes) -> tuple[Path, str]:
        if len(pem) > MAX_PEM_BYTES:
            raise ValueError(f"pem is larger than {MAX_PEM_BYTES} bytes")
        if name.endswith(".crt-list"):
            # A crt-list names PEM files of this load balancer, one per line, the first being the default.
            if not all(line.startswith(b"/") and b" " not in line for line in pem.splitlines() if line):
                raise ValueError("a crt-list holds one absolute certificate path per line")
        elif b"-----BEGIN " not in pem:
            raise ValueError("pem holds no PEM block")
        haproxy = self._haproxy(lb_id)
        async with haproxy.lock:
            path = haproxy.files.put_certificate(name, pem)
        return path, sha256(pem)

    async def delete_certificate(self, lb_id: str, name: str, allow_missing: bool) -> None:
        haproxy = self._haproxy(lb_id)
        async with haproxy.lock:
            if not remove(haproxy.files.certificate(name)) and not allow_missing:
                raise NotFound(f"no certificate {name!r} for load balancer {lb_id}")

    async def activate(self, lb_id: str) -> tuple[bool, ProcessInfo]:
        """Make the staged configuration active and serve it; whether HAProxy was reloaded (not started)."""
        return await self._shielded(self._activate(lb_id))

    async def _activate(self, lb_id: str) -> tuple[bool, ProcessInfo]:
        haproxy = self._haproxy(lb_id)
        files = haproxy.files
        async with haproxy.lock:
            previous = files.config.read_bytes() if files.config.exists() else None
            promoted = files.staged.exists()
            if promoted:
                os.replace(files.staged, files.config)
            elif previous is None:
                raise NotConfigured(f"load balancer {lb_id} has no configuration: PutConfig first")
            reloaded = haproxy.running
            await self._reset_ahead(haproxy)
            try:
                await (haproxy.reload() if reloaded else haproxy.start())
            except HaproxyError:
                if promoted:
                    # Keep what runs (and what a restart after a crash would load) the last good
                    # configuration; the refused one stays staged for a retry.
                    os.replace(files.config, files.staged)
                    if previous is not None:
                        files.config.write_bytes(previous)
                raise
            return reloaded, await haproxy.info()

    async def start_haproxy(self, lb_id: str) -> ProcessInfo:
        return await self._shielded(self._start_haproxy(lb_id))

    async def _start_haproxy(self, lb_id: str) -> ProcessInfo:
        haproxy = self._haproxy(lb_id)
        files = haproxy.files
        async with haproxy.lock:
            if not haproxy.running:
                if not files.config.exists():
                    if not files.staged.exists():
                        raise NotConfigured(f"load balancer {lb_id} has no configuration: PutConfig first")
                    os.replace(files.staged, files.config)
                await haproxy.start()
            return await haproxy.info()

    async def stop_haproxy(self, lb_id: str) -> ProcessInfo:
        return await self._shielded(self._stop_haproxy(lb_id))

    async def _stop_haproxy(self, lb_id: str) -> ProcessInfo:
        haproxy = self._haproxy(lb_id)
        async with haproxy.lock:
            await self._reset_ahead(haproxy)
            await haproxy.stop()
            return await haproxy.info()

    async def status(self, lb_id: str) -> Status:
        haproxy = self._haproxy(lb_id)
        if not haproxy.files.exists() and not haproxy.running:
            raise NotFound(f"no load balancer {lb_id} on this amphora")
        rows: list[dict[str, str]] = []
        with contextlib.suppress(hacli.CliError):
            rows = await haproxy.show_stat()
        return Status(await haproxy.info(), rows)

    async def delete(self, lb_id: str, allow_missing: bool) -> None:
        await self._shielded(self._delete(lb_id, allow_missing))

    async def _delete(self, lb_id: str, allow_missing: bool) -> None:
        haproxy = self._haproxy(lb_id)
        async with haproxy.lock:
            if not haproxy.files.exists() and not haproxy.running:
                if allow_missing:
                    return
                raise NotFound(f"no load balancer {lb_id} on this amphora")
            await haproxy.stop()
            # The supervisor object stays, so that calls queued on its lock meanwhile use the same one.
            haproxy.files.remove_all()
            if self.forgotten is not None:
                self.forgotten(lb_id)
