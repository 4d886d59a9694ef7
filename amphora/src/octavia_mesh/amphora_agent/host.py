"""The amphora host: one process that serves many local amphorae, each exactly as its own agent would.

An agent process costs ~25 MiB of private memory (the interpreter, asyncio with ssl, grpc, the protos) and
eight gRPC threads before it does anything, so a thousand amphorae as processes do not fit a small machine.
The host pays that once. Inside it every amphora is a :class:`Unit` with everything of its own that the
worker and the health service can see or that isolates tenants:

* its own mutual-TLS gRPC server on its own port, presenting its own certificate (``amphora-<id>``, which the
  worker verifies), with its own ``grpc.health.v1`` and its own certificate rotation;
* its own heartbeats to the health service: by default in the host's batched call (``hostbeats.py``: one
  message per interval for all amphorae, which is what a health replica's rate is bounded by), where it joins
  with its own certificate and a proof signed with its own key; with ``--heartbeats per-amphora``, a call of
  its own presented with its own certificate;
* its own state directory (configurations, certificates, sockets) and its own HAProxy processes, each in a
  process group of its own, supervised (restarted, reloaded) by the unit's own :class:`Agent`.

What the units share is the interpreter, the event loop, gRPC's threads and one :class:`ChildReaper` (one
``waitpid(-1)`` loop must reap every child of a process). SINGLE amphorae only: ACTIVE_STANDBY amphorae need
network namespaces of their own and stay agent processes.

**Control.** The local compute driver talks to the host over a unix socket (mode 0600, in the host's
directory): one JSON object per connection, one JSON answer (``{"ok": true, ...}`` or ``{"ok": false,
"error": ...}``). ``start`` takes the agent's own command-line flags (``argv``), so a unit is configured
exactly as an agent process would be; ``stop`` stops one gracefully (as SIGTERM stops an agent); ``kill``
fences one (its HAProxy groups SIGKILLed, its server and heartbeats gone at once: to the health service a
broken stream, as when an agent dies); ``retire`` is ``kill`` with a soft-stop (SIGUSR1) of HAProxy, whose
requests in flight finish; ``status`` and ``list`` say what runs.

**Lifetime.** The driver starts the host detached from the worker, like an agent, so amphorae outlive the
control plane; a restarted worker reaches the same host through the socket. SIGTERM stops every unit
gracefully. The host is one failure domain, as a hypervisor is: if it dies, its amphorae are failed over.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpc_health.v1 import health_pb2

from octavia_mesh.amphora_agent import settings as agent_settings
from octavia_mesh.amphora_agent.agent import Agent
from octavia_mesh.amphora_agent.counters import CounterLedger
from octavia_mesh.amphora_agent.heartbeat import HeartbeatSender, Sampler
from octavia_mesh.amphora_agent.hostbeats import HostHeartbeats, Target
from octavia_mesh.amphora_agent.reaper import ChildReaper
from octavia_mesh.amphora_agent.server import SERVICE_NAME, create_server, haproxy_options, identity_of
from octavia_mesh.amphora_agent.settings import AgentSettings
from octavia_mesh.amphora_agent.store import Store

logger = logging.getLogger(__name__)

#: The largest control request the host reads (a start's flags are well under 4 KiB).
MAX_REQUEST = 64 * 1024
#: The control socket's name in the host's directory.
SOCKET_NAME = "control.sock"


class ControlError(Exception):
    """A control request the host refuses; its message is the answer's ``error``."""


