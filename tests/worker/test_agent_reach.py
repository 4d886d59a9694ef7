"""The worker reaches a new amphora's agent as soon as it listens, however late the agent starts.

On a loaded machine an agent (a Python process) can take most of a minute to start listening. The worker
polls it meanwhile (``wait_until_reachable``) and each refused connection lengthened gRPC's reconnect back-off,
so an agent listening 53 s after its boot was reached at 74 s, and the create (which waits 60 s) failed with
"Connection refused" although the agent had been serving for seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from octavia_mesh.worker.drivers.amphora import AgentEndpoint, GrpcAmphoraDriver
from octavia_mesh.worker.drivers.certificates import LocalCertificateDriver
from octavia_mesh.worker.drivers.compute import InstanceSpec, LocalComputeDriver

#: How long the agent is held back: past gRPC's seventh default reconnect attempt (26 s), so that, with that
#: back-off, the next attempt would come about 43 s after the first, long after the agent listens.
HELD_S = 30.0
#: How soon after it listens the agent must be reached (attempts a second apart, and one TLS handshake).
REACHED_WITHIN_S = 5.0


class GatedComputeDriver(LocalComputeDriver):
    """The local driver, whose agents exec only once ``gate`` exists: a machine too busy to start them."""

    def __init__(self, base_dir: Path, gate: Path) -> None:
        super().__init__(base_dir)
        self._gate = gate

    def _launcher(self, spec: InstanceSpec) -> list[str]:
        wait = f'while [ ! -e "{self._gate}" ]; do sleep 0.02; done; exec "$@"'
        return ["/bin/sh", "-c", wait, "sh"]


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="reach-", dir="/tmp"))  # short: the agents' sockets live below it
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def listening(port: int) -> bool:
    """Something listens on 127.0.0.1:``port`` (read from the kernel's tables: no connection that the agent or
    the client's back-off would notice). gRPC listens on an IPv6 socket with the IPv4-mapped address."""
    wanted = {f"0100007F:{port:04X}", f"0000000000000000FFFF00000100007F:{port:04X}"}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] in wanted and fields[3] == "0A":  # TCP_LISTEN
                return True
    return False


async def test_an_agent_that_starts_late_is_reached_as_soon_as_it_listens(base: Path) -> None:
    certificates = LocalCertificateDriver(base / "ca")
    compute = GatedComputeDriver(base / "amphorae", gate=base / "gate")
    amphora_id = str(uuid.uuid4())
    identity = certificates.issue_amphora_certificate(amphora_id, dt.timedelta(days=1))
    instance = await compute.create_instance(InstanceSpec(amphora_id, identity))
    port = int(instance.management_address.rsplit(":", 1)[1])
    agents = GrpcAmphoraDriver(certificates.controller_certificate())
    endpoint = AgentEndpoint(instance.management_address, amphora_id)
    waiting = asyncio.create_task(agents.wait_until_reachable(endpoint, 2 * HELD_S + 60))
    try:
        await asyncio.sleep(HELD_S)  # every attempt meanwhile is refused: nothing listens
        assert not waiting.done() and not listening(port)
        (base / "gate").touch()
        deadline = time.monotonic() + 60
        while not listening(port):
            assert time.monotonic() < deadline, "the agent did not listen within 60 s of its start"
            await asyncio.sleep(0.01)
        listened = time.monotonic()
        await asyncio.wait_for(asyncio.shield(waiting), 60)
        late = time.monotonic() - listened
        assert late < REACHED_WITHIN_S, f"the agent listened {late:.1f} s before the worker reached it"
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await agents.close()
        await compute.delete_instance(amphora_id)
