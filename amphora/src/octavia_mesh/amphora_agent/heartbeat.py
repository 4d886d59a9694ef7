"""Heartbeats: the agent's stream of health and statistics to the health service.

The agent keeps one ``octavia_mesh.health.v1.AmphoraHealth/StreamHeartbeats`` call open over mutual TLS,
presenting its own amphora certificate (after a rotation the call is closed and opened again with the new
one, which the health service then requires), and sends a heartbeat every interval: per load balancer,
whether HAProxy runs, each frontend's status and counters, each backend's and server's status, read from
the stats socket. The service's acknowledgements carry the interval it wants, and how often it acknowledges
(one acknowledgement per ack interval, not per heartbeat). When a call fails (the replica went away, or no
acknowledgement came for a few intervals) the agent moves to the next replica of its list after a short
backoff, so several replicas share the amphorae and take over each other's.

Counters come from :class:`~octavia_mesh.amphora_agent.counters.CounterLedger`: totals since the amphora
was created, never going backwards across HAProxy reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import logging
import random
import time
from pathlib import Path

import grpc
from google.protobuf import timestamp_pb2

from octavia_mesh.amphora_agent import hacli
from octavia_mesh.amphora_agent.agent import Agent
from octavia_mesh.amphora_agent.counters import FIELDS, CounterLedger
from octavia_mesh.amphora_agent.identity import AgentIdentity
from octavia_mesh.amphora_agent.settings import AgentSettings
from octavia_mesh.protos.health.v1 import health_pb2, health_pb2_grpc

logger = logging.getLogger(__name__)

#: Shortest and longest pause before reconnecting after a failed call.
BACKOFF_S = (0.05, 2.0)
#: A call that lived this long was healthy: the next failure starts the backoff from the shortest pause again.
STABLE_S = 10.0
#: No acknowledgement for this many intervals, this many ack intervals (the service acknowledges about once
#: per ack interval) and at least ``SILENCE_MIN_S`` means the replica is gone.
SILENCE_INTERVALS = 4
SILENCE_ACKS = 3
SILENCE_MIN_S = 3.0
#: How long the agent tries to tell the service that it ends a call on purpose.
FAREWELL_S = 0.5


def _int(row: dict[str, str], key: str) -> int:
    value = row.get(key) or ""
    return int(value) if value.isdigit() else 0


def parse_sample(text: str) -> tuple[int, list[dict[str, str]]]:
    """The worker pid and the ``show stat`` rows from the answer to ``show info;show stat``."""
    pid = 0
    start = text.find("# pxname")
    for line in text[: start if start >= 0 else len(text)].splitlines():
        key, _, value = line.partition(":")
        if key == "Pid" and value.strip().isdigit():
            pid = int(value.strip())
    if start < 0:
        raise hacli.CliError(f"unexpected 'show info;show stat' answer: {text[:80]!r}")
    return pid, list(csv.DictReader(io.StringIO(text[start + 2 :])))


def build_report(
    lb_id: str, running: bool, rows: list[dict[str, str]], ledger: CounterLedger
) -> health_pb2.LoadBalancerReport:
    """One load balancer's report from its ``show stat`` rows (``type`` 0/1/2 = frontend/backend/server)."""
    report = health_pb2.LoadBalancerReport(load_balancer_id=lb_id, running=running)
    pools: dict[str, health_pb2.PoolReport] = {}
    for row in rows:
        name, kind = row.get("pxname", ""), row.get("type", "")
        if kind == "0":
            totals = dict(zip(FIELDS, ledger.totals(lb_id, name), strict=True))
            report.listeners.append(
                health_pb2.ListenerReport(
                    name=name,
                    status=row.get("status", ""),
                    counters=health_pb2.ListenerCounters(
                        bytes_in=totals["bin"],
                        bytes_out=totals["bout"],
                        active_connections=_int(row, "scur"),
                        total_connections=totals["stot"],
                        request_errors=totals["ereq"],
                    ),
                )
            )
            continue
        pool = pools.get(name)
        if pool is None:
            pool = pools[name] = report.pools.add(name=name)
        if kind == "1":
            pool.status = row.get("status", "")
        elif kind == "2":
            pool.members.add(name=row.get("svname", ""), status=row.get("status", ""))
    return report


