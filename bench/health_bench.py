"""Health-plane benchmark: heartbeats ingested per second, and per CPU-second, many amphorae streaming over mTLS.

    uv run python bench/health_bench.py [--amphorae 10000] [--interval 0.5] [--seconds 10] [--clients 2]
        [--replicas 1] [--traffic 1.0] [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--modes batched,unbatched,no database] [--ack-intervals 1] [--profile DIR [--native]]

Health services (the real heartbeat plane: mutual-TLS gRPC server, certificate checks, batched writes) run in
processes of their own (``--replicas``; amphorae spread over them as the agents spread themselves), and
``--clients`` load processes open one stream per simulated amphora, each with its own certificate from the
controller CA. Every amphora sends a heartbeat every ``--interval`` seconds, as agents do (0: back to back,
the next as soon as the previous is written, paced by HTTP/2 flow control only), so 10,000 amphorae at the
default 0.5 s offer 20,000 heartbeats a second. Each amphora has a load balancer with a listener, a pool and
two members in the database and reports them in every heartbeat; ``--traffic`` is the share of amphorae whose
counters grow with every heartbeat (the others report the same totals: their statistics rows are not written
again).

The load is made cheap so that the service gets the CPU: heartbeats are pre-serialized (the static part of an
amphora's heartbeat once, the sequence and sample time appended per beat; a busy amphora's report
re-serialized), sent and acknowledged as raw bytes, on uvloop; each stream's acknowledgements are read by a
task of their own, as the agent reads them. Its CPU is reported on its own. With
``--database-url postgresql://...`` a fresh database is created on that server (and dropped after).

Three runs, the same load each (and each again per ``--ack-intervals``, the service's ``ack_interval_s``: 0
acknowledges every heartbeat, as the service did before acknowledgements were coalesced):

* ``batched`` - what the service does: heartbeats coalesced per amphora, written every flush interval,
  only what changed (health rows, changed statistics, changed operating statuses);
* ``unbatched`` (baseline) - every heartbeat written in a transaction of its own, one after the other;
* ``no database`` (ceiling) - heartbeats received, checked and acknowledged, nothing written.

Printed per run: heartbeats ingested per second (wall clock) and per CPU-second of the services, the CPU of
the services and of the load processes (in cores), and the load average (the machine is shared). Every loop
is bounded by time; all traffic stays on 127.0.0.1. ``--profile DIR`` records py-spy profiles (raw, folded
stacks) of every process during the measured seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from octavia_mesh.common import pki
from octavia_mesh.common.db.migrate import upgrade
from octavia_mesh.common.db.models import Amphora, Listener, LoadBalancer, Member, Pool, utcnow
from octavia_mesh.health.events import InMemoryEventPublisher
from octavia_mesh.health.ingest import Ingest, _Pending, to_item
from octavia_mesh.health.server import build
from octavia_mesh.health.settings import HealthSettings
from octavia_mesh.protos.health.v1 import health_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from host_load import field as _field  # noqa: E402
from host_load import host_call  # noqa: E402
from host_load import varint as _varint  # noqa: E402

#: Streams a load process opens at the same time (TLS handshakes are the expensive part of an opening).
OPENING_AT_ONCE = 20
#: Openings a simulated amphora tries before it counts as failed.
OPENING_ATTEMPTS = 5
SYNC = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}


@dataclass(frozen=True, slots=True)
class Amp:
    amphora_id: str
    lb_id: str
    listener_id: str
    pool_id: str
    members: tuple[str, str]
    certificate: bytes
    key: bytes


# ------------------------------------------------------------------------------------------- the service


class UnbatchedIngest(Ingest):
    """The baseline: every heartbeat written in a transaction of its own (amphora lookup, then its writes)
    before it is acknowledged, one at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = asyncio.Lock()

    async def admit(self, stream: Any, heartbeat: health_pb2.StreamHeartbeatsRequest) -> None:
        self.received += 1
        pending = _Pending(stream, heartbeat, utcnow())
        async with self._lock:
            records = await self._store.amphorae([stream.amphora_id])
            await self._store.write([to_item(pending, records[stream.amphora_id])])
        self.written += 1

    async def flush(self) -> int:
        return 0


