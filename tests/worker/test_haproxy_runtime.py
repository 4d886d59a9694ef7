"""Rendered configs run by a real HAProxy 2.8 on 127.0.0.1: what ``haproxy -c`` cannot show.

Each test starts HAProxy (master-worker, in the foreground) and small HTTP members on free
loopback ports, sends real requests, and stops every process it started, by PID.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from octavia_mesh.worker.haproxy.render import HaproxyRenderer

LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with its server's name and the request headers, as JSON."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.dumps({"member": self.server.name, "headers": dict(self.headers)}).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def members() -> Iterator[dict[str, int]]:
    """Three HTTP members on loopback: name -> port."""
    servers = []
    for name in ("alpha", "beta", "gamma"):
        server = ThreadingHTTPServer((LOOPBACK, 0), _Echo)
        server.name = name  # type: ignore[attr-defined]
        servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield {s.name: s.server_address[1] for s in servers}  # type: ignore[attr-defined]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


class Running:
    """A started HAProxy: its stats socket and the port of each rendered listener."""

    def __init__(self, process: subprocess.Popen[bytes], socket_path: Path) -> None:
        self.process = process
        self.socket_path = socket_path

    def cli(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket_path))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()


@pytest.fixture
def run_haproxy(haproxy_check: Any, renderer: HaproxyRenderer) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(view: Any, wait_port: int | None = None) -> Running:
        rendered = renderer.render(view)
        config = haproxy_check.materialize(rendered, "runtime")
        socket_path = haproxy_check.root / "run" / "haproxy.sock"
        socket_path.unlink(missing_ok=True)
        process = subprocess.Popen(
            [str(haproxy_check.binary), "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        started.append(process)
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                if wait_port is not None:
                    socket.create_connection((LOOPBACK, wait_port), timeout=1).close()
                Running(process, socket_path).cli("show info")
                return Running(process, socket_path)
            except OSError:
                assert time.monotonic() < deadline, "HAProxy did not come up"
                time.sleep(0.02)

    try:
        yield start
    finally:
        for process in started:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr:
                process.stderr.close()


def _get(port: int, path: str = "/", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP/1.1 GET (http.client would refuse some of the header values the tests send)."""
    lines = [f"GET {path} HTTP/1.1", "Host: www.example.com", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    parsed = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), parsed, body


def _member(body: bytes) -> str:
    return json.loads(body)["member"]


def test_l7_policies_first_match_by_position(rows: Any, members: dict[str, int], run_haproxy: Any) -> None:
    port = _free_port()
    listener = rows.listener("HTTP", port)
    default = rows.pool("HTTP", "ROUND_ROBIN", listener)
    rows.member(default, LOOPBACK, members["alpha"])
    other = rows.pool("HTTP", "ROUND_ROBIN")
    rows.member(other, LOOPBACK, members["beta"])
    # Position 1 sends /a/... to the other pool; position 2 would reject /a/b too. Octavia renders REJECT as
    # an http-request rule, which HAProxy runs before any use_backend, so /a/b was rejected there.
    to_other = rows.policy(listener, "REDIRECT_TO_POOL", position=1, redirect_pool_id=other.id)
    rows.rule(to_other, "PATH", "STARTS_WITH", "/a/")
    reject = rows.policy(listener, "REJECT", position=2)
    rows.rule(reject, "PATH", "ENDS_WITH", "/b")
    rows.rule(reject, "HEADER", "EQUAL_TO", "yes", key="X-Block", invert=True)
    # Position 3 redirects /r; position 4 also matches /r but comes later.
    moved = rows.policy(listener, "REDIRECT_TO_URL", position=3, redirect_url="https://example.com/%[src]?a b")
    rows.rule(moved, "PATH", "EQUAL_TO", "/r")
    prefix = rows.policy(
        listener, "REDIRECT_PREFIX", position=4, redirect_prefix="https://p.example.com", redirect_http_code=308
    )
    rows.rule(prefix, "PATH", "STARTS_WITH", "/r")
    files = rows.policy(listener, "REJECT", position=5)
    rows.rule(files, "FILE_TYPE", "EQUAL_TO", "php")
    run_haproxy(rows.build(vip_address=LOOPBACK), wait_port=port)

    status, _, body = _get(port, "/a/b")
    assert (status, _member(body)) == (200, "beta")  # the REDIRECT_TO_POOL at position 1 wins
    assert _get(port, "/x/b")[0] == 403  # position 2 (the header is absent, and its rule is inverted)
    assert _member(_get(port, "/x/b", {"X-Block": "yes"})[2]) == "alpha"
    status, headers, _ = _get(port, "/r")
    assert (status, headers["location"]) == (302, "https://example.com/%[src]?a b")  # static: no log-format
    status, headers, _ = _get(port, "/rest?q=1")
    assert (status, headers["location"]) == (308, "https://p.example.com/rest?q=1")
    assert _get(port, "/index.php")[0] == 403
    assert _get(port, "/index.php5")[0] == 200  # the file type is the whole extension


