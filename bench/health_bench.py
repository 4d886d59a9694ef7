"""Health-plane benchmark: heartbeats ingested per second per core, many amphorae streaming over mutual TLS.

    uv run python bench/health_bench.py [--amphorae 1000] [--seconds 10] [--clients 2] [--database-url URL]

A health service (the real heartbeat plane: mutual-TLS gRPC server, certificate checks, batched writes)
runs in a process of its own; ``--clients`` load processes open one stream per simulated amphora, each with
its own certificate from the controller CA, and send heartbeats back to back (the next one as soon as the
previous is acknowledged), so the service is saturated. Each amphora has a load balancer with a listener,
a pool and two members in the database, and reports them in every heartbeat (counters growing).

Figures are heartbeats per second and per CPU-second of the service process (its own CPU time, database
driver threads included, so a busy machine does not skew them). Three runs, the same load each:

* ``batched`` - what the service does: heartbeats coalesced per amphora, written every flush interval in
  transactions of up to 500 amphorae (health rows, statistics, operating statuses);
* ``unbatched`` (baseline) - every heartbeat written in a transaction of its own, one after the other;
* ``no database`` (ceiling) - heartbeats received, checked and acknowledged, nothing written.

The ratio batched / unbatched is printed. Every loop is bounded by time; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import create_engine, insert
from sqlalchemy.engine import make_url

from octavia_mesh.common import pki
from octavia_mesh.common.db.migrate import upgrade
from octavia_mesh.common.db.models import Amphora, Listener, LoadBalancer, Member, Pool, utcnow
from octavia_mesh.health.events import InMemoryEventPublisher
from octavia_mesh.health.ingest import Ingest, _Pending, to_item
from octavia_mesh.health.server import build
from octavia_mesh.health.settings import HealthSettings
from octavia_mesh.protos.health.v1 import health_pb2, health_pb2_grpc

#: Streams a load process opens at the same time (TLS handshakes are the expensive part of an opening).
OPENING_AT_ONCE = 20
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

    def offer(self, stream: Any, heartbeat: health_pb2.StreamHeartbeatsRequest) -> None:
        self.received += 1

    async def flush(self) -> int:
        return 0


INGESTS: dict[str, type[Ingest]] = {"batched": Ingest, "unbatched": UnbatchedIngest, "no database": ReceiveOnlyIngest}


def service_process(conn: Connection, mode: str, database_url: str, ca_dir: str) -> None:
    asyncio.run(_service(conn, mode, database_url, ca_dir))


async def _service(conn: Connection, mode: str, database_url: str, ca_dir: str) -> None:
    settings = HealthSettings(
        database_url=database_url, heartbeat_listen="127.0.0.1:0", ca_dir=ca_dir, replica_name="bench"
    )
    plane = build(settings, publisher=InMemoryEventPublisher(), ingest_class=INGESTS[mode])
    await plane.start()
    conn.send(plane.port)
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "snapshot":
            conn.send((time.monotonic(), time.process_time(), plane.ingest.received, plane.ingest.written))
        else:
            break
    await plane.stop()
    conn.send("stopped")


# ----------------------------------------------------------------------------------------------- load


def heartbeat(amp: Amp, sequence: int) -> health_pb2.StreamHeartbeatsRequest:
    request = health_pb2.StreamHeartbeatsRequest(amphora_id=amp.amphora_id, sequence=sequence)
    request.sample_time.GetCurrentTime()
    lb = request.load_balancers.add(load_balancer_id=amp.lb_id, running=True)
    lb.listeners.add(
        name=amp.listener_id,
        status="OPEN",
        counters=health_pb2.ListenerCounters(
            bytes_in=sequence * 300, bytes_out=sequence * 900, active_connections=3, total_connections=sequence * 2
        ),
    )
    pool = lb.pools.add(name=f"{amp.pool_id}:{amp.listener_id}", status="UP")
    for member in amp.members:
        pool.members.add(name=member, status="UP")
    return request


def load_process(conn: Connection, endpoint: str, ca: bytes, amps: list[Amp]) -> None:
    asyncio.run(_load(conn, endpoint, ca, amps))


async def _load(conn: Connection, endpoint: str, ca: bytes, amps: list[Amp]) -> None:
    stop, go = asyncio.Event(), asyncio.Event()
    connected = 0
    acked = 0
    all_connected = asyncio.Event()

    opening = asyncio.Semaphore(OPENING_AT_ONCE)

    async def one(amp: Amp) -> None:
        nonlocal connected, acked
        credentials = grpc.ssl_channel_credentials(ca, amp.key, amp.certificate)
        options = [("grpc.ssl_target_name_override", pki.HEALTH_IDENTITY)]
        async with grpc.aio.secure_channel(endpoint, credentials, options=options) as channel:
            call = health_pb2_grpc.AmphoraHealthStub(channel).StreamHeartbeats()
            sequence = 1
            async with opening:
                await call.write(heartbeat(amp, sequence))
                await call.read()
            connected += 1
            if connected == len(amps):
                all_connected.set()
            # Saturating load only once every stream is open: gRPC's asyncio server accepts new calls between
            # the busy ones, and cancels a call it has not accepted within 30 s.
            await go.wait()
            while not stop.is_set():
                sequence += 1
                await call.write(heartbeat(amp, sequence))
                ack = await call.read()
                if ack is grpc.aio.EOF:
                    raise RuntimeError("the service ended a stream")
                acked += 1
            call.cancel()

    tasks = [asyncio.create_task(one(amp)) for amp in amps]
    waiter = asyncio.create_task(all_connected.wait())
    await asyncio.wait([waiter, *tasks], timeout=120, return_when=asyncio.FIRST_COMPLETED)
    if all_connected.is_set():
        conn.send("connected")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)  # "go"
        go.set()
        await loop.run_in_executor(None, conn.recv)  # "stop"
    stop.set()
    go.set()
    waiter.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [d for d in done if isinstance(d, BaseException) and not isinstance(d, asyncio.CancelledError)]
    conn.send((acked, len(failures), f"{connected} connected; {failures[0]!r}" if failures else ""))


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


def run(mode: str, args: argparse.Namespace, database_url: str, ca_dir: Path, amps: list[Amp]) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    service_end, service_conn = ctx.Pipe()
    service = ctx.Process(target=service_process, args=(service_conn, mode, database_url, str(ca_dir)), daemon=True)
    service.start()
    port = service_end.recv()
    ca = (ca_dir / "ca.pem").read_bytes()
    loads = []
    for i in range(args.clients):
        end, conn = ctx.Pipe()
        process = ctx.Process(
            target=load_process, args=(conn, f"127.0.0.1:{port}", ca, amps[i :: args.clients]), daemon=True
        )
        process.start()
        loads.append((process, end))
    try:
        for _, end in loads:
            answer = end.recv() if end.poll(180) else "nothing"
            if answer != "connected":
                raise RuntimeError(f"a load process did not connect: {answer}")
        for _, end in loads:
            end.send("go")
        time.sleep(1.0)  # warm up: every stream busy, the first flushes done
        service_end.send("snapshot")
        wall0, cpu0, received0, written0 = service_end.recv()
        spies = []
        if args.profile:
            import subprocess, sys
            for name, pid in [("service", service.pid)] + [(f"load{i}", p.pid) for i, (p, _) in enumerate(loads)]:
                out = Path(args.profile) / f"{mode.replace(' ', '-')}-{name}.txt"
                cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "-r", "100", "-f", "raw", "-o", str(out), "-d", str(int(args.seconds))]
                if args.native:
                    cmd.append("--native")
                spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(args.seconds)
        for spy in spies:
            spy.wait(60)
        service_end.send("snapshot")
        wall1, cpu1, received1, written1 = service_end.recv()
        for _, end in loads:
            end.send("stop")
        failures = []
        for _, end in loads:
            _, failed, first = end.recv()
            if failed:
                failures.append(f"{failed} streams failed: {first}")
        service_end.send("stop")
        service_end.recv()
    finally:
        for process, _ in loads:
            process.join(30)
            if process.is_alive():
                process.kill()
        service.join(30)
        if service.is_alive():
            service.kill()
    if failures:
        raise RuntimeError(f"{mode}: {'; '.join(failures)}")
    wall, cpu = wall1 - wall0, cpu1 - cpu0
    # Batched: every heartbeat received is written, or superseded by a newer one of the same amphora within
    # a flush. Unbatched: only what was written counts (its queue grows behind the database).
    ingested = (received1 - received0) if mode != "unbatched" else (written1 - written0)
    return {"wall": wall, "cpu": cpu, "ingested": ingested, "per_s": ingested / wall, "per_cpu_s": ingested / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amphorae", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=2, help="load processes")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary directory")
    parser.add_argument("--profile", default="")
    parser.add_argument("--native", action="store_true")
    parser.add_argument("--modes", default="batched,unbatched,no database", help="comma-separated modes to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="health-bench-") as tmp:
        database_url = args.database_url or f"sqlite:///{tmp}/bench.db"
        upgrade(database_url)
        ca_dir = Path(tmp) / "ca"
        started = time.monotonic()
        amps = plant(database_url, pki.LocalCA(ca_dir), args.amphorae)
        print(f"{args.amphorae} amphorae planted in {time.monotonic() - started:.1f}s; {os.cpu_count()} CPUs")
        results = {}
        for mode in args.modes.split(","):
            results[mode] = run(mode, args, database_url, ca_dir, amps)
            r = results[mode]
            print(
                f"{mode:>12}: {r['per_s']:9.0f} heartbeats/s, {r['per_cpu_s']:9.0f} per CPU-second of the service "
                f"({r['ingested']:.0f} in {r['wall']:.1f}s, {r['cpu']:.1f} CPU-s)"
            )
        if len(results) < 3:
            return
        ratio = results["batched"]["per_cpu_s"] / results["unbatched"]["per_cpu_s"]
        ceiling = results["batched"]["per_cpu_s"] / results["no database"]["per_cpu_s"]
        print(f"batched / unbatched (per CPU-second): {ratio:.1f}x; batched / no database: {ceiling:.2f}")
        interval = 1.0
        amphorae_per_core = results["batched"]["per_cpu_s"] * interval
        print(
            f"=> one core of the health service keeps up with about {amphorae_per_core:.0f} amphorae "
            f"at a {interval:g}s heartbeat interval"
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
