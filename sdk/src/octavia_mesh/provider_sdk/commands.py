"""Taking a provider's commands from JetStream: the one consumer, used by the worker for the in-tree
providers and by every out-of-tree provider agent.

Commands are ``ProviderCommand`` messages on the stream ``PROVIDER_COMMANDS``
under ``octavia.provider.v1.<provider>.>``; each provider has one durable pull
consumer, ``provider-<provider>``, shared by all its replicas (each command
goes to one of them). A command is acknowledged once the handler returns; a
handler that raises gets the command again after a back-off, and one that
takes long keeps it from being redelivered meanwhile. The mesh's outbox
relay publishes a command again while nothing has completed it (JetStream
lets the copy through once its duplicate window, 5 minutes, has passed), so a
provider that acknowledged a command but never reported on it gets it once
more. Delivery is therefore at least once, and handlers must be idempotent:
read the objects (``DriverLibrary.get_*``) and act on their current state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from octavia_mesh.protos.provider.v1 import commands_pb2
from octavia_mesh.provider_sdk import stream

logger = logging.getLogger(__name__)

Handler = Callable[[commands_pb2.ProviderCommand], Awaitable[object]]
#: How long one pull for a batch waits (out-of-tree agents; the worker pulls more often while busy).
FETCH_WAIT_S = 1.0
#: How long one pull waits while nothing is in hand (a pull for one command, handed over as it comes): an idle
#: consumer costs one pull a second, not one per batch window (five a second in the worker: most of an idle
#: worker's CPU); also the longest ``pause()`` waits for the pull in flight.
IDLE_FETCH_WAIT_S = 1.0


def retry_delay_s(delivered: int) -> float:
    """Back-off before a failed command is delivered again: 1 s doubling per delivery, at most 30 s."""
    return min(30.0, 0.5 * 2 ** min(delivered, 6))


class Consumer:
    """The durable pull consumer ``provider-<provider>``: hands each command to ``handler``, up to ``batch_size``
    side by side.

    Commands in hand run side by side: the API lets one change per load balancer be in flight, so they never
    touch the same objects. A slot freed is filled at once: waiting for a whole fetched batch to finish let its
    slowest command hold up the rest (creates finished in bursts, half a minute apart, at a thousand load
    balancers). ``pause()`` stops taking commands (they wait in JetStream) and returns once those in hand are
    done.
    """

    def __init__(
        self,
        js: JetStreamContext,
        provider: str,
        handler: Handler,
        *,
        batch_size: int = 16,
        ack_wait_s: float = 60.0,
        fetch_wait_s: float = FETCH_WAIT_S,
        idle_fetch_wait_s: float = IDLE_FETCH_WAIT_S,
    ) -> None:
        self.provider = provider
        self._js = js
        self._handler = handler
        self._batch_size = batch_size
        self._ack_wait_s = ack_wait_s
        self._fetch_wait_s = fetch_wait_s
        self._idle_fetch_wait_s = idle_fetch_wait_s
        self._task: asyncio.Task[None] | None = None
        self._consuming = asyncio.Event()
        self._consuming.set()
        self._fetching = asyncio.Lock()  # held while a pull is in flight
        self._in_hand: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()

    async def start(self) -> None:
        """Create (or join) the durable consumer and start fetching in a task."""
        durable = f"provider-{self.provider}"
        subscription = await self._js.pull_subscribe(
            stream.provider_filter(self.provider),
            durable=durable,
            stream=stream.STREAM,
            config=ConsumerConfig(
                durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=self._ack_wait_s, max_deliver=-1
            ),
        )
        self._task = asyncio.create_task(self._run(subscription), name=f"consumer-{self.provider}")

    async def wait(self) -> None:
        """Until the fetch task ends (it ends only when cancelled)."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def pause(self) -> None:
        """Stop taking commands; returns once the batch in hand is handled (commands wait in JetStream)."""
        self._consuming.clear()
        async with self._fetching:
            pass
        if self._in_hand:
            await asyncio.gather(*self._in_hand, return_exceptions=True)

    def resume(self) -> None:
        self._consuming.set()

    async def _run(self, subscription: JetStreamContext.PullSubscription) -> None:
        idle = True  # the last pull found nothing
        try:
            while True:
                await self._consuming.wait()
                while len(self._in_hand) >= self._batch_size:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                async with self._fetching:  # pause() waits for this: no pull is in flight once it returns
                    if not self._consuming.is_set():
                        continue
                    if idle and not self._in_hand:
                        wanted, wait_s = 1, self._idle_fetch_wait_s
                    else:
                        wanted, wait_s = self._batch_size - len(self._in_hand), self._fetch_wait_s
                    try:
                        messages = await subscription.fetch(wanted, timeout=wait_s)
                    except TimeoutError:
                        idle = True
                        continue
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        logger.warning("fetch from JetStream failed; retrying", exc_info=True)
                        await asyncio.sleep(0.5)
                        continue
                    idle = False
                    for message in messages:
                        if not self._consuming.is_set():
                            await message.nak()
                            continue
                        task = asyncio.create_task(self._handle(message))
                        self._in_hand.add(task)
                        task.add_done_callback(self._done)
        finally:
            for task in self._in_hand:  # stopped: whatever is not acknowledged is redelivered
                task.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_hand.discard(task)
        self._slot_freed.set()

    async def _handle(self, message: Msg) -> None:
        try:
            command = commands_pb2.ProviderCommand.FromString(message.data)
        except Exception:
            logger.error("dropping malformed command on %s", message.subject)
            await message.term()
            return
        keepalive = asyncio.create_task(self._keep_in_progress(message))
        try:
            await self._handler(command)
        except asyncio.CancelledError:
            raise
        except Exception:
            delivered = message.metadata.num_delivered if message.metadata else 1
            logger.warning("command %s failed (delivery %d); will retry", command.command_id, delivered, exc_info=True)
            await message.nak(delay=retry_delay_s(delivered or 1))
            return
        finally:
            keepalive.cancel()
        await message.ack()

    async def _keep_in_progress(self, message: Msg) -> None:
        """Tell JetStream a long handler is still at work, so it does not redeliver the command meanwhile."""
        while True:
            await asyncio.sleep(self._ack_wait_s / 3)
            await message.in_progress()


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
        batch_size: the most commands handled side by side (the API keeps one change per load balancer in
            flight, so they never touch the same objects).
        ack_wait_s: how long a command may be in hand before JetStream would redeliver it (extended while the
            handler runs).
        ready: set once the consumer exists (commands published from then on reach this call).
    """
    client, js = await stream.connect(nats_url, f"provider-agent-{provider}")
    consumer = Consumer(js, provider, handler, batch_size=batch_size, ack_wait_s=ack_wait_s)
    try:
        await stream.ensure_stream(js)
        await consumer.start()
        if ready is not None:
            ready.set()
        logger.info("consuming the commands of provider %s", provider)
        await consumer.wait()
    finally:
        await consumer.stop()
        # No drain: the fetch loop is gone and whatever was not acknowledged is redelivered, so there is nothing
        # to wait for (a drain would only wait on the pull subscription's idle queue).
        await client.close()