class ReceiveOnlyIngest(Ingest):
    """The ceiling: heartbeats are received, checked and acknowledged; nothing is written."""

    def offer(self, stream: Any, heartbeat: health_pb2.StreamHeartbeatsRequest, received_at: Any = None) -> None:
        self.received += 1

    async def flush(self) -> int:
        return 0


INGESTS: dict[str, type[Ingest]] = {"batched": Ingest, "unbatched": UnbatchedIngest, "no database": ReceiveOnlyIngest}


def service_process(conn: Connection, mode: str, database_url: str, ca_dir: str, tuning: dict[str, Any]) -> None:
    if tuning.pop("uvloop"):
        import uvloop

        uvloop.install()
    asyncio.run(_service(conn, mode, database_url, ca_dir, tuning))


async def _service(conn: Connection, mode: str, database_url: str, ca_dir: str, tuning: dict[str, Any]) -> None:
    settings = HealthSettings(
        database_url=database_url,
        heartbeat_listen="127.0.0.1:0",
        ca_dir=ca_dir,
        replica_name=f"bench-{os.getpid()}",
        **tuning,  # the interval the load sends at (acknowledgements are coalesced by it), the ack interval
        # Ingest is measured, not loss detection: a stream the overloaded baseline keeps waiting is no loss.
        stream_silence_s=0,
    )
    plane = build(settings, publisher=InMemoryEventPublisher(), ingest_class=INGESTS[mode])
    await plane.start()
    conn.send(plane.port)
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "snapshot":
            conn.send((plane.ingest.received, plane.ingest.written))
        elif command == "backlog":
            conn.send(plane.ingest.backlog_s())
        else:
            break
    await plane.stop()
    conn.send("stopped")


# ----------------------------------------------------------------------------------------------- load

METHOD = "/octavia_mesh.health.v1.AmphoraHealth/StreamHeartbeats"


class Beats:
    """One amphora's heartbeats as bytes. Fields of a protobuf message may come in any order, so the part that
    never changes (amphora id, and the load balancer's report while its counters stand still) is serialized
    once, and the sequence (field 2) and sample time (field 3) are appended per beat."""

    def __init__(self, amp: Amp, busy: bool) -> None:
        request = health_pb2.StreamHeartbeatsRequest()
        self.report = request.load_balancers.add(load_balancer_id=amp.lb_id, running=True)
        listener = self.report.listeners.add(name=amp.listener_id, status="OPEN")
        self.counters = listener.counters
        self.counters.bytes_in, self.counters.total_connections, self.counters.active_connections = 300, 1, 3
        pool = self.report.pools.add(name=f"{amp.pool_id}:{amp.listener_id}", status="UP")
        for member in amp.members:
            pool.members.add(name=member, status="UP")
        self.head = _field(1, amp.amphora_id.encode())
        self.static = self.head + _field(4, self.report.SerializeToString())
        self.busy = busy
        self.farewell = health_pb2.StreamHeartbeatsRequest(amphora_id=amp.amphora_id, closing=True).SerializeToString()

    def beat(self, sequence: int, stamp: bytes) -> bytes:
        if self.busy:  # traffic: the totals grow, the report is serialized again
            self.counters.bytes_in += 300
            self.counters.bytes_out += 900
            self.counters.total_connections += 2
            self.static = self.head + _field(4, self.report.SerializeToString())
        return self.static + b"\x10" + _varint(sequence) + stamp


class Clock:
    """The sample time field, serialized once per hundredth of a second."""

    def __init__(self) -> None:
        self._key = -1
        self._stamp = b""

    def stamp(self) -> bytes:
        now = time.time()
        key = int(now * 100)
        if key != self._key:
            seconds = int(now)
            nanos = int((now - seconds) * 1e9)
            self._key = key
            self._stamp = _field(3, b"\x08" + _varint(seconds) + b"\x10" + _varint(nanos))
        return self._stamp


