"""Several health replicas: when the one an amphora streams to dies (SIGKILL), stops (SIGTERM) or hangs
(SIGSTOP), the amphora streams to another within seconds, and statuses keep flowing.

The module runs its own mesh with two health replicas ("health" and "health-2"); each amphora is given both
endpoints when it boots.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "dataplane")]

from dataplane_helpers import Backend, amphorae_of, load_balancer  # noqa: E402
from health_helpers import MONITOR, random_vip, run_mesh, wait_for, wait_statuses  # noqa: E402
from support import Rest, mesh_engine  # noqa: E402

from octavia_mesh.cli.mesh import Mesh, grpc_serving  # noqa: E402
from octavia_mesh.common.db.models import AmphoraHealth, utcnow  # noqa: E402

#: From a replica's death to the amphora's next heartbeat written by another: a reconnect (under a second),
#: a heartbeat and a flush, with slack for a loaded machine.
TAKEOVER_WITHIN_S = 8.0
#: A hung replica keeps the connection open: the agent leaves it once no acknowledgement came for its silence
#: bound (the longest of 4 heartbeat intervals, 3 ack intervals and 3 s: 3 s with the default 1 s ack interval).
SILENCE_S = 3.0
REPLICAS = ("health", "health-2")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from run_mesh(tmp_path_factory, "replicas", health_replicas=2)


def reporter(mesh: Mesh, amphora_id: str, since: dt.datetime) -> str | None:
    """The replica that wrote the amphora's health row, if it wrote it after ``since``."""
    engine = mesh_engine(mesh)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(AmphoraHealth.reporter, AmphoraHealth.last_update).where(AmphoraHealth.amphora_id == amphora_id)
            ).one_or_none()
    finally:
        engine.dispose()
    return row.reporter if row is not None and row.last_update > since else None


def test_another_replica_takes_the_streams_when_one_dies_or_stops(mesh: Mesh) -> None:
    api = Rest(mesh.endpoint)
    backends = [Backend("r0"), Backend("r1")]
    try:
        with load_balancer(api, "replicas", vip_address=random_vip(api)) as lb:
            listener = lb.listener(8091)
            pool = lb.pool(listener)
            lb.monitor(pool, "HTTP", **MONITOR)
            members = lb.members(pool, backends)
            (amphora,) = amphorae_of(api, lb.id)
            created = utcnow()
            holder = wait_for(lambda: reporter(mesh, amphora["id"], created), 5.0, "a heartbeat")
            assert holder in REPLICAS

            # SIGKILL: the connection breaks at once, the agent moves to the other replica.
            killed_at = utcnow()
            started = time.monotonic()
            mesh.supervisor.kill(holder)
            survivor = next(r for r in REPLICAS if r != holder)
            wait_for(lambda: reporter(mesh, amphora["id"], killed_at) == survivor, TAKEOVER_WITHIN_S, "a takeover")
            took_kill = time.monotonic() - started
            # Statuses still flow, now through the survivor.
            backends[0].stop()
            wait_statuses(api, lb.id, {members["r0"]["id"]: "ERROR", lb.id: "DEGRADED"})
            backends[0].start()
            wait_statuses(api, lb.id, {members["r0"]["id"]: "ONLINE", lb.id: "ONLINE"})

            # SIGTERM: the stopping replica ends its streams, and the agent goes back to the restarted one.
            probe = mesh.supervisor.restart(holder).env["OCTAVIA_MESH_HEALTH_GRPC_LISTEN"]
            wait_for(lambda: grpc_serving(probe), 60.0, "the restarted replica serving")
            stopped_at = utcnow()
            started = time.monotonic()
            os.kill(mesh.supervisor.child(survivor).process.pid, signal.SIGTERM)
            wait_for(lambda: reporter(mesh, amphora["id"], stopped_at) == holder, TAKEOVER_WITHIN_S, "a handover")
            took_stop = time.monotonic() - started
            assert mesh.supervisor.child(survivor).process.wait(10) == 0
            probe = mesh.supervisor.restart(survivor).env["OCTAVIA_MESH_HEALTH_GRPC_LISTEN"]
            wait_for(lambda: grpc_serving(probe), 60.0, "the restarted replica serving")

            # SIGSTOP: the connection stays open and acknowledgements stop; the agent moves on after its bound.
            hung = mesh.supervisor.child(holder).process.pid
            hung_at = utcnow()
            started = time.monotonic()
            os.kill(hung, signal.SIGSTOP)
            try:
                wait_for(
                    lambda: reporter(mesh, amphora["id"], hung_at) == survivor,
                    SILENCE_S + TAKEOVER_WITHIN_S,
                    "a takeover from a hung replica",
                )
                took_hang = time.monotonic() - started
            finally:
                os.kill(hung, signal.SIGCONT)
            # The last acknowledgement may have come up to an ack interval (1 s) before the hang.
            assert took_hang > SILENCE_S - 1.5, "taken over before the agent could have seen the silence"
            print(f"\ntakeover after SIGKILL {took_kill:.2f}s, SIGTERM {took_stop:.2f}s, SIGSTOP {took_hang:.2f}s")
    finally:
        for backend in backends:
            backend.close()
