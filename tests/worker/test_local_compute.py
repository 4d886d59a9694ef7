"""The local compute driver: an amphora deleted right after its create leaves no agent process behind."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from octavia_mesh.worker.drivers.certificates import LocalCertificateDriver
from octavia_mesh.worker.drivers.compute import InstanceSpec, LocalComputeDriver


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lcd-", dir="/tmp"))  # short: the agents' sockets live below it
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _agents_below(directory: Path) -> list[int]:
    """Live (non-zombie) processes whose command line names ``directory``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and str(directory).encode() in cmdline:
            found.append(int(proc.name))
    return found


async def test_delete_right_after_create_leaves_no_orphan(base: Path) -> None:
    certificates = LocalCertificateDriver(base / "ca")
    compute = LocalComputeDriver(base / "amphorae")
    ids = [str(uuid.uuid4()) for _ in range(8)]
    for amphora_id in ids:
        identity = certificates.issue_amphora_certificate(amphora_id, dt.timedelta(days=1))
        instance = await compute.create_instance(InstanceSpec(amphora_id, identity))
        # The create's revert, at once: the agent is still exec'ing (its /proc cmdline may read empty).
        assert await compute.get_instance(instance.compute_id) is not None, "a just-started agent was not found"
        await compute.delete_instance(instance.compute_id)
        assert await compute.get_instance(instance.compute_id) is None
    # A process the delete missed would go on running (and keep its port) with its directory gone.
    deadline = time.monotonic() + 5
    while (left := _agents_below(base)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert left == [], f"orphaned agents: {left}"
    assert await compute.list_instances() == []


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


_CREATE_AND_DIE = """
import asyncio, datetime as dt, sys
from pathlib import Path
from octavia_mesh.worker.drivers.certificates import LocalCertificateDriver
from octavia_mesh.worker.drivers.compute import InstanceSpec, LocalComputeDriver
base, amphora_id = Path(sys.argv[1]), sys.argv[2]
identity = LocalCertificateDriver(base / "ca").issue_amphora_certificate(amphora_id, dt.timedelta(days=1))
asyncio.run(LocalComputeDriver(base / "amphorae").create_instance(InstanceSpec(amphora_id, identity)))
print("created", flush=True)
sys.stdin.read()  # until killed
"""


async def test_an_amphora_outlives_the_process_that_created_it(base: Path) -> None:
    """The agent is not a child of the worker that boots it, and a SIGKILLed worker's successor adopts it."""
    amphora_id = str(uuid.uuid4())
    creator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CREATE_AND_DIE,
        str(base),
        amphora_id,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert creator.stdout is not None
    assert (await asyncio.wait_for(creator.stdout.readline(), 60)).strip() == b"created"
    compute = LocalComputeDriver(base / "amphorae")
    instance = await compute.get_instance(amphora_id)
    assert instance is not None
    pid = int((base / "amphorae" / amphora_id.replace("-", "")[:12] / "agent.pid").read_text())
    assert _parent(pid) != creator.pid, "the agent is a child of the worker that booted it"
    assert os.getpgid(pid) == pid and os.getsid(pid) == pid, "the agent does not lead a session of its own"
    creator.kill()  # SIGKILL, as a crash
    await creator.wait()
    await asyncio.sleep(0.5)
    adopted = await compute.get_instance(amphora_id)  # a new worker finds the same agent at the same address
    assert adopted == instance
    assert amphora_id in await compute.list_instances()
    await compute.delete_instance(amphora_id)
    assert await compute.get_instance(amphora_id) is None
