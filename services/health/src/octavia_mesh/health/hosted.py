"""An amphora host's call (``StreamHostHeartbeats``): many amphorae's heartbeats in one stream of batches.

Reading a message costs the service far more than the heartbeat in it (``grpc.aio``'s per-message cost bounds
a replica at a few thousand messages a CPU-second), so a host that serves many amphorae sends one batch per
interval instead of each amphora having a call of its own. The trust stays per amphora:

* the call's own client certificate only has to chain to the controller CA (the TLS handshake checks that);
  it authorizes nothing by itself;
* each amphora *joins* the call with its own certificate and a proof signed with its own private key over
  the SHA-256 of the call's certificate (:func:`proof_message`), so a proof is good on this host's calls only;
  the certificate is checked here as the handshake checks an agent's (issuer, validity, client use) and then
  against the amphora's row exactly as a ``StreamHeartbeats`` call's is (:func:`~.store.refusal`);
* only heartbeats of members are taken, each into a :class:`~.ingest.Stream` of its own, so batching,
  revocation, silence and loss work per amphora as for agents' own calls.

What refusals the service has are sent back with the next acknowledgement (at once, not coalesced); the host
joins a refused amphora again later (after a certificate rotation, say).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from octavia_mesh.common import pki
from octavia_mesh.common.db.models import utcnow
from octavia_mesh.health.ingest import AmphoraDirectory, Ingest, Stream
from octavia_mesh.health.loss import LossMonitor
from octavia_mesh.health.store import refusal
from octavia_mesh.protos.health.v1 import health_pb2

logger = logging.getLogger(__name__)

#: What a join's proof signs, before the hexadecimal SHA-256 of the call's certificate (see health.proto).
PROOF_PREFIX = b"octavia-mesh-host-heartbeats:"
#: Joins checked between two yields to the event loop (a host joining thousands of amphorae at once).
JOINS_PER_YIELD = 50


def proof_message(call_certificate_der: bytes) -> bytes:
    """The bytes every amphora joining a call whose client certificate is ``call_certificate_der`` signs."""
    return PROOF_PREFIX + hashlib.sha256(call_certificate_der).hexdigest().encode()


class Refused(Exception):
    """A join the service does not take; the message says why."""


def verify_join(join: health_pb2.HostedAmphora, authorities: list[x509.Certificate], message: bytes) -> tuple[str, str]:
    """The amphora id and certificate serial a join proves, or :class:`Refused`."""
    try:
        certificate = x509.load_der_x509_certificate(join.certificate)
    except ValueError:
        raise Refused("the certificate is not DER") from None
    if not any(_issued_by(certificate, ca) for ca in authorities):
        raise Refused("the certificate is not issued by the controller CA")
    now = dt.datetime.now(dt.UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise Refused("the certificate is expired or not yet valid")
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise Refused("the certificate is not for client use")
    amphora_id = pki.amphora_id_of(pki.common_name(certificate))
    if amphora_id is None:
        raise Refused("the certificate names no amphora")
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Refused(f"amphora {amphora_id}: the certificate's key is not an EC key")
    try:
        key.verify(join.proof, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Refused(f"amphora {amphora_id}: the proof is not signed by the certificate's key") from None
    return amphora_id, pki.serial_hex(certificate)


def _issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class HostCall:
    """The members of one host call, and what is refused on it until the next acknowledgement."""

    def __init__(
        self,
        ingest: Ingest,
        directory: AmphoraDirectory,
        loss: LossMonitor | None,
        authorities: list[x509.Certificate],
        call_certificate_der: bytes,
        peer: str,
    ) -> None:
        self._ingest = ingest
        self._directory = directory
        self._loss = loss
        self._authorities = authorities
        self._message = proof_message(call_certificate_der)
        self._peer = peer
        self.members: dict[str, Stream] = {}
        self.refusals: list[health_pb2.AmphoraRefusal] = []
        self._refused: set[str] = set()  # in this batch: their heartbeats in it are not refused again

    def _refuse(self, amphora_id: str, reason: str) -> None:
        logger.warning("refused amphora %s on host call %s: %s", amphora_id or "?", self._peer, reason)
        self.refusals.append(health_pb2.AmphoraRefusal(amphora_id=amphora_id, reason=reason))
        self._refused.add(amphora_id)
        self._leave(amphora_id)

    def _leave(self, amphora_id: str) -> Stream | None:
        stream = self.members.pop(amphora_id, None)
        if stream is not None:
            self._ingest.close(stream)
        return stream

    async def join(self, joins: list[health_pb2.HostedAmphora]) -> None:
        proven: dict[str, str] = {}
        for n, join in enumerate(joins, 1):
            if n % JOINS_PER_YIELD == 0:
                await asyncio.sleep(0)  # two signature checks each: other calls' heartbeats are read meanwhile
            try:
                amphora_id, serial = verify_join(join, self._authorities, self._message)
            except Refused as exc:
                self._refuse("", str(exc))
                continue
            proven[amphora_id] = serial
        # The directory answers concurrent lookups with one query: a host joins its amphorae in one batch.
        records = await asyncio.gather(*(self._directory.get(amphora_id) for amphora_id in proven))
        for (amphora_id, serial), record in zip(proven.items(), records, strict=True):
            reason = refusal(record, serial)
            if reason is not None:
                self._refuse(amphora_id, reason)
                continue
            self._leave(amphora_id)  # joined again (a rotated certificate): the new serial from now on
            self.members[amphora_id] = self._ingest.open(amphora_id, serial, self._peer, record)

    def beat(self, heartbeats: list[health_pb2.StreamHeartbeatsRequest]) -> None:
        received_at = utcnow()  # one clock read for the batch: they arrived together
        for heartbeat in heartbeats:
            amphora_id = heartbeat.amphora_id
            stream = self.members.get(amphora_id)
            if stream is None:
                if amphora_id not in self._refused:
                    self._refuse(amphora_id, "it has not joined this call")
            elif stream.revoked is not None:
                self._refuse(amphora_id, stream.revoked)
            elif heartbeat.closing:  # it leaves on purpose: not a loss
                self._leave(amphora_id)
            else:
                self._ingest.offer(stream, heartbeat, received_at)
        self._refused.clear()

    def lost(self, amphora_ids: list[str], why: str) -> None:
        """Members that died: each is marked lost (the host saw it die), as a broken call of its own would be."""
        for amphora_id in amphora_ids:
            stream = self._leave(amphora_id)
            if stream is not None and stream.revoked is None and self._loss is not None:
                self._loss.lost(amphora_id, why)

    def close(self, broken: bool) -> None:
        """The call ended: every member leaves, lost when the call ``broken`` (no farewell)."""
        if broken:
            self.lost(list(self.members), "broke (its host's call closed with no farewell)")
        for amphora_id in list(self.members):
            self._leave(amphora_id)