class Unit:
    """One amphora inside the host: an :class:`Agent`, its gRPC server and its heartbeat stream."""

    def __init__(self, settings: AgentSettings, reaper: ChildReaper, batches: HostHeartbeats | None = None) -> None:
        self.settings = settings
        self.agent = Agent(Store(settings.state_path), reaper, haproxy_options(settings))
        self.port = 0
        self._server: Any = None
        self._health: Any = None
        self._heartbeats: asyncio.Task[None] | None = None
        #: The host's batched call this amphora reports on (None: a call of its own).
        self._batches = batches

    async def start(self) -> None:
        """Resume what ran before (as an agent does at start-up), then serve and stream heartbeats."""
        settings = self.settings
        settings.state_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.agent.start()
        identity = identity_of(settings)
        if settings.health_endpoints:
            sampler = Sampler(self.agent, CounterLedger(settings.state_path / "counters.json"))
            self.agent.before_reset, self.agent.forgotten = sampler.before_reset, sampler.forget
            if self._batches is not None:
                self._batches.add(settings.amphora_id, sampler, identity)
            else:
                sender = HeartbeatSender(settings, sampler, identity)
                self._heartbeats = asyncio.create_task(sender.run(), name=f"heartbeats-{settings.amphora_id}")
        # No keepalived: a unit is a SINGLE amphora (its VRRP calls answer that it has none).
        self._server, self.port, self._health = create_server(settings, self.agent, identity, None)
        await self._server.start()
        await self._set_health(True)
        logger.info("amphora %s serving on port %d", settings.amphora_id, self.port)

    async def _set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)

    async def _end_heartbeats(self) -> None:
        # Cancelled, the call ends without a "closing" message: the health service takes the amphora for
        # dead, exactly as when an agent process exits or is killed (on a batched call: named lost at once).
        if self._batches is not None:
            self._batches.remove(self.settings.amphora_id)
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeats

    async def stop(self) -> None:
        """Stop as an agent stops on SIGTERM: heartbeats, then the server (in-flight calls get the grace
        time), then HAProxy (its wish to run kept)."""
        await self._end_heartbeats()
        if self._server is not None:
            await self._set_health(False)
            await self._server.stop(self.settings.grace_s)
        await self.agent.shutdown(reap_all=False)

    async def abandon(self, sig: int) -> None:
        """Fence (SIGKILL) or retire (SIGUSR1) the amphora: HAProxy is signalled first, then the server and
        the heartbeats end at once; nothing is restarted."""
        self.agent.abandon(sig)
        await self._end_heartbeats()
        if self._server is not None:
            await self._server.stop(0)


@dataclass(frozen=True, slots=True)
class HostSettings:
    """Settings of the amphora host (flags only: it is started by the local compute driver)."""

    home: Path
    log_level: str = "INFO"
    #: ``batched`` (one call for all amphorae) or ``per-amphora`` (a call each, as agent processes have).
    heartbeats: str = "batched"


