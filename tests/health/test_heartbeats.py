"""Heartbeats on a whole mesh: real amphorae stream to the health service over mutual TLS, and the API shows
what HAProxy sees: operating statuses (Octavia's rules), live statistics, and status events on NATS.
Impostor amphorae are refused.

The module runs its own mesh (heartbeats every 0.2 s) with one load balancer: an HTTP listener whose pool
has an HTTP health monitor and two members.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from nats.js.api import DeliverPolicy
from sqlalchemy import select, text

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "dataplane")]

from dataplane_helpers import (  # noqa: E402
    AMPHORAE,
    LBS,
    Backend,
    LoadBalancer,
    amphora_home,
    amphorae_of,
    create_lb,
    delete_lb,
    get,
    load_balancer,
)
from health_helpers import (  # noqa: E402
    MONITOR,
    ca_dir,
    heartbeat_endpoint,
    nats_url,
    random_vip,
    run_mesh,
    tree,
    wait_for,
    wait_statuses,
)
from support import Rest, mesh_engine  # noqa: E402

from octavia_mesh.cli.mesh import Mesh  # noqa: E402
from octavia_mesh.common import pki  # noqa: E402
from octavia_mesh.common.db.models import AmphoraHealth  # noqa: E402
from octavia_mesh.protos.events.v1 import events_pb2  # noqa: E402
from octavia_mesh.protos.health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

PORT = 8090


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    yield from run_mesh(tmp_path_factory, "heartbeats")


@pytest.fixture(scope="module")
def api(mesh: Mesh) -> Rest:
    return Rest(mesh.endpoint)


@dataclass
class Web:
    lb: LoadBalancer
    listener: dict[str, Any]
    pool: dict[str, Any]
    backends: list[Backend]
    members: dict[str, dict[str, Any]]

    def online(self) -> dict[str, str]:
        ids = [self.lb.id, self.listener["id"], self.pool["id"], *(m["id"] for m in self.members.values())]
        return dict.fromkeys(ids, "ONLINE")


@pytest.fixture(scope="module")
def web(api: Rest) -> Iterator[Web]:
    backends = [Backend("m0"), Backend("m1")]
    try:
        with load_balancer(api, "heartbeats", vip_address=random_vip(api)) as lb:
            listener = lb.listener(PORT)
            pool = lb.pool(listener)
            lb.monitor(pool, "HTTP", **MONITOR)
            members = lb.members(pool, backends)
            yield Web(lb, listener, pool, backends, members)
    finally:
        for backend in backends:
            backend.close()


class Events:
    """Status events of one load balancer, as a plain NATS subscriber receives them."""

    def __init__(self) -> None:
        self.received: list[tuple[str, events_pb2.OperatingStatusChanged]] = []

    async def on_message(self, msg: Any) -> None:
        self.received.append((msg.subject, events_pb2.OperatingStatusChanged.FromString(msg.data)))

    def of(self, resource_id: str) -> list[str]:
        return [
            events_pb2.OperatingStatus.Name(e.status).removeprefix("OPERATING_STATUS_")
            for _, e in self.received
            if e.id == resource_id
        ]


async def test_a_stopped_member_turns_error_and_degrades_pool_and_load_balancer_then_recovers(
    mesh: Mesh, api: Rest, web: Web
) -> None:
    lb_id, pool_id = web.lb.id, web.pool["id"]
    m0, m1 = web.members["m0"]["id"], web.members["m1"]["id"]
    events = Events()
    client = await nats.connect(nats_url(mesh))
    try:
        await client.subscribe(f"octavia.events.v1.operating_status.{lb_id}.>", cb=events.on_message)
        await asyncio.to_thread(wait_statuses, api, lb_id, web.online())

        web.backends[0].stop()
        took_down = await asyncio.to_thread(
            wait_statuses,
            api,
            lb_id,
            {m0: "ERROR", m1: "ONLINE", pool_id: "DEGRADED", web.listener["id"]: "ONLINE", lb_id: "DEGRADED"},
        )
        assert tree(api, lb_id)[lb_id] == "DEGRADED"  # the load balancer's own GET shows it too
        assert api.ok("GET", f"{LBS}/{lb_id}")["loadbalancer"]["operating_status"] == "DEGRADED"
        member = api.ok("GET", f"/v2/lbaas/pools/{pool_id}/members/{m0}")["member"]
        assert member["operating_status"] == "ERROR"

        web.backends[0].start()
        took_up = await asyncio.to_thread(wait_statuses, api, lb_id, web.online())
        print(f"\nmember down shown after {took_down:.2f}s, back up after {took_up:.2f}s")

        def arrived() -> bool:
            return events.of(m0)[-2:] == ["ERROR", "ONLINE"] and events.of(lb_id)[-2:] == ["DEGRADED", "ONLINE"]

        await asyncio.to_thread(wait_for, arrived, 5.0, "the status events")
    finally:
        await client.close()
    assert events.of(pool_id)[-2:] == ["DEGRADED", "ONLINE"]
    assert m1 not in {e.id for _, e in events.received}  # only what changed
    subject, event = next((s, e) for s, e in events.received if e.id == m0)
    assert subject == f"octavia.events.v1.operating_status.{lb_id}.member.{m0}"
    assert event.kind == events_pb2.RESOURCE_KIND_MEMBER and event.load_balancer_id == lb_id
    assert event.previous_status == events_pb2.OPERATING_STATUS_ONLINE
    assert event.project_id == "heartbeats" and event.reporter == "health"
    assert event.amphora_id == amphorae_of(api, lb_id)[0]["id"]


async def test_a_late_subscriber_replays_recent_events_from_jetstream(mesh: Mesh, web: Web) -> None:
    m0 = web.members["m0"]["id"]
    client = await nats.connect(nats_url(mesh))
    try:
        js = client.jetstream()
        sub = await js.subscribe(
            f"octavia.events.v1.operating_status.{web.lb.id}.member.{m0}",
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        statuses = []
        while len(statuses) < 2:
            msg = await sub.next_msg(timeout=5)
            statuses.append(events_pb2.OperatingStatusChanged.FromString(msg.data).status)
            assert msg.headers and msg.headers.get("Nats-Msg-Id")
        assert statuses == [events_pb2.OPERATING_STATUS_ERROR, events_pb2.OPERATING_STATUS_ONLINE]
    finally:
        await client.close()


def stats(api: Rest, path: str) -> dict[str, int]:
    return api.ok("GET", path)["stats"]


def test_statistics_grow_with_traffic_show_open_connections_and_survive_a_reload(api: Rest, web: Web) -> None:
    lb_stats, listener_stats = f"{LBS}/{web.lb.id}/stats", f"/v2/lbaas/listeners/{web.listener['id']}/stats"
    before = stats(api, lb_stats)
    for _ in range(20):
        assert get(web.lb.vip, PORT).status == 200
    grown = wait_for(
        lambda: (s := stats(api, lb_stats))["total_connections"] >= before["total_connections"] + 20 and s,
        5.0,
        "20 more connections in the load balancer's stats",
    )
    assert grown["bytes_in"] > before["bytes_in"] + 20 * 30 and grown["bytes_out"] > before["bytes_out"] + 20 * 30
    assert stats(api, listener_stats) == stats(api, lb_stats)  # one listener
    (amphora,) = amphorae_of(api, web.lb.id)
    (row,) = api.ok("GET", f"{AMPHORAE}/{amphora['id']}/stats")["amphora_stats"]
    assert (row["listener_id"], row["loadbalancer_id"]) == (web.listener["id"], web.lb.id)
    assert row["total_connections"] >= grown["total_connections"]

    # A request held open by its member shows as an active connection while it lasts.
    backend = web.backends[1]
    backend.release.clear()
    held = threading.Thread(target=lambda: [get(web.lb.vip, PORT, "/slow", timeout=15) for _ in range(4)])
    held.start()
    try:
        wait_for(lambda: stats(api, lb_stats)["active_connections"] >= 1, 5.0, "an active connection")
    finally:
        backend.release.set()
        held.join(20)
    wait_for(lambda: stats(api, lb_stats)["active_connections"] == 0, 5.0, "no active connection")

    # A change reloads HAProxy, whose counters start again from zero: the totals must not.
    settled = stats(api, lb_stats)
    web.lb.update(f"listeners/{web.listener['id']}", "listener", name="renamed")
    seen = [settled]
    for _ in range(15):
        seen.append(stats(api, lb_stats))
        for key in ("bytes_in", "bytes_out", "total_connections"):
            assert seen[-1][key] >= seen[-2][key], f"{key} went backwards across the reload: {seen}"
        threading.Event().wait(0.1)
    for _ in range(10):
        assert get(web.lb.vip, PORT).status == 200
    wait_for(
        lambda: stats(api, lb_stats)["total_connections"] >= settled["total_connections"] + 10,
        5.0,
        "counting on after the reload",
    )


# ------------------------------------------------------------------------------------------- impostors


@dataclass(frozen=True)
class Identity:
    certificate: bytes
    key: bytes


async def stream(mesh: Mesh, who: Identity | None, amphora_id: str, beats: int = 1) -> str:
    """Open a heartbeat stream as ``who`` and send ``beats`` empty heartbeats naming ``amphora_id``, 0.2 s
    apart: "OK" when the first was acknowledged at once and the later ones as the contract says (one
    acknowledgement about every ack interval, carrying the highest sequence received), else the status code's
    name."""
    ca = (ca_dir(mesh) / "ca.pem").read_bytes()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=who.key if who else None,
        certificate_chain=who.certificate if who else None,
    )
    options = [("grpc.ssl_target_name_override", pki.HEALTH_IDENTITY)]
    async with grpc.aio.secure_channel(heartbeat_endpoint(mesh), credentials, options=options) as channel:
        call = health_pb2_grpc.AmphoraHealthStub(channel).StreamHeartbeats()
        acks: list[tuple[float, int]] = []  # (when, sequence)
        sent = 0

        async def read_acks() -> None:
            while (ack := await call.read()) is not grpc.aio.EOF:  # pyright: ignore[reportAttributeAccessIssue]
                assert ack.interval.ToTimedelta() == dt.timedelta(seconds=0.2)
                assert ack.ack_interval.ToTimedelta() == dt.timedelta(seconds=1)  # the default
                assert acks[-1][1] < ack.sequence <= sent if acks else ack.sequence == 1
                acks.append((time.monotonic(), ack.sequence))

        reader: asyncio.Task[None] | None = None
        try:
            await call.write(health_pb2.StreamHeartbeatsRequest(amphora_id=amphora_id, sequence=1))
            sent = 1
            reader = asyncio.create_task(read_acks())
            await asyncio.wait_for(_first(acks, reader), 10)
            for sequence in range(2, beats + 1):
                await asyncio.sleep(0.2)
                if reader.done():
                    await reader  # the call's error
                    return "EOF"
                sent = sequence  # before the write: its acknowledgement can arrive while the write is awaited
                await call.write(health_pb2.StreamHeartbeatsRequest(amphora_id=amphora_id, sequence=sequence))
            if reader.done():
                await reader
            # Heartbeats 0.2 s apart with a 1 s ack interval: never more than about 1.1 s between two acks.
            gaps = [b[0] - a[0] for a, b in zip(acks, acks[1:], strict=False)]
            assert max(gaps, default=0.0) < 2.0, f"acknowledgements {gaps} apart"
            assert beats < 10 or len(acks) > 1, "no acknowledgement after the first"
            return "OK"
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        except asyncio.InvalidStateError:  # a write raced the end of the call
            return (await call.code()).name
        finally:
            call.cancel()
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await reader


async def _first(acks: list[tuple[float, int]], reader: asyncio.Task[None]) -> None:
    """Until the first acknowledgement arrived (or the call ended, raising its error)."""
    while not acks:
        if reader.done():
            await reader
            raise AssertionError("the call ended without an acknowledgement")
        await asyncio.sleep(0.01)


def own_identity(mesh: Mesh, amphora_id: str) -> Identity:
    home = amphora_home(mesh, amphora_id)
    return Identity((home / "agent.pem").read_bytes(), (home / "agent.key").read_bytes())


def issued(ca: pki.LocalCA, name: str, validity: dt.timedelta = dt.timedelta(days=1)) -> Identity:
    bundle = ca.issue(name, [ExtendedKeyUsageOID.CLIENT_AUTH], validity)
    return Identity(bundle.certificate, bundle.private_key)


@pytest.fixture(scope="module")
def other_amphora(api: Rest) -> Iterator[str]:
    lb = create_lb(api, "second", vip_address=random_vip(api))
    try:
        (amphora,) = amphorae_of(api, lb["id"])
        yield amphora["id"]
    finally:
        delete_lb(api, lb["id"])


async def test_impostor_amphorae_are_refused(
    mesh: Mesh, api: Rest, web: Web, other_amphora: str, tmp_path: Any
) -> None:
    (amphora,) = amphorae_of(api, web.lb.id)
    mine, other = amphora["id"], other_amphora
    controller_ca = pki.LocalCA(ca_dir(mesh))
    # The controls: each amphora's own certificate, naming itself, is accepted.
    assert await stream(mesh, own_identity(mesh, mine), mine) == "OK"
    assert await stream(mesh, own_identity(mesh, other), other) == "OK"
    # A valid certificate of another amphora.
    assert await stream(mesh, own_identity(mesh, other), mine) == "PERMISSION_DENIED"
    # The right name, signed by the controller CA, but not the serial the amphora row holds (rotated out).
    assert await stream(mesh, issued(controller_ca, pki.amphora_identity(mine)), mine) == "PERMISSION_DENIED"
    # An amphora nobody created.
    stranger = str(uuid.uuid4())
    assert await stream(mesh, issued(controller_ca, pki.amphora_identity(stranger)), stranger) == "PERMISSION_DENIED"
    # A certificate from another CA, an expired one, or none: the TLS handshake itself fails.
    foreign = pki.LocalCA(tmp_path / "other-ca")
    assert await stream(mesh, issued(foreign, pki.amphora_identity(mine)), mine) == "UNAVAILABLE"
    expired = issued(controller_ca, pki.amphora_identity(mine), dt.timedelta(minutes=-1))
    assert await stream(mesh, expired, mine) == "UNAVAILABLE"
    assert await stream(mesh, None, mine) == "UNAVAILABLE"


async def test_a_stream_ends_when_its_certificate_stops_being_current(
    mesh: Mesh, api: Rest, other_amphora: str
) -> None:
    engine = mesh_engine(mesh)
    serial = text("SELECT cert_serial FROM amphora WHERE id = :i")
    rotate = text("UPDATE amphora SET cert_serial = :s WHERE id = :i")
    with engine.begin() as conn:
        current = conn.execute(serial, {"i": other_amphora}).scalar_one()
    opened = asyncio.create_task(stream(mesh, own_identity(mesh, other_amphora), other_amphora, beats=100))
    try:
        await asyncio.sleep(1.0)
        assert not opened.done()
        with engine.begin() as conn:  # what a certificate rotation records
            conn.execute(rotate, {"s": "feedface", "i": other_amphora})
        assert await asyncio.wait_for(opened, 5.0) == "PERMISSION_DENIED"
    finally:
        with engine.begin() as conn:
            conn.execute(rotate, {"s": current, "i": other_amphora})
        engine.dispose()
    # The amphora's own agent, refused meanwhile too, streams again.
    since = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    engine = mesh_engine(mesh)

    def reporting() -> bool:
        with engine.connect() as conn:
            last = conn.execute(
                select(AmphoraHealth.last_update).where(AmphoraHealth.amphora_id == other_amphora)
            ).scalar_one()
        return last > since

    try:
        await asyncio.to_thread(wait_for, reporting, 10.0, "the agent streaming again")
    finally:
        engine.dispose()
