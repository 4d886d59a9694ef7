"""Batched heartbeats: one ``StreamHostHeartbeats`` call carries the heartbeats of every amphora of a host.

An amphora host (``host.py``) serves many amphorae in one process. Each of them streaming on a call of its own
costs the health service one message read per amphora per interval, and that per-message cost is what bounds a
replica; here the host sends one batch per interval with a heartbeat of each amphora in it.

Each amphora keeps its own identity: it *joins* the call with its own certificate and a proof signed with its
own private key over the SHA-256 of the call's client certificate (any amphora's certificate of the host: the
call's certificate authorizes nothing by itself; see ``health.proto``). An amphora joins again with its new
certificate after a rotation, and again a few seconds after the service refused it (its row may not be
written yet). An amphora that dies (the host fences it) is named in the next batch, sent at once, and taken
for dead by the service, as when an agent's own call breaks; a call that breaks takes all its members with
it, as a dead host does.

The reconnect and silence rules are the agent's own (:mod:`.heartbeat`): no acknowledgement for a few
intervals, and the host moves to the next replica, saying goodbye first so that no member is taken for dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import timestamp_pb2

from octavia_mesh.amphora_agent.heartbeat import BACKOFF_S, FAREWELL_S, STABLE_S, Pace, Sampler, channel_options
from octavia_mesh.amphora_agent.identity import AgentIdentity
from octavia_mesh.protos.health.v1 import health_pb2, health_pb2_grpc

logger = logging.getLogger(__name__)

#: What a join's proof signs, before the hexadecimal SHA-256 of the call's certificate (see health.proto).
PROOF_PREFIX = b"octavia-mesh-host-heartbeats:"
#: How long a refused amphora waits before it joins again: the first pause, doubled at every refusal in a row
#: up to the longest (a new amphora is refused until the worker has recorded its certificate, just after boot).
REJOIN_S = (0.05, 2.0)


def proof_message(call_certificate_der: bytes) -> bytes:
    return PROOF_PREFIX + hashlib.sha256(call_certificate_der).hexdigest().encode()


def certificate_der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def sign_join(private_key_pem: bytes, message: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("an amphora's key is an EC key")
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


@dataclass(eq=False, slots=True)
class Member:
    """One amphora of the host, as its batches see it."""

    amphora_id: str
    sampler: Sampler
    identity: AgentIdentity
    refused_until: float = 0.0  # monotonic: not joined again before
    refusals: int = 0  # refused in a row
    joined_with: bytes | None = None  # the certificate (PEM) it joined the open call with; None: not joined
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class Target:
    """Where a host's amphorae report: amphorae with the same target share a call."""

    endpoints: tuple[str, ...]
    ca_bundle: bytes  # what signs the health service (each amphora has its own copy of the file)
    identity: str
    interval_s: float