class Sampler:
    """Reads every load balancer's HAProxy and keeps the counter ledger up to date."""

    def __init__(self, agent: Agent, ledger: CounterLedger) -> None:
        self._agent = agent
        self._ledger = ledger
        #: How long one read of a stats socket may take. The heartbeat sender shortens it to 1.5 intervals: a
        #: heartbeat held up longer by a slow HAProxy would look like a hung agent to the health service.
        self.timeout_s = 2.0

    async def _read(self, lb_id: str) -> tuple[int, list[dict[str, str]]] | None:
        supervisor = self._agent.supervisor(lb_id)
        if not supervisor.running:
            return None
        try:
            answer = await hacli.command(supervisor.files.stats_socket, "show info;show stat", self.timeout_s)
            return parse_sample(answer)
        except hacli.CliError as exc:
            logger.debug("lb %s: no stats: %s", lb_id, exc)
            return None

    def _observe(self, lb_id: str, pid: int, rows: list[dict[str, str]]) -> None:
        current = {r["pxname"]: tuple(_int(r, f) for f in FIELDS) for r in rows if r.get("type") == "0"}
        self._ledger.observe(lb_id, pid, current)

    async def before_reset(self, lb_id: str) -> None:
        """Called by the agent right before it reloads or stops ``lb_id``'s HAProxy: count up to this moment."""
        sample = await self._read(lb_id)
        if sample is not None:
            self._observe(lb_id, *sample)
        # A heartbeat read that started before the reload must not be observed after it.
        self._ledger.bump(lb_id)
        self._ledger.save()

    def forget(self, lb_id: str) -> None:
        self._ledger.forget(lb_id)
        self._ledger.save()

    async def reports(self) -> list[health_pb2.LoadBalancerReport]:
        lb_ids = self._agent.load_balancer_ids()
        reports = []
        for lb_id in lb_ids:
            generation = self._ledger.generation(lb_id)
            sample = await self._read(lb_id)
            rows: list[dict[str, str]] = []
            if sample is not None:
                pid, rows = sample
                if self._ledger.generation(lb_id) == generation:
                    self._observe(lb_id, pid, rows)
            reports.append(build_report(lb_id, sample is not None, rows, self._ledger))
        self._ledger.keep_only(set(lb_ids))
        self._ledger.save()
        return reports


def channel_options(target_name: str) -> list[tuple[str, str | int]]:
    """The options of a heartbeat call's channel to a replica that presents ``target_name``."""
    return [
        ("grpc.ssl_target_name_override", target_name),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        # A subchannel of our own: the process-wide pool would keep the failed one's reconnect backoff (up to
        # two minutes), so a restarted health replica would not hear from us for that long.
        ("grpc.use_local_subchannel_pool", 1),
        # Heartbeats are small: no bandwidth-delay probing pings (each costs both ends a frame written).
        ("grpc.http2.bdp_probe", 0),
    ]


