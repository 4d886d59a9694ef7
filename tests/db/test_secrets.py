"""The secret store's shared half: keys, encryption at rest, bundle parsing and reference resolution.

Resolution runs on the backend named by OCTAVIA_MESH_TEST_DATABASE_URL (SQLite, PostgreSQL, MariaDB).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import threading
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from tls_material import crl, issue, p12

from octavia_mesh.common import secrets
from octavia_mesh.common.db.engine import session_factories
from octavia_mesh.common.db.models import Secret, SecretContainer, utcnow

ROOT = issue("Root", ca=True)
INTER = issue("Intermediate", ROOT, ca=True)
LEAF = issue("www.example.com", INTER)
OTHER = issue("other.example.com", ROOT)


def _pem(text: bytes) -> str:
    return text.decode().strip()


# --- keys -----------------------------------------------------------------------------------------


def test_key_file_is_created_0600_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secret.key"
    first = secrets.ensure_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 1 and Fernet(first[0])
    assert secrets.ensure_key_file(path) == first  # kept, never regenerated
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary file left behind


def test_key_file_racing_creators_agree(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    results: list[list[bytes]] = []
    threads = [threading.Thread(target=lambda: results.append(secrets.ensure_key_file(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and all(r == results[0] for r in results)


def test_key_file_lines_and_faults(tmp_path: Path) -> None:
    new, old = Fernet.generate_key(), Fernet.generate_key()
    path = tmp_path / "keys"
    path.write_bytes(b"# rotated 2026-01-01\n" + new + b"\n\n" + old + b"\n")
    os.chmod(path, 0o600)
    assert secrets.ensure_key_file(path) == [new, old]
    path.write_bytes(b"# nothing\n")
    with pytest.raises(ValueError, match="holds no key"):
        secrets.load_keyring(str(path))
    path.write_bytes(b"not-a-key\n")
    with pytest.raises(ValueError, match="is not a Fernet key") as caught:
        secrets.load_keyring(str(path))
    assert "not-a-key" not in str(caught.value)  # key material never reaches a message
    with pytest.raises(ValueError, match="needs a key"):
        secrets.load_keyring("")


def test_explicit_keys_win_over_the_file(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    ring = secrets.load_keyring(str(tmp_path / "never"), (key,))
    assert not (tmp_path / "never").exists()
    assert repr(ring) == "Keyring(1 key)" and key not in repr(ring)


def test_tokens_are_bound_to_their_row_and_rotate() -> None:
    k_old, k_new = Fernet.generate_key(), Fernet.generate_key()
    old, both, new = secrets.Keyring([k_old]), secrets.Keyring([k_new, k_old]), secrets.Keyring([k_new])
    token = old.encrypt("a", b"-----BEGIN PRIVATE KEY-----")
    assert b"BEGIN" not in token and old.decrypt("a", token) == b"-----BEGIN PRIVATE KEY-----"
    with pytest.raises(secrets.DecryptionFailed, match="belongs to another secret"):
        old.decrypt("b", token)  # a token copied onto another row
    with pytest.raises(secrets.DecryptionFailed, match="does not decrypt"):
        new.decrypt("a", token)
    assert both.decrypt("a", token) == b"-----BEGIN PRIVATE KEY-----"  # the old key still decrypts
    fresh = both.rotate("a", token)
    assert new.decrypt("a", fresh) == b"-----BEGIN PRIVATE KEY-----"  # re-encrypted with the new first key
    with pytest.raises(secrets.DecryptionFailed):
        old.decrypt("a", fresh)


# --- bundles --------------------------------------------------------------------------------------


def test_pkcs12_bundle() -> None:
    bundle = secrets.parse_bundle(p12(LEAF, (INTER,)))
    assert bundle.certificate == _pem(LEAF.cert_pem)
    assert bundle.intermediates == (_pem(INTER.cert_pem),)
    key = serialization.load_pem_private_key(bundle.private_key.encode(), None)
    assert key.private_numbers() == LEAF.key.private_numbers()
    assert bundle.private_key.startswith("-----BEGIN EC PRIVATE KEY-----")  # Octavia's TraditionalOpenSSL
    assert bundle.pem() == "\n".join([bundle.certificate, bundle.private_key, bundle.intermediates[0]]) + "\n"
    assert bundle.id == hashlib.sha1(bundle.certificate.encode()).hexdigest()
    assert bundle.primary_cn == "www.example.com"
    assert "PRIVATE" not in repr(bundle)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"garbage", "Could not deserialize PKCS12 data"),
        (p12(LEAF, password=b"secret"), "Invalid password or PKCS12 data"),
        (LEAF.cert_pem, "no private key"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "error parsing asn1 value"),
    ],
)
def test_unreadable_bundles(data: bytes, error: str) -> None:
    with pytest.raises(secrets.UnreadablePkcs12) as caught:
        secrets.parse_bundle(data)
    assert error in caught.value.error


def test_pkcs12_without_key_or_with_a_foreign_key() -> None:
    from cryptography.hazmat.primitives.serialization import pkcs12

    no_key = pkcs12.serialize_key_and_certificates(b"t", None, LEAF.cert, None, serialization.NoEncryption())
    with pytest.raises(secrets.UnreadablePkcs12, match="no private key"):
        secrets.parse_pkcs12(no_key)
    with pytest.raises(secrets.UnreadablePkcs12, match="does not match"):
        secrets.parse_bundle(LEAF.cert_pem + OTHER.key_pem)  # (cryptography will not write such a PKCS12)


def test_pem_bundle_in_any_order() -> None:
    data = INTER.cert_pem + LEAF.key_pem + LEAF.cert_pem
    bundle = secrets.parse_bundle(b"\n" + data)
    assert bundle.certificate == _pem(LEAF.cert_pem) and bundle.intermediates == (_pem(INTER.cert_pem),)


def test_container_parts() -> None:
    encrypted = LEAF.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    chain = pkcs7.serialize_certificates([INTER.cert, ROOT.cert], serialization.Encoding.PEM)
    der = LEAF.cert.public_bytes(serialization.Encoding.DER)
    bundle = secrets.bundle_from_parts(der, encrypted, chain, b"pw")
    assert bundle.certificate == _pem(LEAF.cert_pem)
    assert set(bundle.intermediates) == {_pem(INTER.cert_pem), _pem(ROOT.cert_pem)}  # PKCS7 sorts its SET
    with pytest.raises(secrets.BadReference, match="unusable certificate container"):
        secrets.bundle_from_parts(LEAF.cert_pem, encrypted, None, None)  # the pass phrase is missing
    with pytest.raises(secrets.BadReference, match="does not match"):
        secrets.bundle_from_parts(LEAF.cert_pem, OTHER.key_pem)
    with pytest.raises(secrets.BadReference, match="no private key"):
        secrets.bundle_from_parts(LEAF.cert_pem, None)


# --- resolution against the database -------------------------------------------------------------


async def _store(engine: AsyncEngine, ring: secrets.Keyring, project: str, payload: bytes, **fields: object) -> str:
    _, write = session_factories(engine)
    secret = Secret(id=str(uuid.uuid4()), project_id=project, secret_type="opaque", **fields)
    secret.encrypted_payload = ring.encrypt(secret.id, payload)
    async with write() as session, session.begin():
        session.add(secret)
    return secret.id


async def test_resolve_secrets_and_containers(engine: AsyncEngine) -> None:
    ring = secrets.Keyring([Fernet.generate_key()])
    read, write = session_factories(engine)
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    bundle_id = await _store(engine, ring, mine, p12(LEAF, (INTER,)))
    cert_id = await _store(engine, ring, mine, LEAF.cert_pem)
    key_id = await _store(engine, ring, mine, LEAF.key_pem)
    chain_id = await _store(engine, ring, mine, INTER.cert_pem)
    ca_crl = crl(ROOT)
    crl_id = await _store(engine, ring, mine, ca_crl)
    expired_id = await _store(engine, ring, mine, p12(LEAF), expiration=utcnow() - dt.timedelta(seconds=1))
    foreign_id = await _store(engine, ring, theirs, p12(LEAF))
    container = SecretContainer(
        id=str(uuid.uuid4()),
        project_id=mine,
        type="certificate",
        secret_refs=[
            {"name": "certificate", "secret_id": cert_id},
            {"name": "private_key", "secret_id": key_id},
            {"name": "intermediates", "secret_id": chain_id},
        ],
    )
    generic = SecretContainer(
        id=str(uuid.uuid4()), project_id=mine, type="generic", secret_refs=[{"name": "a", "secret_id": cert_id}]
    )
    async with write() as session, session.begin():
        session.add_all([container, generic])

    async with read() as session:
        by_secret = await secrets.resolve(session, f"https://edge:9876/v1/secrets/{bundle_id}", ring, project_id=mine)
        by_container = await secrets.resolve(session, f"http://x/v1/containers/{container.id}/", ring)
        assert by_secret.certificate == by_container.certificate == _pem(LEAF.cert_pem)
        assert by_secret.intermediates == by_container.intermediates == (_pem(INTER.cert_pem),)
        assert await secrets.resolve_secret(session, f"http://x/v1/secrets/{crl_id}", ring) == ca_crl
        x509.load_pem_x509_crl(await secrets.resolve_secret(session, crl_id, ring))  # a bare UUID works too
        for ref, project in [
            (f"http://x/v1/secrets/{foreign_id}", mine),  # another project's secret
            (f"http://x/v1/secrets/{expired_id}", None),  # expired
            (f"http://x/v1/containers/{generic.id}", None),  # not a certificate container
            (f"http://x/v1/secrets/{uuid.uuid4()}", None),  # unknown
            ("http://x/v1/secrets/not-a-uuid", None),
            ("ref", None),
        ]:
            with pytest.raises(secrets.BadReference):
                await secrets.resolve(session, ref, ring, project_id=project)
        with pytest.raises(secrets.BadReference):
            await secrets.resolve_secret(session, f"http://x/v1/containers/{container.id}", ring)
        assert (await secrets.resolve(session, foreign_id, ring)).certificate  # the worker reads any project
        with pytest.raises(secrets.UnreadablePkcs12):
            await secrets.resolve(session, cert_id, ring)  # a PEM certificate alone is no bundle
        with pytest.raises(secrets.DecryptionFailed):
            await secrets.resolve(session, bundle_id, secrets.Keyring([Fernet.generate_key()]))

        stored = (await session.execute(select(Secret.encrypted_payload).where(Secret.id == key_id))).scalar_one()
        assert b"PRIVATE KEY" not in stored and LEAF.key_pem[30:60] not in stored

    async with write() as session, session.begin():
        await session.delete(await session.get(Secret, key_id))
    async with read() as session:
        with pytest.raises(secrets.BadReference):  # a container whose key went away
            await secrets.resolve(session, container.id, ring)
