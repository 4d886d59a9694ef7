"""The provider SDK's consumer on a real JetStream: commands in hand run side by side, and a slot freed is
filled at once (a slow command never holds up those fetched with it)."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from octavia_mesh.protos.provider.v1 import commands_pb2
from octavia_mesh.provider_sdk import stream
from octavia_mesh.provider_sdk.commands import Consumer


async def test_a_slow_command_does_not_hold_up_the_others(js: JetStreamContext) -> None:
    provider = "slidingwindow"
    release = asyncio.Event()
    done: list[str] = []
    in_hand = {"now": 0, "most": 0}

    async def handler(command: commands_pb2.ProviderCommand) -> None:
        in_hand["now"] += 1
        in_hand["most"] = max(in_hand["most"], in_hand["now"])
        try:
            if command.command_id == "slow":
                await release.wait()
            else:
                await asyncio.sleep(0.05)
            done.append(command.command_id)
        finally:
            in_hand["now"] -= 1

    consumer = Consumer(js, provider, handler, batch_size=4, fetch_wait_s=0.2)
    await consumer.start()
    try:
        subject = stream.subject(provider, 1, 1)
        for command_id in ["slow", *(f"c{n}" for n in range(11))]:
            await js.publish(subject, commands_pb2.ProviderCommand(command_id=command_id).SerializeToString())
        async with asyncio.timeout(30):
            while len(done) < 11:
                await asyncio.sleep(0.05)
        assert "slow" not in done, "the eleven behind it went through while it was in hand"
        assert in_hand["most"] <= 4, "never more in hand than the batch size"
        release.set()
        pause = asyncio.create_task(consumer.pause())
        async with asyncio.timeout(30):
            await pause
        assert done[-1] == "slow", "pause returns once the commands in hand are done"
    finally:
        release.set()
        await consumer.stop()