class HostHeartbeats:
    """The batched call of one target, and the amphorae on it; runs from the first :meth:`add` on."""

    def __init__(self, target: Target, name: str) -> None:
        self._target = target
        self._name = name
        self._members: dict[str, Member] = {}
        self._lost: set[str] = set()  # died since the last batch (and joined on the open call)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.pace = Pace(target.interval_s)

    def add(self, amphora_id: str, sampler: Sampler, identity: AgentIdentity) -> None:
        self._members[amphora_id] = Member(amphora_id, sampler, identity)
        self._lost.discard(amphora_id)
        self._wake.set()  # it joins at once, not an interval later
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"host-heartbeats-{self._name}")

    def remove(self, amphora_id: str) -> None:
        """The amphora died or stopped: the service is told at once that it is gone."""
        member = self._members.pop(amphora_id, None)
        if member is not None and member.joined_with is not None:
            self._lost.add(amphora_id)
            self._wake.set()

    async def stop(self) -> None:
        """End the call as a dying host would: every member still on it is taken for dead."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        endpoints = self._target.endpoints
        index = int(hashlib.sha256(self._name.encode()).hexdigest()[:8], 16) % len(endpoints)
        backoff = BACKOFF_S[0]
        while self._members:
            endpoint = endpoints[index % len(endpoints)]
            began = time.monotonic()
            try:
                await self._stream(endpoint)
            except grpc.aio.AioRpcError as exc:
                logger.info("host heartbeats to %s ended: %s %s", endpoint, exc.code().name, exc.details())
            except (OSError, TimeoutError, ValueError, asyncio.InvalidStateError) as exc:
                logger.info("host heartbeats to %s ended: %s", endpoint, exc)
            except Exception:
                # The sender must outlive any surprise: amphorae that stop reporting get failed over.
                logger.exception("host heartbeats to %s failed", endpoint)
            self.pace.connected_to = ""
            self._lost.clear()  # the service saw the call end: every member is rejoined on the next
            for member in self._members.values():
                member.joined_with = None
            if time.monotonic() - began > STABLE_S:
                backoff = BACKOFF_S[0]
            index += 1
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, BACKOFF_S[1])

    def _credentials(self, identity: AgentIdentity) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self._target.ca_bundle,
            private_key=identity.private_key,
            certificate_chain=identity.certificate,
        )

    async def _stream(self, endpoint: str) -> None:
        """Stream batches to ``endpoint`` until the call ends or no member is left."""
        identity = next(iter(self._members.values())).identity
        message = proof_message(certificate_der(identity.certificate))
        options = channel_options(self._target.identity)
        async with grpc.aio.secure_channel(endpoint, self._credentials(identity), options=options) as channel:
            call = health_pb2_grpc.AmphoraHealthStub(channel).StreamHostHeartbeats()
            pace = self.pace
            pace.opened()

            async def read_acks() -> None:
                while (ack := await call.read()) is not grpc.aio.EOF:  # pyright: ignore[reportAttributeAccessIssue]
                    pace.heard(ack, endpoint)
                    self._refused(ack.refusals)

            reader = asyncio.create_task(read_acks())
            try:
                sequence, next_full = 0, 0.0
                while not reader.done() and (self._members or self._lost):
                    self._wake.clear()  # before the batch: a join or a death noted while it is built wakes the next
                    now = time.monotonic()
                    full = now >= next_full
                    if full:
                        next_full = now + pace.interval_s
                    sequence += 1
                    batch = await self._batch(sequence, message, full)
                    if batch is not None:
                        await call.write(batch)
                    if pace.silent():
                        await _farewell(call, sequence + 1)
                        raise TimeoutError(f"no acknowledgement for {pace.silence_s():g}s")
                    waker = asyncio.create_task(self._wake.wait())
                    await asyncio.wait(
                        [reader, waker], timeout=max(0.0, next_full - time.monotonic()), return_when="FIRST_COMPLETED"
                    )
                    waker.cancel()
                if reader.done():
                    await reader  # raises the call's error, if it ended with one
                else:
                    await _farewell(call, sequence + 1)  # no member left: not a death
            finally:
                reader.cancel()
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await reader

    def _refused(self, refusals: Iterable[health_pb2.AmphoraRefusal]) -> None:
        for refused in refusals:
            member = self._members.get(refused.amphora_id)
            logger.warning("amphora %s refused by the health service: %s", refused.amphora_id or "?", refused.reason)
            if member is not None:
                member.joined_with = None
                member.refused_until = time.monotonic() + min(REJOIN_S[1], REJOIN_S[0] * 2**member.refusals)
                member.refusals = min(member.refusals + 1, 16)

    async def _batch(self, sequence: int, message: bytes, full: bool) -> health_pb2.StreamHostHeartbeatsRequest | None:
        """The next batch: who joins, who died, and the heartbeats of every member (``full``) or of those
        joining only (a batch sent early, for a join or a death); None when an early batch has nothing to say.
        A full batch is sent even empty (every member refused for now): the service acknowledges it, so the
        call does not look silent."""
        batch = health_pb2.StreamHostHeartbeatsRequest(sequence=sequence, lost_amphora_ids=sorted(self._lost))
        self._lost.clear()
        now = time.monotonic()
        beating: list[Member] = []
        for member in list(self._members.values()):
            certificate = member.identity.certificate
            if member.joined_with != certificate and now >= member.refused_until:
                try:
                    proof = sign_join(member.identity.private_key, message)
                    batch.joins.add(certificate=certificate_der(certificate), proof=proof)
                except ValueError as exc:
                    logger.error("amphora %s cannot join: %s", member.amphora_id, exc)
                    member.refused_until = now + REJOIN_S[1]
                    continue
                member.joined_with = certificate
                beating.append(member)
            elif full and member.joined_with is not None:
                member.refusals = 0  # joined, and not refused since
                beating.append(member)
        if beating:
            # One amphora's slow stats socket must not hold the others' heartbeats back: what is not read within
            # half an interval is left out of this batch (an amphora that stays that slow goes quiet alone).
            reads = {asyncio.ensure_future(_sample(m)): m for m in beating}
            done, late = await asyncio.wait(reads, timeout=max(0.1, self.pace.interval_s / 2))
            for task in late:
                task.cancel()
                logger.warning("amphora %s: its report took too long: left out of this batch", reads[task].amphora_id)
            for task, member in reads.items():
                if task not in done:
                    continue
                if task.exception() is not None:
                    logger.warning("amphora %s: no report: %s", member.amphora_id, task.exception())
                    continue  # no heartbeat this time: a report that says nothing would read as HAProxy down
                stamp, report = task.result()
                member.sequence += 1
                batch.heartbeats.add(
                    amphora_id=member.amphora_id, sequence=member.sequence, sample_time=stamp, load_balancers=report
                )
        if not (full or batch.heartbeats or batch.joins or batch.lost_amphora_ids):
            return None
        return batch


async def _sample(member: Member) -> tuple[timestamp_pb2.Timestamp, list[health_pb2.LoadBalancerReport]]:
    """A member's report, and when it was read (the service compares it with the last configuration change)."""
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp, await member.sampler.reports()


async def _farewell(call: grpc.aio.StreamStreamCall, sequence: int) -> None:
    """End the call on purpose: its members are not taken for dead."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            call.write(health_pb2.StreamHostHeartbeatsRequest(sequence=sequence, closing=True)), FAREWELL_S
        )
        await asyncio.wait_for(call.done_writing(), FAREWELL_S)