def load_process(
    conn: Connection, ca: bytes, amps: list[tuple[Amp, str]], interval: float, traffic: float, per_host: int
) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_load(conn, ca, amps, interval, traffic, per_host))


async def _load(
    conn: Connection, ca: bytes, amps: list[tuple[Amp, str]], interval: float, traffic: float, per_host: int
) -> None:
    loop = asyncio.get_running_loop()
    stop, go, all_connected = asyncio.Event(), asyncio.Event(), asyncio.Event()
    counts = {"connected": 0, "acked": 0, "gave_up": 0}
    opening = asyncio.Semaphore(OPENING_AT_ONCE)
    clock = Clock()
    rng = random.Random(7)

    async def one(amp: Amp, endpoint: str, busy: bool) -> None:
        beats = Beats(amp, busy)
        credentials = grpc.ssl_channel_credentials(ca, amp.key, amp.certificate)
        # As the agent: no bandwidth-delay probing pings for a stream of small messages.
        options = [("grpc.ssl_target_name_override", pki.HEALTH_IDENTITY), ("grpc.http2.bdp_probe", 0)]
        sequence = 1
        # A call connects as soon as it is made: channel, call and first write under the semaphore, so that
        # only so many TLS handshakes run at once (thousands at once time out on the server).
        channel: Any = None
        call: Any = None
        for attempt in range(OPENING_ATTEMPTS):
            async with opening:
                channel = grpc.aio.secure_channel(endpoint, credentials, options=options)
                call = channel.stream_stream(METHOD)()  # no (de)serializers: raw bytes each way
                try:
                    await call.write(beats.beat(sequence, clock.stamp()))
                except grpc.aio.AioRpcError:
                    pass  # the call's status says why; read below
            try:
                await call.read()  # the first acknowledgement (the baseline's comes late: its writes queue)
                break
            except grpc.aio.AioRpcError:
                # A starved server drops handshakes and calls it could not accept in time: an agent retries.
                await channel.close()
                if attempt == OPENING_ATTEMPTS - 1:
                    counts["gave_up"] += 1  # reported; the others run (a few of 10,000 on a starved machine)
                    if counts["connected"] + counts["gave_up"] == len(amps):
                        all_connected.set()
                    return
                await asyncio.sleep(1.0 + rng.random())
        try:
            counts["connected"] += 1
            if counts["connected"] + counts["gave_up"] == len(amps):
                all_connected.set()
            # Heartbeats only once every stream is open: the handshakes of 10,000 streams get the CPU first (a
            # starved server lets HTTP/2 settings and pings time out), and gRPC's asyncio server cancels a call
            # it has not accepted within 30 s.
            await go.wait()
            due = loop.time() + rng.random() * interval
            reader = asyncio.create_task(read_acks(call))
            while not stop.is_set() and not reader.done():
                if interval:
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    due = max(due + interval, loop.time())  # late: no burst to catch up, as an agent
                sequence += 1
                await call.write(beats.beat(sequence, clock.stamp()))
            if reader.done():
                await reader  # the call's error
                raise RuntimeError("the service ended a stream")
            # An agent's farewell: the service takes the end for what it is, not for a loss.
            await call.write(beats.farewell)
            await call.done_writing()
            await call.code()
            await reader
        finally:
            await channel.close()

    async def read_acks(call: Any) -> None:
        # Acknowledgements come about once per ack interval (or per heartbeat): read apart from the writes, as
        # the agent reads them, so that a heartbeat never waits for one.
        while await call.read() is not grpc.aio.EOF:  # pyright: ignore[reportAttributeAccessIssue]
            counts["acked"] += 1

    def connected(amphorae: int) -> None:
        counts["connected"] += amphorae
        if counts["connected"] + counts["gave_up"] == len(amps):
            all_connected.set()

    busy_count = round(traffic * len(amps))
    if per_host > 1:  # amphora hosts: one batched call per ``per_host`` amphorae of the same replica
        by_endpoint: dict[str, list[tuple[Amp, bool]]] = {}
        for n, (amp, endpoint) in enumerate(amps):
            by_endpoint.setdefault(endpoint, []).append((amp, n < busy_count))
        hosts = [
            (endpoint, members[i : i + per_host])
            for endpoint, members in by_endpoint.items()
            for i in range(0, len(members), per_host)
        ]
        tasks = [
            asyncio.create_task(
                host_call(
                    [a for a, _ in members],
                    [Beats(a, busy) for a, busy in members],
                    endpoint,
                    ca,
                    interval,
                    clock.stamp,
                    opening,
                    go,
                    stop,
                    counts,
                    connected,
                    rng,
                )
            )
            for endpoint, members in hosts
        ]
    else:
        tasks = [asyncio.create_task(one(amp, endpoint, n < busy_count)) for n, (amp, endpoint) in enumerate(amps)]
    waiter = asyncio.create_task(all_connected.wait())
    await asyncio.wait([waiter], timeout=600)  # every amphora connected, or given up after its attempts
    if all_connected.is_set():
        conn.send("connected")
        await loop.run_in_executor(None, conn.recv)  # "go"
        go.set()
        await loop.run_in_executor(None, conn.recv)  # "stop"
    stop.set()
    go.set()
    waiter.cancel()
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)
    failures = [d for d in done if isinstance(d, BaseException) and not isinstance(d, asyncio.CancelledError)]
    summary = f"{counts['connected']} connected; {failures[0]!r}" if failures else ""
    conn.send((counts["acked"], len(failures), summary, counts["gave_up"]))


