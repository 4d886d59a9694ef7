"""Listener and pool TLS material: resolved from the secret store, pushed to each amphora as PEM files.

The renderer refers to files by their path on the amphora; an agent answers ``PutCertificate`` with that
path, which differs from one amphora to the next, so the map from refs to paths is built per amphora.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.common import secrets
from octavia_mesh.common.barbican import BarbicanCertManager
from octavia_mesh.worker.drivers.amphora import AgentEndpoint, AmphoraDriver

#: Listener and pool attributes holding a certificate bundle (certificate, key, chain).
BUNDLE_REFS = ("default_tls_container_ref", "tls_container_ref")
#: Attributes holding a plain secret (a CA certificate or a CRL).
SECRET_REFS = ("client_ca_tls_container_ref", "client_crl_container_ref", "ca_tls_container_ref", "crl_container_ref")


def refs_of(objects: Iterable[Any]) -> tuple[set[str], set[str]]:
    """``(bundle refs, secret refs)`` used by ``objects`` (listeners and pools)."""
    bundles: set[str] = set()
    plain: set[str] = set()
    for obj in objects:
        for attr in BUNDLE_REFS:
            if getattr(obj, attr, None):
                bundles.add(getattr(obj, attr))
        bundles.update(ref for ref in getattr(obj, "sni_container_refs", None) or () if ref)
        for attr in SECRET_REFS:
            if getattr(obj, attr, None):
                plain.add(getattr(obj, attr))
    return bundles, plain


async def materials(
    session: AsyncSession, keyring: secrets.Keyring, objects: Iterable[Any]
) -> dict[str, tuple[str, bytes]]:
    """Every ref the objects use, as ``ref -> (file name, PEM)``; raises if a ref no longer resolves."""
    bundles, plain = refs_of(objects)
    out: dict[str, tuple[str, bytes]] = {}
    for ref in sorted(bundles):
        bundle = await secrets.resolve(session, ref, keyring)
        out[ref] = (f"{bundle.id}.pem", bundle.pem().encode())
    for ref in sorted(plain):
        pem = await secrets.resolve_secret(session, ref, keyring)
        out[ref] = (f"{hashlib.sha1(pem).hexdigest()}.pem", pem)  # noqa: S324 - a file name, as Octavia's
    return out


async def barbican_materials(barbican: BarbicanCertManager, objects: Iterable[Any]) -> dict[str, tuple[str, bytes]]:
    """As :func:`materials`, from Barbican with the service's credentials (the API granted it read access)."""
    bundles, plain = refs_of(objects)
    out: dict[str, tuple[str, bytes]] = {}
    for ref in sorted(bundles):
        bundle = await barbican.resolve(ref)
        out[ref] = (f"{bundle.id}.pem", bundle.pem().encode())
    for ref in sorted(plain):
        pem = await barbican.resolve_secret(ref)
        out[ref] = (f"{hashlib.sha1(pem).hexdigest()}.pem", pem)  # noqa: S324 - a file name, as Octavia's
    return out


async def push(
    amphora: AmphoraDriver, endpoint: AgentEndpoint, lb_id: str, material: dict[str, tuple[str, bytes]]
) -> dict[str, str]:
    """Store the material on one amphora; returns ``ref -> path on that amphora``."""
    paths: dict[str, str] = {}
    for ref, (name, pem) in material.items():
        paths[ref] = await amphora.put_certificate(endpoint, lb_id, name, pem)
    return paths
