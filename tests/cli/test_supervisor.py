"""The supervisor of ``octavia-mesh up`` on small real processes: restarts with a back-off, gives up on a child
that cannot start, keeps ports; and services that cannot share a port."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from octavia_mesh.cli import processes
from octavia_mesh.cli.processes import PortBook, Supervisor, listen_port
from octavia_mesh.common.grpcserver import NO_PORT_SHARING

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
FAILING = [sys.executable, "-c", "import sys; print('cannot start'); sys.exit(3)"]


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def supervisor(tmp_path: Path) -> Supervisor:
    lines: list[str] = []
    sup = Supervisor(tmp_path, backoff_initial_s=0.1, backoff_max_s=0.4, stable_after_s=5.0, max_failures=3)
    sup.report = lines.append
    sup.lines = lines  # type: ignore[attr-defined]
    try:
        yield sup
    finally:
        sup.stop_all(timeout=2)


def test_an_exited_child_is_restarted_and_the_others_keep_running(supervisor: Supervisor) -> None:
    steady = supervisor.start("steady", SLEEPER)
    victim = supervisor.start("victim", SLEEPER)
    supervisor.watch(interval_s=0.02)
    victim.process.kill()
    _until(lambda: supervisor.child("victim") is not victim, 10, "the restart")
    restarted = supervisor.child("victim")
    assert restarted.process.poll() is None and restarted.restarts == 1
    assert supervisor.child("steady") is steady and steady.process.poll() is None
    assert [c.name for c in supervisor.children] == ["steady", "victim"]  # the start order, which stop reverses
    lines = supervisor.lines  # type: ignore[attr-defined]
    assert lines[0].startswith("octavia-mesh: victim was killed by signal 9 after ")
    assert lines[1].startswith(f"octavia-mesh: restarted victim (pid {restarted.process.pid}")
    assert "victim was killed by signal 9" in restarted.log_path.read_text()  # the operator finds it in the log too


def test_a_child_that_cannot_start_is_reported_and_left_down(supervisor: Supervisor) -> None:
    steady = supervisor.start("steady", SLEEPER)
    supervisor.start("broken", FAILING)
    supervisor.watch(interval_s=0.02)
    _until(lambda: supervisor.child("broken").gave_up, 20, "the supervisor to give up")
    broken = supervisor.child("broken")
    assert broken.restarts == 3  # max_failures: three restarts, then the fourth failure ends it
    lines = supervisor.lines  # type: ignore[attr-defined]
    delays = [float(line.rsplit(" in ", 1)[1].rstrip("s")) for line in lines if "restarting it in" in line]
    assert delays == [0.1, 0.2, 0.4]  # the back-off doubles, up to its bound
    assert "broken exited with code 3; it failed 4 times in a row" in lines[-1] and "giving up" in lines[-1]
    time.sleep(0.5)
    assert supervisor.child("broken") is broken  # not retried for ever
    assert steady.process.poll() is None  # and the rest of the mesh keeps running
    assert broken.log_path.read_text().count("cannot start") == 4


def test_stop_all_stops_restarted_children_too(supervisor: Supervisor) -> None:
    supervisor.start("a", SLEEPER).process.kill()
    supervisor.watch(interval_s=0.02)
    _until(lambda: supervisor.child("a").restarts == 1, 10, "the restart")
    process = supervisor.child("a").process
    supervisor.stop_all(timeout=5)
    assert process.poll() is not None
    assert supervisor.children == []


def test_ports_are_kept_across_restarts_and_outside_the_ephemeral_range(tmp_path: Path) -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    book = PortBook(tmp_path / "ports.json")
    first = {name: book.port(name) for name in ("api", "worker", "heartbeat")}
    assert len(set(first.values())) == 3 and all(p < low for p in first.values())
    again = PortBook(tmp_path / "ports.json")
    assert {name: again.port(name) for name in first} == first  # a restarted up listens where the last one did
    with socket.socket() as holder:  # one of them was taken meanwhile: a new one, recorded
        holder.bind(("127.0.0.1", first["api"]))
        holder.listen()
        third = PortBook(tmp_path / "ports.json")
        moved = third.port("api")
        assert moved != first["api"] and PortBook(tmp_path / "ports.json").ports["api"] == moved


def test_the_book_never_hands_out_the_edge_port_it_was_told_of(tmp_path: Path) -> None:
    """The REST edge's port is chosen before the book gives out the others, and Envoy binds it last: nothing
    listens there meanwhile, so only the book's reservation keeps a service (once the heartbeat listener) off it."""
    book = PortBook(tmp_path / "ports.json")
    edge = book.port("api")  # a port recorded by an earlier start, now the edge's
    reserved = PortBook(tmp_path / "ports.json", reserved=frozenset({edge}))
    assert reserved.port("api") != edge
    assert edge not in {reserved.port(f"service-{n}") for n in range(200)}


async def test_a_service_cannot_share_a_port_another_server_holds() -> None:
    """gRPC's default SO_REUSEPORT let a second server take half of a taken port's connections."""
    first = grpc.aio.server(options=[NO_PORT_SHARING])
    port = first.add_insecure_port(f"127.0.0.1:{listen_port()}")
    await first.start()
    try:
        second = grpc.aio.server(options=[NO_PORT_SHARING])
        with pytest.raises(RuntimeError, match="Failed to bind"):
            second.add_insecure_port(f"127.0.0.1:{port}")
    finally:
        await first.stop(None)
        await asyncio.sleep(0)


def test_a_port_handed_out_is_not_handed_out_again_while_its_claim_lasts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two meshes starting at once each check that a port is free; only the claim keeps the second off a port the
    first has not bound yet."""
    monkeypatch.setattr(processes, "PORT_CLAIMS", tmp_path / "claims")
    handed = {listen_port() for _ in range(100)}
    assert len(handed) == 100 and not any(processes.claim_port(port) for port in handed)
    port = handed.pop()
    old = time.time() - processes.PORT_CLAIM_TTL_S - 1
    os.utime(tmp_path / "claims" / str(port), (old, old))
    assert processes.claim_port(port), "a claim older than its time is taken over"
    assert processes.claim_port(port, refresh=True), "a restarted mesh renews its own"
