"""Resolving a listener's or pool's TLS references where the deployment keeps them, as Octavia's API does.

* ``cert_manager`` local (default): the API's own secret store (:mod:`octavia_mesh.common.secrets`), within
  the object's project.
* ``cert_manager`` barbican: Octavia's ``_validate_tls_refs`` / ``_validate_client_ca_and_crl_refs`` with its
  ``BarbicanACLAuth``: first ``set_acls`` *as the user* (the call's Keystone token, :data:`identity.USER_TOKEN`)
  adds the service user to the read ACL of the secret or container, which fails unless the user may read and
  change it; then the reference is read *as the service* (``get_cert(check_only=True)``, ``get_secret``), which
  is what the worker does later to build the amphora's files. A user therefore cannot hand the service a
  reference they cannot read themselves: the caller answers "Could not retrieve certificate: [...]" (400).
  Without a user token (noauth, trusted headers) nothing is granted: the service reads what it already may.

Whatever fails (no such secret, no access, Barbican unreachable, not a certificate) is a bad reference, as
Octavia counts any exception; an unreadable PKCS12 bundle keeps its own message.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api.app import App
from octavia_mesh.api.identity import USER_TOKEN
from octavia_mesh.api.resources.barbican import keyring
from octavia_mesh.common import secrets
from octavia_mesh.common.barbican import BarbicanCertManager

logger = logging.getLogger(__name__)


async def _grant(barbican: BarbicanCertManager, ref: str) -> None:
    token = USER_TOKEN.get()
    if token is not None:
        await barbican.ensure_access(token, ref)


async def resolve_bundle(app: App, session: AsyncSession, ref: str, project_id: str | None) -> secrets.TlsBundle:
    """The certificate bundle ``ref`` names; :class:`secrets.BadReference` when it cannot be had."""
    if app.barbican is None:
        return await secrets.resolve(session, ref, keyring(app.settings), project_id=project_id)
    try:
        await _grant(app.barbican, ref)
        return await app.barbican.resolve(ref)
    except (secrets.UnreadablePkcs12, secrets.BadReference):
        raise
    except Exception as exc:  # Barbican unreachable, a malformed answer: Octavia counts any failure a bad ref
        logger.warning("TLS reference %s not resolved: %s", ref, exc)
        raise secrets.BadReference(f"{ref}: {exc}") from None


async def resolve_secret(app: App, session: AsyncSession, ref: str, project_id: str | None) -> bytes:
    """The payload of the secret ``ref`` names (a client CA, a CRL)."""
    if app.barbican is None:
        return await secrets.resolve_secret(session, ref, keyring(app.settings), project_id=project_id)
    try:
        await _grant(app.barbican, ref)
        return await app.barbican.resolve_secret(ref)
    except secrets.BadReference:
        raise
    except Exception as exc:
        logger.warning("TLS reference %s not resolved: %s", ref, exc)
        raise secrets.BadReference(f"{ref}: {exc}") from None
