"""``StreamHostHeartbeats``: an amphora host's batched call, against the real heartbeat plane (mutual-TLS gRPC
server, certificate checks, batched writes, loss marks) on a real database, in this process.

* amphorae join with their own certificates and proofs; their heartbeats are written, each as its own;
* every way a join can be wrong is refused, with its reason, in the next acknowledgement, and nothing of the
  refused amphora is written, while the good members of the same batch are;
* a member whose certificate stops being current is refused at its next heartbeat after the re-check;
* a member the host names lost, and every member of a call that breaks, is marked lost; a farewell marks none.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from octavia_mesh.common import pki
from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import Amphora, AmphoraHealth, Listener, ListenerStatistics, LoadBalancer
from octavia_mesh.health.events import InMemoryEventPublisher
from octavia_mesh.health.server import HeartbeatPlane, build
from octavia_mesh.health.settings import HealthSettings
from octavia_mesh.protos.health.v1 import health_pb2, health_pb2_grpc

#: What a join's proof signs before the call certificate's hash, as ``health.proto`` says.
PREFIX = b"octavia-mesh-host-heartbeats:"


@dataclass(frozen=True)
class Amp:
    id: str
    lb: str
    listener: str
    certificate: bytes  # PEM
    key: bytes  # PEM

    def der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.certificate).public_bytes(serialization.Encoding.DER)


def proof(key_pem: bytes, call_certificate_pem: bytes) -> bytes:
    der = x509.load_pem_x509_certificate(call_certificate_pem).public_bytes(serialization.Encoding.DER)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.sign(PREFIX + hashlib.sha256(der).hexdigest().encode(), ec.ECDSA(hashes.SHA256()))


def join(amp: Amp, call: Amp, key: bytes | None = None) -> health_pb2.HostedAmphora:
    return health_pb2.HostedAmphora(certificate=amp.der(), proof=proof(key or amp.key, call.certificate))


def beat(amp: Amp, sequence: int, total: int = 10) -> health_pb2.StreamHeartbeatsRequest:
    heartbeat = health_pb2.StreamHeartbeatsRequest(amphora_id=amp.id, sequence=sequence)
    heartbeat.sample_time.GetCurrentTime()
    report = heartbeat.load_balancers.add(load_balancer_id=amp.lb, running=True)
    listener = report.listeners.add(name=amp.listener, status="OPEN")
    listener.counters.total_connections = total
    return heartbeat


@pytest.fixture
async def plane(engine: AsyncEngine, database_url: str, tmp_path: Path) -> AsyncIterator[HeartbeatPlane]:
    settings = HealthSettings(
        database_url=database_url,
        heartbeat_listen="127.0.0.1:0",
        ca_dir=str(tmp_path / "ca"),
        replica_name="test",
        flush_interval_s=0.05,
        identity_recheck_s=0.2,
        ack_interval_s=0,  # every batch acknowledged: the test reads each batch's refusals
    )
    plane = build(settings, engine=engine, publisher=InMemoryEventPublisher())
    await plane.start()
    try:
        yield plane
    finally:
        await plane.stop()


async def plant(engine: AsyncEngine, ca: pki.LocalCA, count: int) -> list[Amp]:
    """``count`` load balancers, each with a listener and an ALLOCATED amphora holding a fresh certificate."""
    _, write = session_factories(engine)
    amps = []
    common = {"project_id": "p", "provisioning_status": "ACTIVE", "operating_status": "ONLINE"}
    async with write() as session, session.begin():
        for _ in range(count):
            amp_id, lb, listener = (str(uuid.uuid4()) for _ in range(3))
            issued = ca.issue(pki.amphora_identity(amp_id), [ExtendedKeyUsageOID.CLIENT_AUTH], dt.timedelta(days=1))
            session.add(LoadBalancer(id=lb, provider="amphora", **common))
            await session.flush()
            session.add(Listener(id=listener, load_balancer_id=lb, protocol="HTTP", protocol_port=80, **common))
            session.add(
                Amphora(
                    id=amp_id, load_balancer_id=lb, status="ALLOCATED", cert_serial=issued.serial, role="STANDALONE"
                )
            )
            amps.append(Amp(amp_id, lb, listener, issued.certificate, issued.private_key))
    return amps


class HostCall:
    """A host's call, opened with ``opener``'s certificate; each batch's acknowledgement is read back."""

    def __init__(self, plane: HeartbeatPlane, ca: bytes, opener: Amp) -> None:
        credentials = grpc.ssl_channel_credentials(ca, opener.key, opener.certificate)
        options = [("grpc.ssl_target_name_override", pki.HEALTH_IDENTITY)]
        self.channel = grpc.aio.secure_channel(f"127.0.0.1:{plane.port}", credentials, options=options)
        self.call: Any = health_pb2_grpc.AmphoraHealthStub(self.channel).StreamHostHeartbeats()
        self.sequence = 0

    async def send(self, **fields: Any) -> list[tuple[str, str]]:
        """One batch; the refusals of its acknowledgement as (amphora id, reason)."""
        self.sequence += 1
        await self.call.write(health_pb2.StreamHostHeartbeatsRequest(sequence=self.sequence, **fields))
        ack = await asyncio.wait_for(self.call.read(), 10)
        assert ack.sequence == self.sequence
        return [(r.amphora_id, r.reason) for r in ack.refusals]

    async def close(self, farewell: bool) -> None:
        if farewell:
            await self.call.write(health_pb2.StreamHostHeartbeatsRequest(sequence=self.sequence + 1, closing=True))
            await self.call.done_writing()
            with contextlib.suppress(grpc.aio.AioRpcError):
                await asyncio.wait_for(self.call.code(), 10)
        self.call.cancel()
        await self.channel.close()