HOSTILE = 'it\'s a "test" #1 \\ $HOME -i'


def test_hostile_values_reach_haproxy_verbatim(rows: Any, members: dict[str, int], run_haproxy: Any) -> None:
    port = _free_port()
    listener = rows.listener("HTTP", port)
    rows.member(rows.pool("HTTP", "ROUND_ROBIN", listener), LOOPBACK, members["alpha"])
    policy = rows.policy(listener, "REJECT")
    rows.rule(policy, "HEADER", "EQUAL_TO", HOSTILE, key="X-Evil$#%")
    dash = rows.policy(listener, "REJECT")
    rows.rule(dash, "PATH", "EQUAL_TO", "-i")
    haproxy = run_haproxy(rows.build(vip_address=LOOPBACK), wait_port=port)

    patterns = set()
    for line in haproxy.cli("show acl").splitlines()[1:]:
        if line.strip():
            acl_id = line.split()[0]
            patterns.update(p.split(" ", 1)[1] for p in haproxy.cli(f"show acl #{acl_id}").splitlines() if " " in p)
    assert HOSTILE in patterns and "-i" in patterns
    assert _get(port, "/", {"X-Evil$#%": HOSTILE})[0] == 403
    assert _get(port, "/", {"X-Evil$#%": HOSTILE[:-1]})[0] == 200


def _via_source_port(vip_port: int, source_port: int) -> str:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Reset on close: no TIME_WAIT, so the same source port can connect again at once.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.settimeout(5)
        sock.bind((LOOPBACK, source_port))
        sock.connect((LOOPBACK, vip_port))
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return _member(data.partition(b"\r\n\r\n")[2])


def test_source_ip_port_hashes_on_address_and_port(rows: Any, members: dict[str, int], run_haproxy: Any) -> None:
    port = _free_port()
    listener = rows.listener("TCP", port)
    pool = rows.pool("TCP", "SOURCE_IP_PORT", listener)
    for name in ("alpha", "beta", "gamma"):
        rows.member(pool, LOOPBACK, members[name])
    run_haproxy(rows.build(vip_address=LOOPBACK), wait_port=port)

    source_ports = [_free_port() for _ in range(24)]
    first = {sport: _via_source_port(port, sport) for sport in source_ports}
    # One client address: SOURCE_IP would send every connection to one member; the port spreads them.
    assert len(set(first.values())) > 1
    # The same address and port always land on the same member.
    for sport in source_ports[:8]:
        assert _via_source_port(port, sport) == first[sport]


def test_inserted_headers_reach_members(rows: Any, members: dict[str, int], run_haproxy: Any) -> None:
    port = _free_port()
    names = ("X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto", "X-Real-IP", "X-Client-IP", "X-Forwarded-IP")
    listener = rows.listener("HTTP", port, insert_headers=dict.fromkeys(names, "true"))
    rows.member(rows.pool("HTTP", "ROUND_ROBIN", listener), LOOPBACK, members["alpha"])
    run_haproxy(rows.build(vip_address=LOOPBACK), wait_port=port)

    status, _, body = _get(port, "/", {"X-Real-IP": "198.51.100.66"})  # a client's claim is replaced
    seen = {name.lower(): value for name, value in json.loads(body)["headers"].items()}  # HAProxy lowercases
    assert status == 200
    assert seen["x-forwarded-for"] == LOOPBACK
    assert seen["x-forwarded-port"] == str(port)
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-real-ip"] == seen["x-client-ip"] == seen["x-forwarded-ip"] == LOOPBACK


def test_disabled_load_balancer_starts_with_its_ports_closed(
    rows: Any, members: dict[str, int], run_haproxy: Any
) -> None:
    port = _free_port()
    rows.lb.admin_state_up = False
    listener = rows.listener("HTTP", port)
    rows.member(rows.pool("HTTP", "ROUND_ROBIN", listener), LOOPBACK, members["alpha"])
    haproxy = run_haproxy(rows.build(vip_address=LOOPBACK))

    assert "Name: HAProxy" in haproxy.cli("show info")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, port), timeout=2).close()


def test_prometheus_listener_serves_metrics(rows: Any, run_haproxy: Any) -> None:
    port = _free_port()
    rows.listener("PROMETHEUS", port)
    run_haproxy(rows.build(vip_address=LOOPBACK), wait_port=port)

    status, _, body = _get(port, "/metrics")
    assert status == 200 and b"haproxy_process_" in body
    assert _get(port, "/other")[0] == 404


