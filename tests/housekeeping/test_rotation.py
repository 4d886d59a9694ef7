"""Certificate rotation under load loses no request.

A real amphora (agent and HAProxy) serves HTTP through its VIP to two real backends while clients keep
sending requests. Its certificates are valid 30 s and housekeeping rotates them 20 s before they expire,
so the first rotation comes about 10 s after the amphora boots. Afterwards: not one request failed, the
agent presents the certificate whose serial the database records (not the first one any more), the
amphora was not failed over (its heartbeats went on with the new certificate), and once the first
certificate has expired the worker still reaches the agent and applies a change (it verifies each new
certificate on a fresh connection).
"""

from __future__ import annotations

import collections
import datetime as dt
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from dataplane_helpers import Backend, amphora_home, amphorae_of, load_balancer, wait_lb, who
from hk_timing import CERT_BUFFER_S, CERT_VALIDITY_S, spare_vip
from sqlalchemy import select
from sqlalchemy.engine import Engine
from support import Rest, mesh_engine

from octavia_mesh.cli.mesh import Mesh
from octavia_mesh.common.db.models import Amphora

PORT = 8095
CLIENTS = 3


@dataclass
class Load:
    """Keep-alive clients, plus one that opens a new connection for every request."""

    address: str
    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, keep_alive: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self.address, self.port, timeout=5)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read().decode().strip()
                outcome = body if response.status == 200 else f"HTTP {response.status}"
                if response.will_close or not keep_alive:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = None
            with self.lock:
                if outcome.startswith("member"):
                    self.answers[outcome] += 1
                else:
                    self.failures.append(outcome)
            time.sleep(0.005)  # bounded: about a thousand requests a second at most, on a shared machine
        if conn is not None:
            conn.close()

    def total(self) -> int:
        return sum(self.answers.values()) + len(self.failures)


def served_serial(mesh: Mesh, amphora_id: str) -> str:
    """The serial (hex) of the certificate the agent presents to a new connection, from our own handshake
    with the controller's client certificate."""
    ca = mesh.state / "worker" / "ca"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca / "ca.pem")
    context.check_hostname = False  # the certificate names the amphora, not the address
    context.load_cert_chain(ca / "controller.pem", ca / "controller.key")
    context.set_alpn_protocols(["h2"])
    host, port = (amphora_home(mesh, amphora_id) / "agent.address").read_text().strip().rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def recorded(db: Engine, amphora_id: str) -> Amphora:
    with db.connect() as conn:
        return conn.execute(select(Amphora).where(Amphora.id == amphora_id)).one()


def presented(mesh: Mesh, db: Engine, amphora_id: str) -> Amphora:
    """The amphora's row, once the agent presents the certificate it records (a rotation may come between
    reading one and the other: try again)."""
    for _ in range(5):
        row = recorded(db, amphora_id)
        if row.cert_serial and served_serial(mesh, amphora_id) == row.cert_serial:
            return row
        time.sleep(0.2)
    raise AssertionError("the agent does not present the certificate the database records")


def file_serial(path: Path) -> str:
    return format(x509.load_pem_x509_certificate(path.read_bytes()).serial_number, "x")


@pytest.mark.timeout(300)  # a minute of certificate lifetimes, on a machine shared with other test runs
def test_rotation_under_load_loses_no_request(amphora_mesh: Mesh, amphora_api: Rest) -> None:
    api, db = amphora_api, mesh_engine(amphora_mesh)
    members = [Backend(f"member{i}") for i in range(3)]
    try:
        with load_balancer(api, "rotation", vip_address=spare_vip(api)) as lb:
            listener = lb.listener(PORT)
            pool = lb.pool(listener)
            lb.members(pool, members[:2])
            (amp,) = amphorae_of(api, lb.id)
            first = presented(amphora_mesh, db, amp["id"])
            remaining = (first.cert_expiration - dt.datetime.now(dt.UTC).replace(tzinfo=None)).total_seconds()
            assert 0 < remaining <= CERT_VALIDITY_S + 1, f"expected a {CERT_VALIDITY_S:g}s certificate: {remaining}"

            load = Load(lb.vip, PORT)
            threads = [threading.Thread(target=load.client, args=(i > 0,), daemon=True) for i in range(CLIENTS + 1)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            try:
                # Due CERT_BUFFER_S before expiry; allow for the scan interval and a loaded machine.
                deadline = time.monotonic() + remaining - CERT_BUFFER_S + 10
                while recorded(db, amp["id"]).cert_serial == first.cert_serial:
                    assert time.monotonic() < deadline, "the certificate was not rotated in time"
                    time.sleep(0.1)
                rotated_after = time.monotonic() - started
                time.sleep(1.0)  # requests keep going on the rotated amphora
            finally:
                load.stop.set()
                for thread in threads:
                    thread.join(10)
            print(
                f"\nrotation after {rotated_after:.1f}s of load; {load.total()} requests, "
                f"answers {dict(load.answers)}, failures {len(load.failures)}"
            )
            assert load.failures == [], f"{len(load.failures)} of {load.total()} requests failed: {load.failures[:5]}"
            assert load.total() >= 100, f"only {load.total()} requests: the load did not run"
            assert set(load.answers) == {"member0", "member1"}

            now = presented(amphora_mesh, db, amp["id"])
            assert now.cert_serial != first.cert_serial and now.cert_expiration > first.cert_expiration
            # Kept on the amphora's disk too, so a restarted agent presents it.
            assert file_serial(amphora_home(amphora_mesh, amp["id"]) / "agent.pem") in {
                now.cert_serial,
                recorded(db, amp["id"]).cert_serial,
            }

            # Once the first certificate has expired, the agent is still reached over verified TLS: our own
            # handshake (which checks validity) gets the recorded certificate, and the worker, which opens a new
            # connection after every rotation (verifying the new certificate), applies a change.
            wait_s = (first.cert_expiration - dt.datetime.now(dt.UTC).replace(tzinfo=None)).total_seconds() + 1
            time.sleep(max(0.0, wait_s))
            assert presented(amphora_mesh, db, amp["id"]).cert_serial != first.cert_serial
            lb.member(pool, members[2])
            assert set(who(lb.vip, PORT, 9)) == {"member0", "member1", "member2"}
            # All along the same amphora: its heartbeats, sent with the new certificate, were accepted.
            assert [a["id"] for a in amphorae_of(api, lb.id)] == [amp["id"]]
            assert recorded(db, amp["id"]).cert_serial != first.cert_serial
            wait_lb(api, lb.id)
    finally:
        for backend in members:
            backend.close()
        db.dispose()