class Pace:
    """What a heartbeat call's acknowledgements said (the interval the service wants, how often it
    acknowledges) and when the last one came: a replica silent for :meth:`silence_s` is taken for gone."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.ack_interval_s = 0.0  # as the last acknowledgement said (0: every heartbeat is acknowledged)
        self.last_ack = time.monotonic()
        self.connected_to = ""  # the replica of the open call, for logs and tests

    def opened(self) -> None:
        self.last_ack, self.connected_to = time.monotonic(), ""

    def heard(
        self, ack: health_pb2.StreamHeartbeatsResponse | health_pb2.StreamHostHeartbeatsResponse, endpoint: str
    ) -> None:
        self.last_ack = time.monotonic()
        if not self.connected_to:
            self.connected_to = endpoint
            logger.info("streaming heartbeats to %s", endpoint)
        wanted = ack.interval.ToTimedelta().total_seconds()
        if wanted > 0:
            self.interval_s = wanted
        self.ack_interval_s = max(0.0, ack.ack_interval.ToTimedelta().total_seconds())

    def silence_s(self) -> float:
        return max(SILENCE_INTERVALS * self.interval_s, SILENCE_ACKS * self.ack_interval_s, SILENCE_MIN_S)

    def silent(self) -> bool:
        return time.monotonic() - self.last_ack > self.silence_s()


def _first_endpoint(amphora_id: str, count: int) -> int:
    # Spread amphorae over the replicas, the same way at every start.
    return int(hashlib.sha256(amphora_id.encode()).hexdigest()[:8], 16) % count


class HeartbeatSender:
    """Streams heartbeats to the health service replicas in ``settings.health_endpoints``, forever."""

    def __init__(self, settings: AgentSettings, sampler: Sampler, identity: AgentIdentity) -> None:
        self._settings = settings
        self._sampler = sampler
        self._identity = identity
        self._rotated = asyncio.Event()
        identity.on_change(self._rotated.set)
        self.pace = Pace(settings.heartbeat_interval_s)

    def _credentials(self) -> grpc.ChannelCredentials:
        s = self._settings
        return grpc.ssl_channel_credentials(
            root_certificates=Path(s.health_ca or s.client_ca).read_bytes(),
            private_key=self._identity.private_key,
            certificate_chain=self._identity.certificate,
        )

    async def run(self) -> None:
        endpoints = self._settings.health_endpoints
        index = _first_endpoint(self._settings.amphora_id, len(endpoints))
        backoff = BACKOFF_S[0]
        while True:
            endpoint = endpoints[index % len(endpoints)]
            began = time.monotonic()
            try:
                if await self._stream(endpoint):
                    continue  # a rotated certificate: the same replica again, with the new one, at once
            except grpc.aio.AioRpcError as exc:
                level = logging.WARNING if exc.code() == grpc.StatusCode.PERMISSION_DENIED else logging.INFO
                logger.log(level, "heartbeats to %s ended: %s %s", endpoint, exc.code().name, exc.details())
            except (OSError, TimeoutError, asyncio.InvalidStateError) as exc:
                # InvalidStateError: a write raced the call's failure ("RPC already finished").
                logger.info("heartbeats to %s ended: %s", endpoint, exc)
            except Exception:
                # The sender must outlive any surprise: an agent that stops reporting gets failed over.
                logger.exception("heartbeats to %s failed", endpoint)
            self.pace.connected_to = ""
            if time.monotonic() - began > STABLE_S:
                backoff = BACKOFF_S[0]
            index += 1
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, BACKOFF_S[1])

    async def _stream(self, endpoint: str) -> bool:
        """Stream to ``endpoint`` until the call ends (False) or the certificate was rotated (True)."""
        self._rotated.clear()
        options = channel_options(self._settings.health_identity)
        async with grpc.aio.secure_channel(endpoint, self._credentials(), options=options) as channel:
            call = health_pb2_grpc.AmphoraHealthStub(channel).StreamHeartbeats()
            pace = self.pace
            pace.opened()

            async def read_acks() -> None:
                while (ack := await call.read()) is not grpc.aio.EOF:  # pyright: ignore[reportAttributeAccessIssue]
                    pace.heard(ack, endpoint)

            reader = asyncio.create_task(read_acks())
            rotated = asyncio.create_task(self._rotated.wait())
            try:
                sequence = 0
                while not reader.done():
                    if rotated.done():
                        logger.info("certificate rotated: reconnecting to %s", endpoint)
                        await self._farewell(call, sequence + 1)
                        return True
                    sequence += 1
                    await call.write(await self._heartbeat(sequence))
                    if pace.silent():
                        await self._farewell(call, sequence + 1)
                        raise TimeoutError(f"no acknowledgement for {pace.silence_s():g}s")
                    await asyncio.wait([reader, rotated], timeout=pace.interval_s, return_when=asyncio.FIRST_COMPLETED)
                await reader  # raises the call's error, if it ended with one
                return False
            finally:
                for task in (reader, rotated):
                    task.cancel()
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await reader

    async def _farewell(self, call: grpc.aio.StreamStreamCall, sequence: int) -> None:
        """Say that this end is on purpose: a call that just breaks is taken for this amphora's death, which
        the health service fails over within a second."""
        with contextlib.suppress(Exception):
            farewell = health_pb2.StreamHeartbeatsRequest(
                amphora_id=self._settings.amphora_id, sequence=sequence, closing=True
            )
            await asyncio.wait_for(call.write(farewell), FAREWELL_S)
            await asyncio.wait_for(call.done_writing(), FAREWELL_S)

    async def _heartbeat(self, sequence: int) -> health_pb2.StreamHeartbeatsRequest:
        self._sampler.timeout_s = max(0.25, min(2.0, 1.5 * self.pace.interval_s))
        stamp = timestamp_pb2.Timestamp()
        stamp.GetCurrentTime()
        return health_pb2.StreamHeartbeatsRequest(
            amphora_id=self._settings.amphora_id,
            sequence=sequence,
            sample_time=stamp,
            load_balancers=await self._sampler.reports(),
        )