# ------------------------------------------------------------------------------------------------ setup


def plant(database_url: str, ca: pki.LocalCA, count: int) -> list[Amp]:
    """``count`` load balancers, each with a listener, a pool, two members and an ALLOCATED amphora."""
    amps = []
    rows: dict[Any, list[dict[str, Any]]] = {LoadBalancer: [], Pool: [], Listener: [], Member: [], Amphora: []}
    now = utcnow() - dt.timedelta(minutes=1)
    common = {"project_id": "bench", "provisioning_status": "ACTIVE", "operating_status": "ONLINE", "created_at": now}
    for _ in range(count):
        amp_id, lb_id, listener_id, pool_id = (str(uuid.uuid4()) for _ in range(4))
        members = (str(uuid.uuid4()), str(uuid.uuid4()))
        issued = ca.issue(pki.amphora_identity(amp_id), [ExtendedKeyUsageOID.CLIENT_AUTH], dt.timedelta(days=1))
        rows[LoadBalancer].append({"id": lb_id, "provider": "amphora", "updated_at": now, **common})
        rows[Pool].append(
            {"id": pool_id, "load_balancer_id": lb_id, "protocol": "HTTP", "lb_algorithm": "ROUND_ROBIN", **common}
        )
        rows[Listener].append(
            {
                "id": listener_id,
                "load_balancer_id": lb_id,
                "protocol": "HTTP",
                "protocol_port": 80,
                "default_pool_id": pool_id,
                **common,
            }
        )
        for n, member in enumerate(members):
            rows[Member].append(
                {"id": member, "pool_id": pool_id, "address": "10.0.0.1", "protocol_port": 80 + n, **common}
            )
        rows[Amphora].append(
            {
                "id": amp_id,
                "load_balancer_id": lb_id,
                "status": "ALLOCATED",
                "cert_serial": issued.serial,
                "created_at": now,
            }
        )
        amps.append(Amp(amp_id, lb_id, listener_id, pool_id, members, issued.certificate, issued.private_key))
    parsed = make_url(database_url)
    engine = create_engine(parsed.set(drivername=SYNC.get(parsed.get_backend_name(), "sqlite")))
    with engine.begin() as conn:
        for model, values in rows.items():
            for start in range(0, len(values), 500):
                conn.execute(insert(model), values[start : start + 500])
    engine.dispose()
    return amps


