"""Helpers of the data-plane tests: real backends on loopback, clients that pick their source address,
create-and-wait calls on the REST edge, and looks at the processes and files amphorae leave.

Every backend listens on 127.0.0.1; every client request goes to a VIP of the mesh's own
local VIP subnet (a /16 of 127.0.0.0/8, support.claim_vip_cidr), and may bind
its socket to another loopback address (127.0.0.x) so that HAProxy sees different clients.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import http.client
import http.server
import ipaddress
import re
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support import Rest, start_mesh, vip_network

LBS = "/v2/lbaas/loadbalancers"
AMPHORAE = "/v2/octavia/amphorae"
API = "/v2/lbaas"

#: How long a change may take to reach ACTIVE (an HAProxy reload takes ~0.1 s; a create boots an agent).
CHANGE_TIMEOUT = 30.0


# ------------------------------------------------------------------------------------------- backends


@dataclass(frozen=True, slots=True)
class Seen:
    """One request a backend answered."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    client: str  # the peer address: HAProxy's side of the connection
    version: str = "HTTP/1.1"

    def header(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def cookies(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in self.header("Cookie"):
            for part in line.split(";"):
                name, _, value = part.strip().partition("=")
                if name:
                    out[name] = value
        return out


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, backend: Backend, address: tuple[str, int]) -> None:
        self.backend = backend
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy resets idle server connections, health checks connect and go: no errors


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 15
    server: _Server

    def setup(self) -> None:
        backend = self.server.backend
        if backend.tls is not None:
            self.request.settimeout(self.timeout)
            self.request = backend.tls.wrap_socket(self.request, server_side=True)
        super().setup()
        backend._track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.backend._track(self.connection, False)

    def do_GET(self) -> None:  # noqa: N802 - http.server's API
        self.server.backend._answer(self)

    do_HEAD = do_POST = do_OPTIONS = do_GET  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


class Backend:
    """An HTTP member on 127.0.0.1 that answers ``<name>\\n`` and records what it was sent.

    * ``/health`` answers :attr:`health_status` (health monitors use it; recorded in :attr:`checks`);
    * ``/slow`` is held until :attr:`release` is set (at most 10 s), counted in :attr:`inflight`;
    * ``/login`` sets an application cookie ``JSESSIONID=<name>-<n>``.

    :meth:`stop` closes the port *and* every open connection (HAProxy keeps idle ones for reuse), so a
    stopped member serves nothing; :meth:`start` listens on the same port again. With ``tls``, it speaks
    HTTPS with that server context.
    """

    def __init__(self, name: str, tls: ssl.SSLContext | None = None) -> None:
        self.name = name
        self.tls = tls
        self.address = "127.0.0.1"
        self.port = 0
        self.seen: list[Seen] = []
        self.checks: list[Seen] = []
        self.health_status = 200
        self.inflight = 0
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._sessions = 0
        self._server: _Server | None = None
        self.start()

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        assert self._server is None, f"{self.name} already runs"
        self._server = _Server(self, (self.address, self.port))
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.release.set()
        self.stop()

    def requests(self) -> int:
        return len(self.seen)

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._lock:
            (self._connections.add if opened else self._connections.discard)(conn)

    def _answer(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        seen = Seen(
            handler.command,
            handler.path,
            tuple(handler.headers.items()),
            handler.client_address[0],
            handler.request_version,
        )
        extra: list[tuple[str, str]] = []
        if path == "/health":
            self.checks.append(seen)
            status, body = self.health_status, b""
        else:
            self.seen.append(seen)
            status, body = 200, f"{self.name}\n".encode()
            if path == "/slow":
                with self._lock:
                    self.inflight += 1
                try:
                    self.release.wait(10)
                finally:
                    with self._lock:
                        self.inflight -= 1
            elif path == "/login":
                with self._lock:
                    self._sessions += 1
                    session = f"{self.name}-{self._sessions}"
                extra.append(("Set-Cookie", f"JSESSIONID={session}; Path=/"))
        handler.send_response(status)
        for name, value in extra:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)


class TcpBackend:
    """A plain TCP member on 127.0.0.1.

    ``banner``: speaks first (``<name>\\n``) and closes, which no HTTP proxy would relay;
    ``proxy``: reads a PROXY protocol header (v1 or v2), keeping it in :attr:`headers`, then the first
    line the client sends; answers ``<name> <source>:<port>\\n`` (the source the header announced), as an
    HTTP response if that line was an HTTP request line.
    """

    def __init__(self, name: str, mode: str = "banner") -> None:
        backend = self
        self.name, self.mode = name, mode
        self.headers: list[dict[str, Any]] = []

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                if backend.mode == "banner":
                    self.request.sendall(f"{backend.name}\n".encode())
                    return
                header = read_proxy_header(self.request)
                backend.headers.append(header)
                reader = self.request.makefile("rb")
                first = reader.readline()
                answer = f"{backend.name} {header['source']}:{header['source_port']}\n".encode()
                if first.endswith(b" HTTP/1.1\r\n"):
                    while reader.readline() not in (b"\r\n", b""):
                        pass  # the request's headers
                    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(answer)}\r\nConnection: close\r\n\r\n"
                    answer = head.encode() + answer
                self.request.sendall(answer)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address, self.port = "127.0.0.1", int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def read_proxy_header(sock: socket.socket) -> dict[str, Any]:
    """Read and parse the PROXY protocol header at the start of a connection (TCP over IPv4)."""
    start = _recv_exactly(sock, 12)
    if start == _PROXY_V2_SIGNATURE:
        ver_cmd, family, length = struct.unpack("!BBH", _recv_exactly(sock, 4))
        payload = _recv_exactly(sock, length)
        assert ver_cmd == 0x21, f"PROXY v2 PROXY command expected, got {ver_cmd:#x}"
        assert family == 0x11, f"TCP over IPv4 expected, got family {family:#x}"
        src, dst, sport, dport = struct.unpack("!4s4sHH", payload[:12])
        return {
            "version": 2,
            "source": socket.inet_ntoa(src),
            "destination": socket.inet_ntoa(dst),
            "source_port": sport,
            "destination_port": dport,
        }
    line = start
    while not line.endswith(b"\r\n"):
        line += _recv_exactly(sock, 1)
        assert len(line) <= 107, f"no PROXY v1 header: {line!r}"
    words = line.decode().split()
    assert words[:2] == ["PROXY", "TCP4"], f"no PROXY v1 TCP4 header: {line!r}"
    return {
        "version": 1,
        "source": words[2],
        "destination": words[3],
        "source_port": int(words[4]),
        "destination_port": int(words[5]),
    }


