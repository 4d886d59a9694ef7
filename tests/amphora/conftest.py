"""Fixtures for the amphora-agent tests: a PKI per session, a real agent process per module."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from amphora_testkit import AgentProcess, Backend, Pki, backends, make_pki  # noqa: E402


@pytest.fixture(scope="session")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: HAProxy's unix sockets live below it (paths of at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="amp-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_agent(pki: Pki, short_dir: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Start agents on ``short_dir/state`` (or another state dir); all are stopped afterwards."""
    started: list[AgentProcess] = []

    def start(state_dir: Path | None = None) -> AgentProcess:
        agent = AgentProcess(pki, state_dir or short_dir / "state", short_dir)
        started.append(agent)
        agent.start()
        return agent

    yield start
    for agent in started:
        agent.close()


@pytest.fixture(scope="module")
def agent(pki: Pki) -> Iterator[AgentProcess]:
    """One agent shared by a module's tests."""
    path = Path(tempfile.mkdtemp(prefix="amp-", dir="/tmp"))
    process = AgentProcess(pki, path / "state", path)
    try:
        process.start()
        yield process
    finally:
        process.close()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def two_backends() -> Iterator[list[Backend]]:
    with backends(2) as servers:
        yield servers