def first_replica(amphora_id: str, count: int) -> int:
    """The replica an agent starts with (``amphora_agent.heartbeat``): the same spread as real amphorae."""
    return int(hashlib.sha256(amphora_id.encode()).hexdigest()[:8], 16) % count


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User and system CPU time of a process, all its threads (database driver, gRPC pollers) included; or of
    one of its threads (``thread``)."""
    stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    mode: str,
    ack_interval: float,
    per_host: int,
    args: argparse.Namespace,
    database_url: str,
    ca_dir: Path,
    amps: list[Amp],
) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    services = []
    tuning = {"uvloop": args.uvloop, "ack_interval_s": ack_interval}
    if args.interval:
        tuning["heartbeat_interval_s"] = args.interval
    if args.flush_interval:
        tuning["flush_interval_s"] = args.flush_interval
    for _ in range(args.replicas):
        end, conn = ctx.Pipe()
        process = ctx.Process(target=service_process, args=(conn, mode, database_url, str(ca_dir), tuning), daemon=True)
        process.start()
        services.append((process, end))
    endpoints = [f"127.0.0.1:{end.recv()}" for _, end in services]
    ca = (ca_dir / "ca.pem").read_bytes()
    assigned = [(amp, endpoints[first_replica(amp.amphora_id, len(endpoints))]) for amp in amps]
    loads = []
    for i in range(args.clients):
        end, conn = ctx.Pipe()
        process = ctx.Process(
            target=load_process,
            args=(conn, ca, assigned[i :: args.clients], args.interval, args.traffic, per_host),
            daemon=True,
        )
        process.start()
        loads.append((process, end))
    everyone = [p for p, _ in services] + [p for p, _ in loads]
    spies: list[subprocess.Popen[bytes]] = []
    try:
        connecting = time.monotonic()
        for process, end in loads:
            deadline = time.monotonic() + 900
            while not end.poll(1.0):
                if not process.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("a load process did not connect (see its output)")
            if (answer := end.recv()) != "connected":
                raise RuntimeError(f"a load process did not connect: {answer}")
        connected_s = time.monotonic() - connecting
        for _, end in loads:
            end.send("go")
        time.sleep(max(2.0, 3 * args.interval))  # warm up: every stream beating, the first flushes done

        def snapshot() -> tuple[float, int, int, float, float, float]:
            received = written = 0
            for _, end in services:
                end.send("snapshot")
                r, w = end.recv()
                received, written = received + r, written + w
            service_cpu = sum(cpu_seconds(p.pid) for p, _ in services)
            load_cpu = sum(cpu_seconds(p.pid) for p, _ in loads)
            # The event loop's thread runs all the Python (under the GIL); gRPC's own threads poll, read, decrypt.
            loops = sum(cpu_seconds(p.pid, p.pid) for p, _ in services)
            return time.monotonic(), received, written, service_cpu, load_cpu, loops

        before = snapshot()
        if args.profile:
            spies = profile(args, mode, everyone)
        # How far behind the heartbeats it read each service's writes are (its flusher overtaken by the load
        # coalesces more, which keeps the rate up and the rows older), sampled every second.
        backlog = 0.0
        measured_until = time.monotonic() + args.seconds
        while (left := measured_until - time.monotonic()) > 0:
            time.sleep(min(1.0, left))
            for _, end in services:
                end.send("backlog")
                backlog = max(backlog, end.recv())
        after = snapshot()
        load_average = os.getloadavg()[0]
        for spy in spies:
            spy.wait(60)
        for _, end in loads:
            end.send("stop")
        failures = []
        gave_up = 0
        for _, end in loads:
            _, failed, first, unopened = end.recv() if end.poll(180) else (0, 1, "no answer", 0)
            gave_up += unopened
            if failed:
                failures.append(f"{failed} streams failed: {first}")
        for _, end in services:
            end.send("stop")
            end.poll(60)
    finally:
        for process in everyone:
            process.join(30)
            if process.is_alive():
                process.kill()
    if failures:
        raise RuntimeError(f"{mode}: {'; '.join(failures)}")
    wall = after[0] - before[0]
    # Batched: every heartbeat received is written, or superseded by a newer one of the same amphora within
    # a flush. Unbatched: only what was written counts (its queue grows behind the database).
    ingested = (after[1] - before[1]) if mode != "unbatched" else (after[2] - before[2])
    service_cpu, load_cpu = after[3] - before[3], after[4] - before[4]
    return {
        "connect_s": connected_s,
        "wall": wall,
        "ingested": ingested,
        "per_s": ingested / wall,
        "per_cpu_s": ingested / service_cpu if service_cpu else 0.0,
        "service_cores": service_cpu / wall,
        "load_cores": load_cpu / wall,
        "load_us": 1e6 * load_cpu / ingested if ingested else 0.0,
        "service_us": 1e6 * service_cpu / ingested if ingested else 0.0,
        "loop_share": (after[5] - before[5]) / service_cpu if service_cpu else 0.0,
        "load_average": load_average,
        "unopened": gave_up,
        "written_per_s": (after[2] - before[2]) / wall,
        "backlog_s": backlog,
    }


def profile(args: argparse.Namespace, mode: str, processes: list[Any]) -> list[subprocess.Popen[bytes]]:
    """py-spy recordings (folded stacks) of every process for the measured seconds."""
    spy = str(Path(sys.executable).parent / "py-spy")
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for n, process in enumerate(processes):
        role = f"service{n}" if n < args.replicas else f"load{n - args.replicas}"
        command = [spy, "record", "--pid", str(process.pid), "--rate", "100", "--format", "raw", "--gil"]
        command += ["--duration", str(int(args.seconds)), "--output", str(out / f"{mode.replace(' ', '-')}-{role}.txt")]
        if args.native:
            command.append("--native")
        spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


def fresh_database(url: str) -> tuple[str, Any]:
    """A new empty database on the server of ``url`` (PostgreSQL or MariaDB), and its dropper; SQLite: as is."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return url, lambda: None
    name = f"health_bench_{uuid.uuid4().hex[:8]}"
    server = create_engine(parsed.set(drivername=SYNC[parsed.get_backend_name()]), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))

    def drop() -> None:
        force = " WITH (FORCE)" if parsed.get_backend_name() == "postgresql" else ""
        with server.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        server.dispose()

    return parsed.set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--amphorae", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between heartbeats (0: back to back)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--clients", type=int, default=2, help="load processes")
    parser.add_argument("--replicas", type=int, default=1, help="health service processes")
    parser.add_argument(
        "--per-host",
        default="100,1",
        help="comma-separated, each a set of runs: amphorae per amphora host, batched on one call each (1: a call "
        "per amphora, as agent processes have: the baseline)",
    )
    parser.add_argument("--traffic", type=float, default=1.0, help="share of amphorae whose counters grow")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    parser.add_argument("--modes", default=",".join(INGESTS), help="comma-separated: " + ", ".join(INGESTS))
    parser.add_argument(
        "--ack-intervals", default="1", help="comma-separated ack intervals of the service, each a run (0: every beat)"
    )
    parser.add_argument("--flush-interval", type=float, default=0.0, help="the service's (default: its default)")
    parser.add_argument("--no-uvloop", dest="uvloop", action="store_false", help="the services on asyncio's loop")
    parser.add_argument("--profile", default="", help="directory for py-spy profiles of the measured seconds")
    parser.add_argument("--native", action="store_true", help="profiles with native (C) frames")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    ack_intervals = [float(a) for a in args.ack_intervals.split(",") if a.strip()]
    hostings = [max(1, int(h)) for h in args.per_host.split(",") if h.strip()]
    if unknown := set(modes) - set(INGESTS):
        parser.error(f"unknown modes {sorted(unknown)}")
    with tempfile.TemporaryDirectory(prefix="health-bench-") as tmp:
        database_url, drop = fresh_database(args.database_url or f"sqlite:///{tmp}/bench.db")
        try:
            upgrade(database_url)
            ca_dir = Path(tmp) / "ca"
            started = time.monotonic()
            amps = plant(database_url, pki.LocalCA(ca_dir), args.amphorae)
            offered = f"{args.amphorae / args.interval:.0f}/s offered" if args.interval else "back to back"
            print(
                f"{args.amphorae} amphorae planted in {time.monotonic() - started:.0f}s on "
                f"{make_url(database_url).get_backend_name()}; heartbeat every {args.interval:g}s ({offered}), "
                f"{args.traffic:.0%} with traffic; {args.replicas} service process(es), {args.clients} load "
                f"processes, {os.cpu_count()} CPUs",
                flush=True,
            )
            runs: dict[int, dict[str, dict[str, float]]] = {}
            # The summaries below compare the runs of the last ack interval.
            for per_host, ack_interval, mode in ((h, a, m) for h in hostings for a in ack_intervals for m in modes):
                if per_host not in runs:
                    calls = f"{per_host} amphorae per host call" if per_host > 1 else "a call per amphora"
                    print(f"-- {calls}", flush=True)
                r = runs.setdefault(per_host, {})[mode] = run(
                    mode, ack_interval, per_host, args, database_url, ca_dir, amps
                )
                unopened = f", {r['unopened']:.0f} amphorae could not" if r["unopened"] else ""
                print(
                    f"{mode:>12} (ack {ack_interval:g}s): {r['per_s']:7.0f} heartbeats/s, {r['per_cpu_s']:7.0f} per "
                    "CPU-second of the "
                    f"service ({r['service_us']:.0f} us/heartbeat, {r['loop_share']:.0%} in the event loop's "
                    f"thread); service {r['service_cores']:.2f} cores, load generator {r['load_cores']:.2f} cores "
                    f"({r['load_us']:.0f} us/heartbeat); load average {r['load_average']:.1f} "
                    f"({r['ingested']:.0f} in {r['wall']:.1f}s; {r['connect_s']:.0f}s to connect{unopened}); "
                    f"{r['written_per_s']:.0f} amphorae written/s, writes at most {r['backlog_s']:.1f}s behind "
                    "the last heartbeat read beyond a flush interval",
                    flush=True,
                )
        finally:
            drop()
        for per_host, results in runs.items():
            print(f"-- {per_host} amphorae per call:")
            summarize(results)
        hosted, single = runs.get(max(hostings), {}).get("batched"), runs.get(1, {}).get("batched")
        if hosted and single and max(hostings) > 1:
            print(
                f"=> host calls ({max(hostings)} amphorae each) / a call per amphora: "
                f"x{hosted['per_s'] / single['per_s']:.2f} heartbeats/s, "
                f"x{hosted['per_cpu_s'] / single['per_cpu_s']:.2f} per CPU-second of the service, "
                f"x{hosted['written_per_s'] / max(1.0, single['written_per_s']):.2f} amphorae written/s"
            )


def summarize(results: dict[str, dict[str, float]]) -> None:
    """What the runs of one hosting say against each other."""
    if "batched" in results and "unbatched" in results:
        ratio = results["batched"]["per_cpu_s"] / results["unbatched"]["per_cpu_s"]
        print(f"batched / unbatched (per CPU-second of the service): {ratio:.1f}x")
    if "batched" in results and "no database" in results:
        ceiling = results["batched"]["per_cpu_s"] / results["no database"]["per_cpu_s"]
        print(f"batched / no database (per CPU-second): {ceiling:.2f}")
    if "batched" in results:
        b = results["batched"]
        both = b["service_cores"] + b["load_cores"]
        print(
            f"=> batched: {b['per_cpu_s']:.0f} heartbeats per CPU-second of the service; service and load "
            f"generator together {1e6 * both / b['per_s']:.0f} us of CPU per heartbeat, so "
            f"{os.cpu_count()} cores to themselves would carry about "
            f"{(os.cpu_count() or 1) * b['per_s'] / both:.0f} heartbeats/s"
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
