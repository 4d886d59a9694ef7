"""``octavia_mesh.health.v1.AmphoraHealth``: who may stream, and each heartbeat handed to the ingest.

A stream is accepted when its client certificate (already verified against the controller CA by the TLS
handshake) names an amphora, ``amphora-<id>``, that exists, is not deleted, and whose current certificate
serial (``amphora.cert_serial``) is this certificate's. Every heartbeat must name that same amphora. A
stream whose certificate stops being current while it is open (a rotation, a deletion) is ended with
``PERMISSION_DENIED`` at its next heartbeat; a stream open while the service stops is ended with
``UNAVAILABLE``, which sends the agent to another replica.

An amphora host's batched call (``StreamHostHeartbeats``) carries many amphorae's heartbeats; each amphora
joins it with its own certificate and proof, checked by :mod:`octavia_mesh.health.hosted`, and is then a
stream of its own in the ingest.

Acknowledgements are coalesced (``ack_interval_s``): the first heartbeat of a stream is acknowledged at once,
then one heartbeat about every ack interval, each acknowledgement carrying the highest sequence received. An
acknowledgement is a message written, which costs a replica more CPU than reading a heartbeat: one per
heartbeat was half of what bounds a replica's rate. The agent's silence bound grows with the ack interval it
is told (3 of them), so the default (1 s, at most 3 s) keeps it where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from google.protobuf import duration_pb2

from octavia_mesh.common import pki
from octavia_mesh.health.hosted import HostCall
from octavia_mesh.health.ingest import AmphoraDirectory, Ingest
from octavia_mesh.health.loss import LossMonitor
from octavia_mesh.health.store import refusal
from octavia_mesh.health.tls import peer_certificate
from octavia_mesh.protos.health.v1 import health_pb2, health_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["AmphoraHealth"].full_name
#: The longest a refused stream is held for the agent's first heartbeat (see ``_refuse``).
FIRST_HEARTBEAT_WAIT_S = 1.0


class AmphoraHealthServicer(health_pb2_grpc.AmphoraHealthServicer):
    def __init__(
        self,
        ingest: Ingest,
        directory: AmphoraDirectory,
        interval_s: float,
        loss: LossMonitor | None = None,
        ack_interval_s: float = 0.0,
        authorities: list[x509.Certificate] | None = None,
    ) -> None:
        self._ingest = ingest
        #: The controller CA's certificates: what an amphora joining a host call must be issued by.
        self._authorities = authorities or []
        self._loss = loss
        self._directory = directory
        self._interval = duration_pb2.Duration()
        self._interval.FromNanoseconds(int(interval_s * 1e9))
        self._ack_interval = duration_pb2.Duration()
        self._ack_interval.FromNanoseconds(int(ack_interval_s * 1e9))
        # A heartbeat is acknowledged once this long passed since the last acknowledgement: half an interval
        # early, so that a heartbeat arriving a little before the ack interval is up is not skipped for the
        # next one (which would stretch the gap to ack interval + heartbeat interval).
        self._ack_after_s = ack_interval_s - interval_s / 2
        #: Set when the service stops: open streams end at their next heartbeat.
        self.closing = False

    async def StreamHeartbeats(  # pyright: ignore[reportIncompatibleMethodOverride]
        self,
        request_iterator: AsyncIterator[health_pb2.StreamHeartbeatsRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        # Messages are read and acknowledged with context.read()/write() rather than through the request
        # iterator and a generator: one layer less per heartbeat, the cost that bounds a replica's rate.
        certificate = await _client_certificate(context)
        amphora_id = pki.amphora_id_of(pki.common_name(certificate))
        serial = pki.serial_hex(certificate)
        if amphora_id is None:
            logger.warning("refused heartbeats from %s: certificate names no amphora", context.peer())
            await _refuse(context, "the certificate names no amphora")
        assert amphora_id is not None
        record = await self._directory.get(amphora_id)
        reason = refusal(record, serial)
        if reason is not None:
            logger.warning("refused heartbeats of amphora %s (serial %s): %s", amphora_id, serial, reason)
            await _refuse(context, f"amphora {amphora_id}: {reason}")
        # Checked once per stream; the flusher re-checks the row every identity_recheck_s.
        stream = self._ingest.open(amphora_id, serial, context.peer(), record)
        farewell = False
        ack = health_pb2.StreamHeartbeatsResponse(interval=self._interval, ack_interval=self._ack_interval)
        pacer = _AckPacer(self._ack_after_s)
        try:
            while True:
                heartbeat = await context.read()
                if heartbeat is grpc.aio.EOF:  # pyright: ignore[reportAttributeAccessIssue]  # grpc's stubs lack EOF
                    break
                if heartbeat.closing:  # the agent ends this call on purpose: not a loss
                    farewell = heartbeat.amphora_id == amphora_id
                    break
                if self.closing:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "this health replica is stopping")
                if stream.revoked is not None:
                    logger.warning("ending heartbeats of amphora %s: %s", amphora_id, stream.revoked)
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"amphora {amphora_id}: {stream.revoked}")
                if heartbeat.amphora_id != amphora_id:
                    await context.abort(
                        grpc.StatusCode.PERMISSION_DENIED,
                        f"the certificate is amphora {amphora_id}'s, not {heartbeat.amphora_id or 'empty'}'s",
                    )
                await self._ingest.admit(stream, heartbeat)
                if not pacer.due():
                    continue
                ack.sequence = heartbeat.sequence  # serialized by the write
                await context.write(ack)
            # The requests ended with no farewell: gRPC shows a broken connection (the agent's process died)
            # exactly as a clean end, which is why the agent says goodbye before every end it chooses.
            if not farewell and not self.closing and self._loss is not None and stream.revoked is None:
                self._loss.lost(amphora_id, "broke (connection closed with no farewell)")
        finally:
            self._ingest.close(stream)

    async def StreamHostHeartbeats(  # pyright: ignore[reportIncompatibleMethodOverride]
        self,
        request_iterator: AsyncIterator[health_pb2.StreamHostHeartbeatsRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        certificate = await _client_certificate(context)
        call = HostCall(
            self._ingest,
            self._directory,
            self._loss,
            self._authorities,
            certificate.public_bytes(Encoding.DER),
            context.peer(),
        )
        farewell = False
        ack = health_pb2.StreamHostHeartbeatsResponse(interval=self._interval, ack_interval=self._ack_interval)
        pacer = _AckPacer(self._ack_after_s)
        try:
            while True:
                batch = await context.read()
                if batch is grpc.aio.EOF:  # pyright: ignore[reportAttributeAccessIssue]  # grpc's stubs lack EOF
                    break
                if batch.closing:  # the host ends this call on purpose: no member is lost
                    farewell = True
                    break
                if self.closing:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "this health replica is stopping")
                if batch.joins:
                    await call.join(list(batch.joins))
                call.lost(list(batch.lost_amphora_ids), "died (its host says)")
                call.beat(list(batch.heartbeats))
                if not pacer.due(now=bool(call.refusals)):  # refusals are told at once
                    continue
                ack.sequence = batch.sequence
                ack.refusals.extend(call.refusals)
                call.refusals.clear()
                await context.write(ack)
                del ack.refusals[:]
        finally:
            call.close(broken=not farewell and not self.closing)


class _AckPacer:
    """When a call's next acknowledgement is due: the first message at once, then once ``after_s`` passed since
    the last one (every message when ``after_s`` is not positive)."""

    __slots__ = ("_after_s", "_acked_at")

    def __init__(self, after_s: float) -> None:
        self._after_s = after_s
        self._acked_at = -float("inf")

    def due(self, now: bool = False) -> bool:
        if self._after_s <= 0:
            return True
        clock = time.monotonic()
        if not now and clock - self._acked_at < self._after_s:
            return False
        self._acked_at = clock
        return True


async def _client_certificate(context: grpc.aio.ServicerContext) -> x509.Certificate:
    """The call's verified client certificate; the call is aborted without one."""
    certificate = peer_certificate(context)
    if certificate is None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required")
    assert certificate is not None
    return certificate


async def _refuse(context: grpc.aio.ServicerContext, details: str) -> None:
    """End a stream as it opens with ``PERMISSION_DENIED``, once the agent's first heartbeat is read (it writes
    one as the call opens; at most :data:`FIRST_HEARTBEAT_WAIT_S`): an end that races that write reaches a
    ``grpc.aio`` client as ``INTERNAL`` (its failed send), not as the refusal, and a refused agent must know
    it was refused (seen once in a loaded test run)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(context.read(), FIRST_HEARTBEAT_WAIT_S)
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, details)
