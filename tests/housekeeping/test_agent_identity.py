"""The agent's RotateCertificate: a new identity is presented from the next handshake on, without a restart,
survives one, and a bad pair is refused without harming the current identity (real agent process)."""

from __future__ import annotations

import hashlib
import shutil
import socket
import ssl
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "amphora"))

from amphora_testkit import AgentProcess, Pki, make_pki  # noqa: E402

from octavia_mesh.amphora_agent.identity import finish_interrupted_swap  # noqa: E402
from octavia_mesh.protos.agent.v1 import agent_pb2  # noqa: E402


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
def agent(pki: Pki) -> Iterator[AgentProcess]:
    work = Path(tempfile.mkdtemp(prefix="amp-", dir="/tmp"))
    process = AgentProcess(pki, work / "state", work)
    try:
        process.start()
        yield process
    finally:
        process.close()
        shutil.rmtree(work, ignore_errors=True)


def served_serial(agent: AgentProcess, pki: Pki, directory: Path) -> int:
    """The serial of the certificate the agent presents to a new connection (a TLS handshake of our own)."""
    (directory / "c.pem").write_bytes(pki.controller.cert)
    (directory / "c.key").write_bytes(pki.controller.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=pki.ca_cert.decode())
    context.check_hostname = False
    context.load_cert_chain(directory / "c.pem", directory / "c.key")
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def serial(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


def test_rotation_is_live_and_survives_a_restart(agent: AgentProcess, pki: Pki, tmp_path: Path) -> None:
    before = served_serial(agent, pki, tmp_path)
    assert before == serial(pki.agent.cert)
    old_channel_stub = agent.stub()
    assert old_channel_stub.GetInfo(agent_pb2.GetInfoRequest(), timeout=5).amphora_id == agent.amphora_id

    new = pki.issue_server("amphora-agent", ("127.0.0.1",))
    reply = agent.stub().RotateCertificate(
        agent_pb2.RotateCertificateRequest(certificate=new.cert, private_key=new.key), timeout=5
    )
    assert reply.certificate_sha256 == hashlib.sha256(new.cert).hexdigest()
    assert served_serial(agent, pki, tmp_path) == serial(new.cert)
    # The connection opened before the rotation keeps working (it was authenticated already).
    assert old_channel_stub.GetInfo(agent_pb2.GetInfoRequest(), timeout=5).amphora_id == agent.amphora_id
    # A new gRPC connection verifies the new certificate against the CA and works.
    assert agent.stub().GetInfo(agent_pb2.GetInfoRequest(), timeout=5).amphora_id == agent.amphora_id
    # Written over the files the agent started from: a restarted agent presents it.
    cert_file, key_file = agent._paths["agent_cert"], agent._paths["agent_key"]
    assert cert_file.read_bytes() == new.cert and key_file.read_bytes() == new.key
    assert oct(cert_file.stat().st_mode & 0o777) == "0o600"
    assert agent.signal() == 0
    agent.start()
    assert served_serial(agent, pki, tmp_path) == serial(new.cert)


def test_a_bad_pair_is_refused_and_changes_nothing(agent: AgentProcess, pki: Pki, tmp_path: Path) -> None:
    other = pki.issue_server("amphora-agent", ("127.0.0.1",))
    stub = agent.stub()
    bad = [
        agent_pb2.RotateCertificateRequest(certificate=other.cert, private_key=pki.agent.key),  # not its key
        agent_pb2.RotateCertificateRequest(certificate=b"", private_key=other.key),
        agent_pb2.RotateCertificateRequest(certificate=b"not a certificate", private_key=b"nor a key"),
        agent_pb2.RotateCertificateRequest(certificate=other.cert * 200, private_key=other.key),  # too large
    ]
    for request in bad:
        with pytest.raises(grpc.RpcError) as refused:
            stub.RotateCertificate(request, timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert served_serial(agent, pki, tmp_path) == serial(pki.agent.cert)
    assert agent._paths["agent_cert"].read_bytes() == pki.agent.cert
    assert not list(agent._paths["agent_cert"].parent.glob("*.next")) + list(
        agent._paths["agent_cert"].parent.glob("*.tmp")
    )
    # Only the controller may replace the identity.
    with pytest.raises(grpc.RpcError) as denied:
        agent.stub(pki.wrong_identity).RotateCertificate(
            agent_pb2.RotateCertificateRequest(certificate=other.cert, private_key=other.key), timeout=5
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert served_serial(agent, pki, tmp_path) == serial(pki.agent.cert)


def test_a_swap_interrupted_by_a_crash_is_finished_at_start(tmp_path: Path) -> None:
    cert, key = tmp_path / "agent.pem", tmp_path / "agent.key"

    def files(**contents: bytes) -> None:
        for path in tmp_path.iterdir():
            path.unlink()
        for name, data in contents.items():
            (tmp_path / name.replace("_", ".")).write_bytes(data)

    # Died after the commit point, key already renamed: the certificate follows.
    files(agent_pem=b"old cert", agent_key=b"new key", agent_pem_next=b"new cert")
    finish_interrupted_swap(cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == (b"new cert", b"new key")
    # Died right after the commit point: both are renamed.
    files(agent_pem=b"old cert", agent_key=b"old key", agent_pem_next=b"new cert", agent_key_next=b"new key")
    finish_interrupted_swap(cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == (b"new cert", b"new key")
    # Died before it: the old pair stays, the half-written new one is dropped.
    files(agent_pem=b"old cert", agent_key=b"old key", agent_key_next=b"new key", agent_pem_tmp=b"new c")
    finish_interrupted_swap(cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == (b"old cert", b"old key")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.key", "agent.pem"]