def _tls_get(port: int, server_name: str, tls_dir: Path, client_cert: bool) -> tuple[str, int, dict[str, str], bytes]:
    """GET / over TLS: the certificate's CN the listener presented, and the response."""
    context = ssl.create_default_context(cafile=str(tls_dir / "server-ca.pem"))
    context.set_alpn_protocols(["http/1.1"])
    if client_cert:
        context.load_cert_chain(str(tls_dir / "client-user.pem"))
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as sock:
            subject = dict(item[0] for item in sock.getpeercert()["subject"])
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    parsed = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return subject["commonName"], int(status_line.split()[1]), parsed, body


def test_terminated_https_sni_client_auth_and_hsts(
    rows: Any, members: dict[str, int], run_haproxy: Any, tls_dir: Path
) -> None:
    port = _free_port()
    listener = rows.listener(
        "TERMINATED_HTTPS",
        port,
        default_tls_container_ref="ref:www",
        sni_container_refs=["ref:api", "ref:shop"],
        client_authentication="MANDATORY",
        client_ca_tls_container_ref="ref:client-ca",
        client_crl_container_ref="ref:client-crl",
        hsts_max_age=600,
        hsts_include_subdomains=True,
        insert_headers={"X-SSL-Client-CN": "true", "X-SSL-Client-Verify": "true", "X-Forwarded-Proto": "true"},
    )
    rows.member(rows.pool("HTTP", "ROUND_ROBIN", listener), LOOPBACK, members["alpha"])
    run_haproxy(rows.build(vip_address=LOOPBACK), wait_port=port)

    assert _tls_get(port, "api.example.com", tls_dir, client_cert=True)[0] == "api.example.com"
    assert _tls_get(port, "cart.shop.example.com", tls_dir, client_cert=True)[0] == "*.shop.example.com"
    name, status, headers, body = _tls_get(port, "www.example.com", tls_dir, client_cert=True)
    assert (name, status) == ("www.example.com", 200)
    assert headers["strict-transport-security"] == "max-age=600; includeSubDomains"
    seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    assert (seen["x-ssl-client-cn"], seen["x-ssl-client-verify"], seen["x-forwarded-proto"]) == (
        "Jane Doe",
        "0",
        "https",
    )
    with pytest.raises((ssl.SSLError, ConnectionResetError)):  # MANDATORY: no certificate, no handshake
        _tls_get(port, "www.example.com", tls_dir, client_cert=False)


@pytest.fixture
def tls_member(tls_dir: Path) -> Iterator[int]:
    """An HTTPS member with a certificate from the member CA, requiring a client certificate from the server CA."""
    server = ThreadingHTTPServer((LOOPBACK, 0), _Echo)
    server.name = "secure"  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls_dir / "member-server.pem"))
    context.load_verify_locations(str(tls_dir / "server-ca.pem"))
    context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_reencryption_verifies_the_member_and_presents_a_client_certificate(
    rows: Any, tls_member: int, run_haproxy: Any
) -> None:
    port = _free_port()
    listener = rows.listener("HTTP", port)
    pool = rows.pool(
        "HTTP",
        "ROUND_ROBIN",
        listener,
        tls_enabled=True,
        tls_container_ref="ref:member-client",
        ca_tls_container_ref="ref:member-ca",
        crl_container_ref="ref:member-crl",
    )
    rows.member(pool, LOOPBACK, tls_member)
    run_haproxy(rows.build(vip_address=LOOPBACK), wait_port=port)

    status, _, body = _get(port, "/")
    assert (status, _member(body)) == (200, "secure")


def test_prometheus_listener_of_an_agent_uses_octavias_backend_from_the_agents_fragment(
    rows: Any, haproxy_check: Any, renderer: HaproxyRenderer
) -> None:
    """Rendered for an agent (which brings its own runtime sections), a PROMETHEUS frontend sends to Octavia's
    ``prometheus-exporter-internal`` backend; with the agent's fragment the pair passes ``haproxy -c`` with no
    warning, and a configuration without such a listener gets no exporter from the fragment."""
    from octavia_mesh.amphora_agent import prometheus  # the agent's side of the contract

    rows.listener("PROMETHEUS", 9100)
    rendered = renderer.render(rows.build(own_stats_socket=False, hard_stop_after_s=None))
    assert f"default_backend {prometheus.BACKEND}" in rendered.config
    assert "use-service prometheus-exporter" not in rendered.config
    config = haproxy_check.materialize(rendered, "agent-prometheus")
    run_dir = haproxy_check.root / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    fragment = haproxy_check.root / "agent.cfg"
    fragment.write_text("global\n    maxconn 100\n" + prometheus.fragment(run_dir, rows.lb.id))
    result = subprocess.run(
        [str(haproxy_check.binary), "-c", "-dW", "-f", str(fragment), "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "[WARNING]" not in result.stderr, result.stdout + result.stderr
    standalone = renderer.render(rows.build())
    assert prometheus.BACKEND not in standalone.config  # HAProxy's own exporter, HAProxy's names
