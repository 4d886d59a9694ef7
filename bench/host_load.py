"""The health benchmark's amphora hosts: simulated amphorae batched on ``StreamHostHeartbeats`` calls.

Each host is one mutual-TLS call (opened with its first amphora's certificate) that its amphorae join with
their own certificates and proofs (``health.proto``), then one batch per interval with a heartbeat of every
amphora in it, as ``amphora_agent/hostbeats.py`` sends them. Batches are built from the pre-serialized
heartbeats of ``health_bench.Beats``: a batch is its sequence (field 1) followed by each heartbeat as field 3.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, Protocol

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from octavia_mesh.common import pki
from octavia_mesh.health.hosted import proof_message
from octavia_mesh.protos.health.v1 import health_pb2

METHOD = "/octavia_mesh.health.v1.AmphoraHealth/StreamHostHeartbeats"
CLOSING = b"\x28\x01"  # field 5 (closing) = true


class HostedAmp(Protocol):
    amphora_id: str
    certificate: bytes
    key: bytes


class Beating(Protocol):
    def beat(self, sequence: int, stamp: bytes) -> bytes: ...


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def joins(amps: list[Any]) -> bytes:
    """Field 2 of a first batch: every amphora joining, its proof bound to the call's (first amphora's)
    certificate."""
    ders = [x509.load_pem_x509_certificate(a.certificate).public_bytes(serialization.Encoding.DER) for a in amps]
    message = proof_message(ders[0])
    out = []
    for amp, der in zip(amps, ders, strict=True):
        key = serialization.load_pem_private_key(amp.key, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        out.append(field(2, field(1, der) + field(2, key.sign(message, ec.ECDSA(hashes.SHA256())))))
    return b"".join(out)


async def host_call(
    amps: list[Any],
    beats: list[Beating],
    endpoint: str,
    ca: bytes,
    interval: float,
    stamp: Callable[[], bytes],
    opening: asyncio.Semaphore,
    go: asyncio.Event,
    stop: asyncio.Event,
    counts: dict[str, int],
    connected: Callable[[int], None],
    rng: random.Random,
) -> None:
    """One host: join every amphora, then a batch per ``interval`` until ``stop``; a farewell at the end."""
    loop = asyncio.get_running_loop()
    credentials = grpc.ssl_channel_credentials(ca, amps[0].key, amps[0].certificate)
    options = [("grpc.ssl_target_name_override", pki.HEALTH_IDENTITY), ("grpc.http2.bdp_probe", 0)]
    first = joins(amps)
    async with opening:
        channel = grpc.aio.secure_channel(endpoint, credentials, options=options)
        call: Any = channel.stream_stream(METHOD)()
        sequence = 1
        await call.write(b"\x08" + varint(sequence) + first + batch_of(beats, sequence, stamp()))
        ack = health_pb2.StreamHostHeartbeatsResponse.FromString(await call.read())
    try:
        if ack.refusals:
            raise RuntimeError(f"the service refused {len(ack.refusals)} amphorae: {ack.refusals[0].reason}")
        connected(len(amps))
        await go.wait()

        async def read_acks() -> None:
            while (raw := await call.read()) is not grpc.aio.EOF:  # pyright: ignore[reportAttributeAccessIssue]
                counts["acked"] += 1
                refused = health_pb2.StreamHostHeartbeatsResponse.FromString(raw).refusals
                counts["refused"] = counts.get("refused", 0) + len(refused)

        reader = asyncio.create_task(read_acks())
        due = loop.time() + rng.random() * interval
        while not stop.is_set() and not reader.done():
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due + interval, loop.time())  # late: no burst to catch up, as a host
            sequence += 1
            await call.write(b"\x08" + varint(sequence) + batch_of(beats, sequence, stamp()))
        if reader.done():
            await reader
            raise RuntimeError("the service ended a host call")
        await call.write(b"\x08" + varint(sequence + 1) + CLOSING)  # a host's farewell: nobody is lost
        await call.done_writing()
        await call.code()
        await reader
    finally:
        await channel.close()


def batch_of(beats: list[Beating], sequence: int, stamp: bytes) -> bytes:
    return b"".join(field(3, b.beat(sequence, stamp)) for b in beats)