# ---------------------------------------------------------------------------------------------- TLS


@dataclass(frozen=True, slots=True)
class SelfSigned:
    """A self-signed server certificate for ``name`` (its own CA), as PEM files."""

    name: str
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def self_signed(directory: Path, name: str) -> SelfSigned:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return SelfSigned(name, cert_path, key_path)


# ------------------------------------------------------------------------------------------- clients


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: str
    headers: dict[str, str]

    @property
    def who(self) -> str:
        """The member that answered (its name), for a 200."""
        return self.body.strip()


class _Connection(http.client.HTTPConnection):
    """An HTTP connection from a chosen source address (and port).

    With a fixed source port the socket is closed with a reset (SO_LINGER 0), so that no TIME_WAIT
    keeps the next connection from the same port from being made.
    """

    def __init__(self, host: str, port: int, source: tuple[str, int] | None, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._source = source

    def connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            if self._source is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if self._source[1]:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.bind(self._source)
            sock.connect((self.host, self.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def get(
    address: str,
    port: int,
    path: str = "/",
    headers: dict[str, str] | None = None,
    source: str | tuple[str, int] | None = None,
    timeout: float = 5.0,
) -> Response:
    """One GET on a fresh connection, from ``source`` (an address, or an address and port) when given."""
    if isinstance(source, str):
        source = (source, 0)
    conn = _Connection(address, port, source, timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        return Response(response.status, body, {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()


def who(address: str, port: int, count: int, **kwargs: Any) -> collections.Counter[str]:
    """Which members answered ``count`` requests (each on a fresh connection); non-200 answers count as
    ``"<status>"``."""
    out: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        response = get(address, port, **kwargs)
        out[response.who if response.status == 200 else str(response.status)] += 1
    return out


def refused(address: str, port: int, source: str | None = None, timeout: float = 2.0) -> bool:
    """Whether an HTTP request to ``address:port`` fails at once (refused, reset or closed without an answer);
    a request left hanging is no refusal (TimeoutError)."""
    try:
        get(address, port, source=source, timeout=timeout)
    except TimeoutError:
        raise
    except (OSError, http.client.HTTPException):
        return True
    return False


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``check`` until it returns something true (which is returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (OSError, http.client.HTTPException) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s (last: {last!r})")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------- the mesh


def run_mesh(tmp_path_factory: pytest.TempPathFactory, project: str) -> Iterator[Any]:
    """A mesh whose default provider is amphora."""
    yield from start_mesh(tmp_path_factory, "noauth", default_project=project, default_provider="amphora")


# ------------------------------------------------------------------------------------------ the API


def local_subnet(api: Rest) -> str:
    (subnet,) = api.ok("GET", "/v2.0/subnets")["subnets"]
    return subnet["id"]


def wait_lb(api: Rest, lb_id: str, timeout: float = CHANGE_TIMEOUT) -> dict[str, Any]:
    """Wait until the load balancer is ACTIVE again (its change is applied: HAProxy serves it); fail at once
    if it goes to ERROR."""
    deadline = time.monotonic() + timeout
    while True:
        lb = api.ok("GET", f"{LBS}/{lb_id}")["loadbalancer"]
        if lb["provisioning_status"] == "ACTIVE":
            return lb
        assert lb["provisioning_status"] != "ERROR", f"load balancer {lb_id} went to ERROR"
        assert time.monotonic() < deadline, f"load balancer {lb_id} not ACTIVE within {timeout:g}s: {lb}"
        time.sleep(0.02)


def create_lb(api: Rest, name: str, **fields: Any) -> dict[str, Any]:
    """Create a load balancer on the local VIP subnet (with an embedded tree, if given); wait until ACTIVE."""
    body = {"name": name, "vip_subnet_id": local_subnet(api), **fields}
    started = time.monotonic()
    lb = api.ok("POST", LBS, {"loadbalancer": body})["loadbalancer"]
    assert ipaddress.ip_address(lb["vip_address"]) in vip_network(api), lb["vip_address"]
    lb = wait_lb(api, lb["id"], timeout=60.0)
    print(f"\nload balancer {name!r} ACTIVE {time.monotonic() - started:.2f}s after its create")
    return lb


def delete_lb(api: Rest, lb_id: str) -> None:
    """Cascade-delete a load balancer and wait until it is gone."""
    response = api.delete(f"{LBS}/{lb_id}?cascade=true")
    assert response.status_code in (204, 404), f"cascade delete: {response.status_code} {response.text}"
    api.wait_status(f"{LBS}/{lb_id}", "loadbalancer", "DELETED", timeout=CHANGE_TIMEOUT)


@contextlib.contextmanager
def load_balancer(api: Rest, name: str, **fields: Any) -> Iterator[LoadBalancer]:
    """A load balancer for the block; cascade-deleted after it, whatever happened."""
    lb = create_lb(api, name, **fields)
    try:
        yield LoadBalancer(api, lb)
    finally:
        delete_lb(api, lb["id"])


@dataclass
class LoadBalancer:
    """Create-and-wait calls on one load balancer: each returns once the change is ACTIVE (HAProxy serves it)."""

    api: Rest
    lb: dict[str, Any]
    last_change_s: float = field(default=0.0)

    @property
    def id(self) -> str:
        return str(self.lb["id"])

    @property
    def vip(self) -> str:
        return str(self.lb["vip_address"])

    def _change(self, method: str, path: str, body: Any = None, status: int | None = None) -> Any:
        started = time.monotonic()
        result = self.api.ok(method, path, body, status=status)
        wait_lb(self.api, self.id)
        self.last_change_s = time.monotonic() - started
        return result

    def create(self, collection: str, key: str, **fields: Any) -> dict[str, Any]:
        return self._change("POST", f"{API}/{collection}", {key: fields})[key]

    def update(self, path: str, key: str, **fields: Any) -> dict[str, Any]:
        return self._change("PUT", f"{API}/{path}", {key: fields})[key]

    def delete(self, path: str) -> None:
        self._change("DELETE", f"{API}/{path}")

    def listener(self, port: int, protocol: str = "HTTP", **fields: Any) -> dict[str, Any]:
        return self.create(
            "listeners", "listener", loadbalancer_id=self.id, protocol=protocol, protocol_port=port, **fields
        )

    def pool(
        self, listener: dict[str, Any] | None = None, protocol: str = "HTTP", algorithm: str = "ROUND_ROBIN", **fields
    ) -> dict[str, Any]:
        parent = {"listener_id": listener["id"]} if listener else {"loadbalancer_id": self.id}
        return self.create("pools", "pool", protocol=protocol, lb_algorithm=algorithm, **parent, **fields)

    def member(self, pool: dict[str, Any], backend: Backend | TcpBackend, **fields: Any) -> dict[str, Any]:
        return self.create(
            f"pools/{pool['id']}/members", "member", address=backend.address, protocol_port=backend.port, **fields
        )

    def members(
        self, pool: dict[str, Any], backends: Iterable[Backend | TcpBackend], **fields: Any
    ) -> dict[str, dict[str, Any]]:
        """Set the pool's members in one batch call; the members by backend name."""
        backends = list(backends)
        body = [{"address": b.address, "protocol_port": b.port, **fields} for b in backends]
        self._change("PUT", f"{API}/pools/{pool['id']}/members", {"members": body}, status=202)
        listed = self.api.ok("GET", f"{API}/pools/{pool['id']}/members")["members"]
        by_port = {m["protocol_port"]: m for m in listed}
        return {b.name: by_port[b.port] for b in backends}

    def update_member(self, pool: dict[str, Any], member: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return self.update(f"pools/{pool['id']}/members/{member['id']}", "member", **fields)

    def monitor(self, pool: dict[str, Any], type: str, **fields: Any) -> dict[str, Any]:  # noqa: A002 - API name
        return self.create("healthmonitors", "healthmonitor", pool_id=pool["id"], type=type, **fields)

    def policy(self, listener: dict[str, Any], action: str, **fields: Any) -> dict[str, Any]:
        return self.create("l7policies", "l7policy", listener_id=listener["id"], action=action, **fields)


# --------------------------------------------------------------------------------- processes, files


def amphora_base(mesh: Any) -> Path:
    """Where the worker keeps its local amphorae (``amphorae.location`` names it when it was relocated)."""
    default = mesh.state / "worker" / "amphorae"
    pointer = default.parent / "amphorae.location"
    return Path(pointer.read_text().strip()) if pointer.exists() else default


def amphora_home(mesh: Any, amphora_id: str) -> Path:
    return amphora_base(mesh) / amphora_id.replace("-", "")[:12]


def processes_mentioning(*needles: str) -> dict[int, str]:
    """Live processes whose command line mentions one of ``needles`` (not as part of a longer number: VIP
    127.226.0.1 is not 127.226.0.10)."""
    pattern = re.compile("|".join(rf"(?<![0-9A-Fa-f.]){re.escape(n)}(?![0-9A-Fa-f])" for n in needles))
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and pattern.search(cmdline):
            found[int(proc.name)] = cmdline
    return found


def listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def amphorae_of(api: Rest, lb_id: str) -> list[dict]:
    return [a for a in api.ok("GET", AMPHORAE)["amphorae"] if a["loadbalancer_id"] == lb_id]
