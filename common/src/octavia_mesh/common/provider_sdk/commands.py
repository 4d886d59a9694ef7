"""Taking a provider's commands from JetStream, as the worker does for the in-tree providers.

Commands are ``ProviderCommand`` messages on the stream ``PROVIDER_COMMANDS``
under ``octavia.provider.v1.<provider>.>``; each provider has one durable pull
consumer, ``provider-<provider>``, shared by all its replicas (each command
goes to one of them). A command is acknowledged once the handler returns; a
handler that raises gets the command again after a back-off, and one that
takes long keeps it from being redelivered meanwhile. The API's outbox
relay publishes a command again while no report has completed it (JetStream
lets the copy through once its duplicate window, 5 minutes, has passed), so a
provider that acknowledged a command but never reported on it gets it once
more. Handlers must therefore be idempotent: read the objects
(``DriverLibrary.get_*``) and act on their current state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from octavia_mesh.common import commands
from octavia_mesh.protos.provider.v1 import commands_pb2

logger = logging.getLogger(__name__)

Handler = Callable[[commands_pb2.ProviderCommand], Awaitable[None]]
#: How long one pull waits for commands.
FETCH_WAIT_S = 1.0


async def consume(
    nats_url: str,
    provider: str,
    handler: Handler,
    *,
    batch_size: int = 16,
    ack_wait_s: float = 60.0,
    ready: asyncio.Event | None = None,
) -> None:
    """Hand every command of ``provider`` to ``handler`` until cancelled.

    Args:
        nats_url: the mesh's NATS.
        provider: the provider's name, as users choose it (``provider`` of a load balancer).
        handler: applies one command; it may run again for the same command.
        batch_size: commands fetched, and handled side by side, at once (the API keeps one change per load
            balancer in flight, so they never touch the same objects).
        ack_wait_s: how long a command may be in hand before JetStream would redeliver it (extended while the
            handler runs).
        ready: set once the consumer exists (commands published from then on reach this call).
    """
    client, js = await commands.connect(nats_url, f"provider-agent-{provider}")
    try:
        await commands.ensure_stream(js)
        durable = f"provider-{provider}"
        subscription = await js.pull_subscribe(
            commands.provider_filter(provider),
            durable=durable,
            stream=commands.STREAM,
            config=ConsumerConfig(
                durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait_s, max_deliver=-1
            ),
        )
        if ready is not None:
            ready.set()
        logger.info("consuming the commands of provider %s", provider)
        while True:
            try:
                messages = await subscription.fetch(batch_size, timeout=FETCH_WAIT_S)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("fetch from JetStream failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            await asyncio.gather(*(_handle(m, handler, ack_wait_s) for m in messages))
    finally:
        # No drain: the fetch loop is gone and whatever was not acknowledged is redelivered, so there is nothing
        # to wait for (a drain would only wait on the pull subscription's idle queue).
        await client.close()


async def _handle(message: Msg, handler: Handler, ack_wait_s: float) -> None:
    try:
        command = commands_pb2.ProviderCommand.FromString(message.data)
    except Exception:
        logger.error("dropping malformed command on %s", message.subject)
        await message.term()
        return
    keepalive = asyncio.create_task(_keep_in_progress(message, ack_wait_s))
    try:
        await handler(command)
    except asyncio.CancelledError:
        raise
    except Exception:
        delivered = message.metadata.num_delivered if message.metadata else 1
        logger.warning("command %s failed (delivery %d); will retry", command.command_id, delivered, exc_info=True)
        await message.nak(delay=min(30.0, 0.5 * 2 ** min(delivered, 6)))
        return
    finally:
        keepalive.cancel()
    await message.ack()


async def _keep_in_progress(message: Msg, ack_wait_s: float) -> None:
    while True:
        await asyncio.sleep(ack_wait_s / 3)
        await message.in_progress()
