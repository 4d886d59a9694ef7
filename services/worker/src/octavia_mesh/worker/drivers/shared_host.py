"""Local amphorae served by one shared amphora host process (``local_amphorae = "shared"``).

A local amphora is normally an agent process of its own (~25 MiB each: a thousand do not fit a small
machine). In shared mode the driver starts one *amphora host* (``python -m octavia_mesh.amphora_agent.host``)
and asks it over its control socket to serve each new SINGLE amphora: the same agent flags, the same home
directory, its own port, certificate, heartbeat stream, state directory and HAProxy processes, so the worker
and the health service cannot tell it from an agent process (see ``amphora_agent/host.py``).

* The host is launched like an agent (``spawn_detached``: a session of its own, reparented to init), into
  ``<base>/.host``, so it outlives the worker and ``octavia-mesh up``; a restarted worker reaches the same
  host through ``<base>/.host/control.sock``.
* An amphora's home records the host's pid and start time as its ``agent.pid`` / ``agent.start`` (the process
  that serves it), and the host is asked whether the amphora itself still runs.
* Fencing asks the host to kill that amphora (HAProxy SIGKILLed, server and heartbeats gone), then kills any
  process left that names the amphora's home, exactly as for an agent process; retiring a live amphora
  soft-stops its HAProxy instead, which drains. Neither touches the other amphorae of the host.
* ACTIVE_STANDBY amphorae (namespaced instances) stay agent processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from octavia_mesh.worker.drivers.compute import (
    Instance,
    InstanceSpec,
    kill_everything_under,
    spawn_detached,
    stop_leftovers,
)
from octavia_mesh.worker.drivers.namespaces import NamespaceComputeDriver, NamespacedInstanceSpec

logger = logging.getLogger(__name__)

#: The host's directory under the driver's base (a dot name: never taken for an amphora's home).
HOST_DIR = ".host"
#: How long a new host may take to open its control socket.
HOST_START_S = 30.0
#: How long one control request may take (a start runs ``haproxy -v`` and binds a TLS server).
CONTROL_TIMEOUT_S = 60.0


class HostUnavailable(RuntimeError):
    """The amphora host does not answer on its control socket."""


class SharedHostComputeDriver(NamespaceComputeDriver):
    """The namespace driver, with SINGLE amphorae served by one shared amphora host process."""

    def __init__(self, base_dir: Path, **kwargs: Any) -> None:
        super().__init__(base_dir, **kwargs)
        self._host_home = self._base / HOST_DIR
        self._host_lock = asyncio.Lock()

    @property
    def _socket(self) -> Path:
        return self._host_home / "control.sock"

    # -- the host -----------------------------------------------------------------------------------

    async def _request(self, request: dict[str, Any], timeout: float = CONTROL_TIMEOUT_S) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(str(self._socket), limit=1 << 20)
                try:
                    writer.write(json.dumps(request).encode() + b"\n")
                    await writer.drain()
                    raw = await reader.readline()
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            raise HostUnavailable(f"amphora host at {self._socket}: {exc or type(exc).__name__}") from None
        if not raw:
            raise HostUnavailable(f"amphora host at {self._socket} closed the connection")
        answer = json.loads(raw)
        if not answer.get("ok"):
            raise RuntimeError(f"amphora host refused {request.get('op')}: {answer.get('error')}")
        return dict(answer)

    def _host_pid(self) -> int | None:
        return self._pid(self._host_home)

    async def _ensure_host(self) -> None:
        """Start the host unless it runs; wait until its control socket answers."""
        async with self._host_lock:
            if self._host_pid() is not None:
                with contextlib.suppress(HostUnavailable):
                    await self._request({"op": "list"}, timeout=10.0)
                    return
            self._host_home.mkdir(parents=True, exist_ok=True, mode=0o700)
            # A machine-wide lock on the directory: two workers of one mesh never start two hosts.
            fd = os.open(self._host_home / "start.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
                if self._host_pid() is None:
                    argv = [self._python, "-m", "octavia_mesh.amphora_agent.host", "--home", str(self._host_home)]
                    argv[0] = shutil.which(argv[0]) or argv[0]
                    self._socket.unlink(missing_ok=True)
                    pid = await spawn_detached(argv, self._host_home)
                    logger.info("amphora host %d started in %s", pid, self._host_home)
                deadline = time.monotonic() + HOST_START_S
                while True:
                    try:
                        await self._request({"op": "list"}, timeout=5.0)
                        return
                    except HostUnavailable:
                        if time.monotonic() > deadline or self._host_pid() is None:
                            raise HostUnavailable(
                                f"the amphora host did not start (see {self._host_home / 'agent.log'})"
                            ) from None
                        await asyncio.sleep(0.05)
            finally:
                os.close(fd)

    def _shared(self, home: Path) -> bool:
        """Whether the amphora in ``home`` is one of the host's (not an agent process of its own)."""
        return (home / "host.served").exists()

    # -- ComputeDriver --------------------------------------------------------------------------------

    async def create_instance(self, spec: InstanceSpec) -> Instance:
        if isinstance(spec, NamespacedInstanceSpec):
            return await super().create_instance(spec)
        existing = await self.get_instance(spec.amphora_id)
        if existing is not None:
            return existing
        await self._ensure_host()
        home = self._prepare_home(spec)
        address = await self._place(spec, home)
        argv = [*self._agent_flags(spec, home), "--listen", address]
        (home / "agent.address").write_text(address)
        (home / "host.served").write_text(str(self._host_home))
        await self._request({"op": "start", "argv": argv})
        # The process that serves the amphora, as the launcher records an agent's: liveness and adoption work
        # unchanged (get_instance asks the host about the amphora itself too).
        for name in ("agent.start", "agent.pid"):
            shutil.copyfile(self._host_home / name, home / f"{name}.tmp")
            os.replace(home / f"{name}.tmp", home / name)
        return Instance(compute_id=spec.amphora_id, management_address=address)

    async def get_instance(self, compute_id: str) -> Instance | None:
        instance = await super().get_instance(compute_id)
        home = self._dir(compute_id)
        if instance is None or not self._shared(home):
            return instance
        try:
            running = (await self._request({"op": "status", "amphora_id": compute_id}, timeout=10.0))["running"]
        except HostUnavailable:
            return instance  # a slow host is not a lost amphora: the heartbeats say whether it serves
        return instance if running else None

    async def delete_instance(self, compute_id: str) -> None:
        home = self._dir(compute_id)
        if not self._shared(home):
            await super().delete_instance(compute_id)
            return
        # Retire: the host soft-stops its HAProxy (requests in flight finish while a replacement on the same
        # VIP takes the new connections) and ends its server and heartbeats; what drains is waited for here.
        with contextlib.suppress(HostUnavailable):
            await self._request({"op": "retire", "amphora_id": compute_id})
        await stop_leftovers(home)
        shutil.rmtree(home, ignore_errors=True)

    async def fence_instance(self, compute_id: str, timeout_s: float = 5.0) -> None:
        home = self._dir(compute_id)
        if not self._shared(home):
            await super().fence_instance(compute_id, timeout_s)
            return
        try:
            await self._request({"op": "kill", "amphora_id": compute_id}, timeout=timeout_s)
            asked = True
        except HostUnavailable as exc:
            # A slow or hung host: its HAProxy dies below at once, and the host is asked again after.
            logger.warning("fencing amphora %s without its host for now: %s", compute_id, exc)
            asked = False
        await kill_everything_under(home, compute_id, timeout_s)
        if not asked:
            # Its server and heartbeats must stop too (a fenced amphora that keeps calling in would be refused
            # forever): the host is given the full control timeout now that the data plane is down.
            try:
                await self._request({"op": "kill", "amphora_id": compute_id})
            except HostUnavailable as exc:
                logger.error("amphora %s: its host did not stop its server and heartbeats: %s", compute_id, exc)
        shutil.rmtree(home, ignore_errors=True)

    async def list_instances(self) -> list[str]:
        return [name for name in await super().list_instances() if not name.startswith(".")]
