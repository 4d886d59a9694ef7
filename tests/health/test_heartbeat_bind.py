"""A restarted health replica binds the heartbeat port its amphorae know, even while it is held for a moment."""

from __future__ import annotations

import socket
import threading

import grpc
import pytest

from octavia_mesh.health import server as health_server


async def test_the_heartbeat_port_is_bound_once_the_last_holder_lets_it_go() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    threading.Timer(0.5, holder.close).start()  # the previous replica, going away
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    assert health_server._bind_heartbeats(server, f"127.0.0.1:{port}", grpc.local_server_credentials()) == port


async def test_a_port_held_for_good_fails_the_start_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_server, "HEARTBEAT_BIND_PATIENCE_S", 0.5)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        with pytest.raises(OSError, match=f"cannot listen on {address}"):
            health_server._bind_heartbeats(server, address, grpc.local_server_credentials())
