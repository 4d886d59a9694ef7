"""The provider-command stream's contract on NATS JetStream, with no database code.

Commands are ``ProviderCommand`` messages (``protos/octavia_mesh/provider/v1/commands.proto``) on the
work-queue stream ``PROVIDER_COMMANDS``, subject ``octavia.provider.v1.<provider>.<kind>.<operation>``, each
published with its command id as ``Nats-Msg-Id``. The mesh's outbox (``octavia_mesh.common.commands``)
publishes them; the worker and provider agents consume them (:mod:`.commands`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import APIError, NotFoundError

from octavia_mesh.protos.provider.v1 import commands_pb2

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

STREAM = "PROVIDER_COMMANDS"
SUBJECT_PREFIX = "octavia.provider.v1"
#: A re-published command inside this window is dropped by JetStream itself.
DUPLICATE_WINDOW_S = 300.0

Kind = commands_pb2.ResourceKind
Op = commands_pb2.Operation


def subject(provider: str, kind: int, operation: int) -> str:
    """``octavia.provider.v1.<provider>.<kind>.<operation>``, lower case."""
    kind_name = Kind.Name(kind).removeprefix("RESOURCE_KIND_").lower()  # type: ignore[arg-type]
    op_name = Op.Name(operation).removeprefix("OPERATION_").lower()  # type: ignore[arg-type]
    return f"{SUBJECT_PREFIX}.{provider}.{kind_name}.{op_name}"


def provider_filter(provider: str) -> str:
    """The subject filter of every command for ``provider``."""
    return f"{SUBJECT_PREFIX}.{provider}.>"


async def connect(url: str, name: str) -> tuple[NATS, JetStreamContext]:
    """Connect to NATS, retrying forever in the background once connected."""
    client = await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=5)
    return client, client.jetstream()


async def close_nats(client: NATS, timeout_s: float = 2.0) -> None:
    """Drain the connection, but never for long: a pull subscription waiting on the server can hold a drain
    for its whole timeout, and a stopping service must not make its supervisor reach for SIGKILL."""
    try:
        await asyncio.wait_for(client.drain(), timeout_s)
    except Exception:  # a timeout, or NATS already gone: close is what is left
        logger.info("NATS drain did not finish in %.0fs; closing", timeout_s)
        await client.close()


async def ensure_stream(js: JetStreamContext, replicas: int = 1, patience_s: float = 30.0) -> None:
    """Create the command stream with ``replicas`` copies (JetStream's ``num_replicas``: 3 on a 3-node NATS
    cluster, so that commands survive the loss of a server), or raise an existing stream's count to it.

    Only ever raised: every service ensures the stream at start-up, and one configured with the default (1)
    must not undo what the deployment asked of another (JetStream moves a stream from R1 to R3 online).
    A JetStream call that times out is asked again for up to ``patience_s``: a cluster electing a leader, or a
    busy server, answers late, and a service should not fail its start for that (each call is safe to repeat).
    """
    deadline = time.monotonic() + patience_s
    try:
        info = await patiently(lambda: js.stream_info(STREAM), deadline)
    except NotFoundError:
        config = StreamConfig(
            name=STREAM,
            subjects=[f"{SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
            num_replicas=replicas,
        )
        try:
            await patiently(lambda: js.add_stream(config), deadline)
            return
        except APIError:
            try:  # another service (or our own call that timed out) created it: go on as if found
                info = await patiently(lambda: js.stream_info(STREAM), deadline)
            except NotFoundError:
                pass
            else:
                return await _raise_replicas(js, info, replicas, deadline)
            raise  # refused for itself (e.g. more replicas than a single server has): say why
    await _raise_replicas(js, info, replicas, deadline)


async def _raise_replicas(js: JetStreamContext, info: StreamInfo, replicas: int, deadline: float) -> None:
    current = info.config.num_replicas or 1
    if replicas > current:
        logger.info("raising stream %s from %d to %d replicas", STREAM, current, replicas)
        config = dataclasses.replace(info.config, num_replicas=replicas)
        await patiently(lambda: js.update_stream(config), deadline)


async def patiently(call: Callable[[], Awaitable[_T]], deadline: float) -> _T:
    """``call()``, asked again while it times out and ``deadline`` (monotonic) is not reached."""
    while True:
        try:
            return await call()
        except NatsTimeoutError:
            if time.monotonic() >= deadline:
                raise
            logger.info("JetStream did not answer in time; asking again")
            await asyncio.sleep(0.5)
