"""The local compute driver: an amphora deleted right after its create leaves no agent process behind."""

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
