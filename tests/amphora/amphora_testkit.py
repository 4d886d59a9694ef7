"""Helpers for the amphora-agent tests: a throw-away PKI, the agent as a real process, HTTP backends.

Traffic only ever goes to 127.0.0.0/8: backends on 127.0.0.1, VIPs on 127.77.x.y.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import http.server
import ipaddress
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from octavia_mesh.protos.agent.v1 import agent_pb2_grpc

CONTROLLER = "octavia-mesh-controller"

# ---------------------------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class Identity:
    cert: bytes
    key: bytes

    @property
    def pem(self) -> bytes:
        """Certificate then key, the way HAProxy's `crt` wants them."""
        return self.cert + self.key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _issue(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    usage: tuple[x509.ObjectIdentifier, ...] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False)
    return builder.sign(signer, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    """A CA, the agent's server identity, the controller's client identity, and two impostors."""

    ca_cert: bytes
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
    agent: Identity
    controller: Identity
    self_signed: Identity
    wrong_identity: Identity

    def issue_server(self, cn: str, ips: tuple[str, ...]) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(cn, key, self.ca, dns=(cn,), ips=ips, usage=(ExtendedKeyUsageOID.SERVER_AUTH,))
        return Identity(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def write(self, directory: Path) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        files = {
            "ca": self.ca_cert,
            "agent_cert": self.agent.cert,
            "agent_key": self.agent.key,
        }
        paths = {}
        for name, data in files.items():
            paths[name] = directory / f"{name}.pem"
            paths[name].write_bytes(data)
        return paths


def make_pki() -> Pki:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("octavia-mesh test CA", ca_key, None, ca=True)
    ca = (ca_cert, ca_key)

    def signed(cn: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, **kw: object) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(cn, key, issuer, **kw)  # type: ignore[arg-type]
        return Identity(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    client = (ExtendedKeyUsageOID.CLIENT_AUTH,)
    return Pki(
        ca_cert=ca_cert.public_bytes(serialization.Encoding.PEM),
        ca=ca,
        agent=signed(
            "amphora-agent", ca, dns=("localhost",), ips=("127.0.0.1",), usage=(ExtendedKeyUsageOID.SERVER_AUTH,)
        ),
        controller=signed(CONTROLLER, ca, dns=(CONTROLLER,), usage=client),
        self_signed=signed(CONTROLLER, None, dns=(CONTROLLER,), usage=client),
        wrong_identity=signed("intruder", ca, dns=("intruder",), usage=client),
    )


# ------------------------------------------------------------------------------------- addresses


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def vip() -> tuple[str, int]:
    """A loopback address unlikely to clash with anyone else's (all of 127/8 routes to lo), and a free port."""
    address = f"127.77.{random.randint(1, 254)}.{random.randint(1, 254)}"
    return address, free_port(address)


# -------------------------------------------------------------------------------------- backends


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive towards HAProxy
    # Headers and body go out in two writes; with Nagle on, each response would wait for a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = f"{self.server.name}\n".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Backend(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.port = int(self.server_address[1])
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def handle_error(self, request: object, client_address: object) -> None:
        # HAProxy resets its idle server-side connections when an old worker exits; that is no error.
        pass

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


def haproxy_config(address: str, port: int, backends: list[Backend], version: int = 1, bind_extra: str = "") -> str:
    """A small combined configuration like the renderer's: one listener, one round-robin pool."""
    servers = "\n".join(f"    server m{i} 127.0.0.1:{b.port} check inter 1s" for i, b in enumerate(backends, 1))
    return f"""global
    maxconn 2000

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option idle-close-on-response

frontend listener1
    bind {address}:{port}{bind_extra}
    http-response set-header X-Cfg v{version}
    default_backend pool1

backend pool1
    balance roundrobin
{servers}
"""


def get(address: str, port: int, timeout: float = 2.0, context: ssl.SSLContext | None = None) -> tuple[int, str, str]:
    """One request on a fresh connection: status, body, X-Cfg header."""
    if context is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(address, port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection(address, port, timeout=timeout, context=context)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.status, response.read().decode(), response.getheader("X-Cfg", "")
    finally:
        conn.close()


def wait_serving(address: str, port: int, timeout: float = 10.0, version: str = "") -> float:
    """Poll until a 200 (with ``X-Cfg: version`` when given) arrives; seconds waited."""
    start = time.monotonic()
    while True:
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _, cfg = get(address, port, timeout=1.0)
            if status == 200 and (not version or cfg == version):
                return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{address}:{port} did not serve {version or 'anything'} within {timeout}s")
        time.sleep(0.005)


# ------------------------------------------------------------------------------------- processes


def alive(pid: int) -> bool:
    """Whether ``pid`` exists as a real process (a zombie does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def exists(pid: int) -> bool:
    """Whether ``pid`` is in the process table at all, zombies included."""
    return Path(f"/proc/{pid}").exists()


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (to find anything started below a state directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def memory_kb(pid: int) -> tuple[int, int]:
    """RSS and PSS of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in ("Rss:", "Pss:"):
            values[parts[0]] = int(parts[1])
    return values["Rss:"], values["Pss:"]


class AgentProcess:
    """The agent as a real subprocess on a free loopback port, with a mutual-TLS client for it."""

    def __init__(self, pki: Pki, state_dir: Path, work: Path, amphora_id: str = "amp-1") -> None:
        self.pki = pki
        self.state_dir = state_dir
        self.amphora_id = amphora_id
        self.port = free_port()
        self.log = work / f"agent-{self.port}.log"
        self._paths = pki.write(work / "pki")
        self.proc: subprocess.Popen[bytes] | None = None
        self._channels: list[grpc.Channel] = []

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCTAVIA_MESH_AGENT_")}
        env["OCTAVIA_MESH_AGENT_CONTROLLER_IDENTITIES"] = CONTROLLER
        argv = [
            sys.executable,
            "-m",
            "octavia_mesh.amphora_agent",
            f"--amphora-id={self.amphora_id}",
            f"--listen={self.target}",
            f"--state-dir={self.state_dir}",
            f"--server-cert={self._paths['agent_cert']}",
            f"--server-key={self._paths['agent_key']}",
            f"--client-ca={self._paths['ca']}",
            "--hard-stop-after-s=10",
            "--log-level=DEBUG",  # grpc itself stays at INFO
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        # Wait for the port first: a gRPC channel that finds it closed backs off for a second.
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"agent not listening within {timeout}s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.01)
        stub = health_pb2_grpc.HealthStub(self.channel())
        while True:
            with contextlib.suppress(grpc.RpcError):
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"agent not serving within {timeout}s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def channel(self, identity: Identity | None = None, with_client_cert: bool = True) -> grpc.Channel:
        identity = identity or self.pki.controller
        if with_client_cert:
            creds = grpc.ssl_channel_credentials(self.pki.ca_cert, identity.key, identity.cert)
        else:
            creds = grpc.ssl_channel_credentials(self.pki.ca_cert)
        channel = grpc.secure_channel(self.target, creds)
        self._channels.append(channel)
        return channel

    def stub(self, identity: Identity | None = None) -> agent_pb2_grpc.AmphoraAgentStub:
        return agent_pb2_grpc.AmphoraAgentStub(self.channel(identity))

    def signal(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the agent to exit; its exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.contextmanager
def backends(count: int = 2) -> Iterator[list[Backend]]:
    servers = [Backend(f"backend{i}") for i in range(1, count + 1)]
    try:
        yield servers
    finally:
        for server in servers:
            server.close()