async def health_rows(engine: AsyncEngine) -> dict[str, tuple[dt.datetime, dt.datetime | None]]:
    read, _ = session_factories(engine)
    async with read() as session:
        rows = await session.execute(select(AmphoraHealth.amphora_id, AmphoraHealth.last_update, AmphoraHealth.lost_at))
        return {r.amphora_id: (r.last_update, r.lost_at) for r in rows}


async def eventually(check: Any, what: str, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return result


async def test_amphorae_join_with_their_own_certificates_and_each_heartbeat_is_written_as_its_own(
    plane: HeartbeatPlane, engine: AsyncEngine, tmp_path: Path
) -> None:
    ca = pki.LocalCA(tmp_path / "ca")
    a, b, c = await plant(engine, ca, 3)
    host = HostCall(plane, ca.ca_pem, a)  # the call's certificate: any amphora's of the host
    try:
        assert await host.send(joins=[join(a, a), join(b, a)], heartbeats=[beat(a, 1, 7), beat(b, 1, 9)]) == []
        # A member that joins later, in a batch of its own.
        assert await host.send(joins=[join(c, a)], heartbeats=[beat(c, 1, 11)]) == []

        async def written() -> bool:
            read, _ = session_factories(engine)
            async with read() as session:
                rows = await session.execute(
                    select(ListenerStatistics.amphora_id, ListenerStatistics.total_connections)
                )
                found = {r.amphora_id: r.total_connections for r in rows}
                return {k: v for k, v in found.items() if k in (a.id, b.id, c.id)} == {a.id: 7, b.id: 9, c.id: 11}

        await eventually(written, "each member's own statistics")
        assert {a.id, b.id, c.id} <= set(await health_rows(engine))
        assert plane.ingest.streams == 3  # one stream per member: silence and revocation work per amphora
    finally:
        await host.close(farewell=True)


async def test_every_wrong_join_is_refused_with_its_reason_and_nothing_of_it_is_written(
    plane: HeartbeatPlane, engine: AsyncEngine, tmp_path: Path
) -> None:
    ca = pki.LocalCA(tmp_path / "ca")
    good, other, rotated = await plant(engine, ca, 3)
    stranger_id = str(uuid.uuid4())
    stranger = ca.issue(pki.amphora_identity(stranger_id), [ExtendedKeyUsageOID.CLIENT_AUTH], dt.timedelta(days=1))
    unknown = Amp(stranger_id, good.lb, good.listener, stranger.certificate, stranger.private_key)
    foreign_ca = pki.LocalCA(tmp_path / "foreign")
    forged = foreign_ca.issue(pki.amphora_identity(other.id), [ExtendedKeyUsageOID.CLIENT_AUTH], dt.timedelta(days=1))
    foreign = Amp(other.id, other.lb, other.listener, forged.certificate, forged.private_key)
    reissued = ca.issue(pki.amphora_identity(rotated.id), [ExtendedKeyUsageOID.CLIENT_AUTH], dt.timedelta(days=1))
    stale = Amp(rotated.id, rotated.lb, rotated.listener, reissued.certificate, reissued.private_key)
    host = HostCall(plane, ca.ca_pem, good)
    try:
        refused = await host.send(
            joins=[
                join(good, good),
                join(other, good, key=good.key),  # another amphora's key signed the proof
                join(foreign, good),  # a certificate of another CA
                join(unknown, good),  # an amphora nobody created
                join(stale, good),  # the right name, not the serial the row holds
            ],
            heartbeats=[beat(good, 1), beat(other, 1), beat(unknown, 1), beat(stale, 1)],
        )
        assert sorted(refused) == sorted(
            [
                ("", f"amphora {other.id}: the proof is not signed by the certificate's key"),
                ("", "the certificate is not issued by the controller CA"),
                (stranger_id, "unknown amphora"),
                (rotated.id, "the certificate is not the amphora's current one"),
                # a heartbeat of an amphora whose join was not even read as its own
                (other.id, "it has not joined this call"),
            ]
        )
        # A proof made for another host's call (bound to another certificate) is no proof on this one.
        assert await host.send(joins=[join(other, rotated)]) == [
            ("", f"amphora {other.id}: the proof is not signed by the certificate's key")
        ]
        await eventually(lambda: _has(engine, good.id), "the good member's heartbeat written")
        await asyncio.sleep(0.3)  # several flushes
        heard = set(await health_rows(engine))  # (the database is the module's: earlier tests' rows are there)
        assert good.id in heard and not heard & {other.id, rotated.id, stranger_id}
    finally:
        await host.close(farewell=True)


async def _has(engine: AsyncEngine, amphora_id: str) -> bool:
    return amphora_id in await health_rows(engine)


async def test_a_member_whose_certificate_stops_being_current_is_refused_at_its_next_heartbeat(
    plane: HeartbeatPlane, engine: AsyncEngine, tmp_path: Path
) -> None:
    ca = pki.LocalCA(tmp_path / "ca")
    kept, revoked = await plant(engine, ca, 2)
    host = HostCall(plane, ca.ca_pem, kept)
    try:
        assert (
            await host.send(joins=[join(kept, kept), join(revoked, kept)], heartbeats=[beat(kept, 1), beat(revoked, 1)])
            == []
        )
        _, write = session_factories(engine)
        async with write() as session, session.begin():  # what a rotation records
            await session.execute(update(Amphora).where(Amphora.id == revoked.id).values(cert_serial="feedface"))
        sequence = 1

        async def refused() -> list[tuple[str, str]]:
            nonlocal sequence
            sequence += 1
            return await host.send(heartbeats=[beat(kept, sequence), beat(revoked, sequence)])

        found = await eventually(refused, "the revoked member refused")
        assert found == [(revoked.id, "the certificate is not the amphora's current one")]
        # The other member streams on; the revoked one is not a member any more.
        assert await host.send(heartbeats=[beat(kept, sequence + 1)]) == []
        assert await host.send(heartbeats=[beat(revoked, sequence + 2)]) == [
            (revoked.id, "it has not joined this call")
        ]
    finally:
        await host.close(farewell=True)


@pytest.mark.parametrize("end", ["lost", "broken", "farewell"])
async def test_members_are_marked_lost_when_the_host_says_so_or_its_call_breaks_not_on_a_farewell(
    plane: HeartbeatPlane, engine: AsyncEngine, tmp_path: Path, end: str
) -> None:
    ca = pki.LocalCA(tmp_path / "ca")
    a, b = await plant(engine, ca, 2)
    host = HostCall(plane, ca.ca_pem, a)
    closed = False
    try:
        assert await host.send(joins=[join(a, a), join(b, a)], heartbeats=[beat(a, 1), beat(b, 1)]) == []

        async def both_heard() -> bool:
            return {a.id, b.id} <= set(await health_rows(engine))

        await eventually(both_heard, "both members written")
        marked_before = plane.loss.marked
        if end == "lost":  # the host fenced b: named in the next batch
            assert await host.send(lost_amphora_ids=[b.id], heartbeats=[beat(a, 2)]) == []
            expected = {b.id}
        else:
            await host.close(farewell=end == "farewell")
            closed = True
            expected = {a.id, b.id} if end == "broken" else set()

        async def marked() -> bool:
            return plane.loss.marked - marked_before >= len(expected)

        if expected:
            await eventually(marked, "the losses marked")
        await asyncio.sleep(0.3)
        rows = await health_rows(engine)
        lost = {amphora for amphora in (a.id, b.id) if (row := rows[amphora])[1] and row[1] >= row[0]}
        assert lost == expected
        assert plane.ingest.streams == (1 if end == "lost" else 0)
    finally:
        if not closed:
            await host.close(farewell=True)