class AmphoraHost:
    """The units of this process, by amphora id, and the control socket that starts and stops them."""

    def __init__(self, home: Path, reaper: ChildReaper, batched: bool = True) -> None:
        self._home = home
        self._reaper = reaper
        self._units: dict[str, Unit] = {}
        # One batched heartbeat call per place the amphorae report to (all of them, from one worker).
        self._batched = batched
        self._batches: dict[Target, HostHeartbeats] = {}
        # One lock per amphora id: a kill never interleaves with the same amphora's start.
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def socket_path(self) -> Path:
        return self._home / SOCKET_NAME

    def _lock(self, amphora_id: str) -> asyncio.Lock:
        return self._locks.setdefault(amphora_id, asyncio.Lock())

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request (see the module docstring)."""
        op = request.get("op")
        if op == "list":
            return {"ok": True, "amphorae": sorted(self._units)}
        if op == "start":
            argv = request.get("argv")
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise ControlError("start needs argv, a list of the agent's flags")
            return await self._start(argv)
        amphora_id = request.get("amphora_id")
        if not isinstance(amphora_id, str) or not amphora_id:
            raise ControlError(f"{op!r} needs an amphora_id")
        if op == "status":
            unit = self._units.get(amphora_id)
            return {"ok": True, "running": unit is not None, "port": unit.port if unit else 0}
        signals = {"kill": signal.SIGKILL, "retire": signal.SIGUSR1}
        if op == "stop" or op in signals:
            async with self._lock(amphora_id):
                unit = self._units.pop(amphora_id, None)
                if unit is not None:
                    await (unit.stop() if op == "stop" else unit.abandon(signals[op]))
                    logger.info("amphora %s: %s", amphora_id, {"stop": "stopped", "kill": "fenced"}.get(op, "retired"))
            self._locks.pop(amphora_id, None)
            return {"ok": True, "found": unit is not None}
        raise ControlError(f"unknown op {op!r}")

    async def _start(self, argv: list[str]) -> dict[str, Any]:
        try:
            # The flags alone: the host's own environment must not configure its amphorae.
            settings = agent_settings.load(argv, environ={})
        except (ValueError, TypeError, OSError, SystemExit) as exc:
            raise ControlError(f"bad settings: {exc}") from None
        async with self._lock(settings.amphora_id):
            unit = self._units.get(settings.amphora_id)
            if unit is None:
                unit = Unit(settings, self._reaper, self._batches_for(settings))
                try:
                    await unit.start()
                except Exception as exc:
                    await unit.abandon(signal.SIGKILL)
                    raise ControlError(f"amphora {settings.amphora_id} did not start: {exc}") from None
                self._units[settings.amphora_id] = unit
            return {"ok": True, "port": unit.port}

    def _batches_for(self, settings: AgentSettings) -> HostHeartbeats | None:
        if not self._batched or not settings.health_endpoints:
            return None
        target = Target(
            settings.health_endpoints,
            Path(settings.health_ca or settings.client_ca).read_bytes(),
            settings.health_identity,
            settings.heartbeat_interval_s,
        )
        batches = self._batches.get(target)
        if batches is None:
            batches = self._batches[target] = HostHeartbeats(target, f"{self._home}:{len(self._batches)}")
        return batches

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = await reader.readline()
            if len(raw) > MAX_REQUEST:
                raise ControlError("request too long")
            request = json.loads(raw)
            if not isinstance(request, dict):
                raise ControlError("a request is a JSON object")
            answer = await self.handle(request)
        except (ValueError, ControlError) as exc:
            answer = {"ok": False, "error": str(exc)}
        except Exception as exc:  # the host must outlive any bad request
            logger.exception("control request failed")
            answer = {"ok": False, "error": f"internal error: {exc}"}
        with contextlib.suppress(OSError):
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
            writer.close()

    async def serve(self) -> None:
        """Answer control requests until SIGTERM or SIGINT, then stop every unit gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.socket_path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._client, path=str(self.socket_path), limit=MAX_REQUEST)
        logger.info("amphora host %d listening on %s", os.getpid(), self.socket_path)
        try:
            await stop.wait()
        finally:
            server.close()
            logger.info("stopping %d amphorae", len(self._units))
            await asyncio.gather(*(unit.stop() for unit in self._units.values()), return_exceptions=True)
            self._units.clear()
            await asyncio.gather(*(batches.stop() for batches in self._batches.values()), return_exceptions=True)
            self.socket_path.unlink(missing_ok=True)
        logger.info("stopped")


async def run(settings: HostSettings) -> None:
    os.umask(0o077)  # sockets, configurations and keys are the host's alone, as an agent's are
    reaper = ChildReaper()
    reaper.install()
    try:
        await AmphoraHost(settings.home, reaper, batched=settings.heartbeats == "batched").serve()
        if not await reaper.wait_all(5.0):
            logger.warning("children still running after shutdown")
    finally:
        reaper.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="octavia-mesh-amphora-host", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--home", required=True, help="the host's directory (its control socket lives there)")
    parser.add_argument("--log-level", default="INFO", help="logging level")
    parser.add_argument(
        "--heartbeats",
        choices=("batched", "per-amphora"),
        default="batched",
        help="one batched call for every amphora of the host (default), or a call per amphora",
    )
    args = parser.parse_args(argv)
    settings = HostSettings(home=Path(args.home).resolve(), log_level=args.log_level, heartbeats=args.heartbeats)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("grpc").setLevel(max(logging.getLogger().level, logging.INFO))
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
