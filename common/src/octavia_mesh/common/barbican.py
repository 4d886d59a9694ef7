"""Listener and pool TLS references resolved from a real Barbican (certificate manager ``barbican``), after
Octavia's ``octavia/certificates/manager/barbican.py`` with its ``BarbicanACLAuth``.

Octavia acts for the user in two steps, and so does this module:

1. **Grant** (:meth:`BarbicanCertManager.ensure_access`, where the user's token is at hand: the API when it
   accepts a reference): with the *user's* token, add the service user to the read ACL of the secret, or of
   the container and each secret in it. Barbican then lets the service read exactly what the user pointed
   at, nothing else of the user's project.
2. **Read** (:meth:`resolve`, :meth:`resolve_secret`: the worker building an amphora's PEM files): with the
   *service* credentials (openstacksdk, ``clouds.yaml``).

Like python-barbicanclient, a reference is reduced to its UUID and read from the key manager endpoint of the
service catalog, whatever host the reference names: a user cannot point the service's credentials at
another server. Secrets hold a PKCS12 (or PEM) bundle; ``certificate`` containers hold PEM secrets;
:mod:`octavia_mesh.common.secrets` parses either, as for the local store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from typing import Any

from octavia_mesh.common.lifecycle.status import FOREIGN_ACTIVE
from octavia_mesh.common.secrets import (
    CERTIFICATE_PARTS,
    BadReference,
    TlsBundle,
    bundle_from_parts,
    parse_bundle,
    ref_id,
)

logger = logging.getLogger(__name__)


def _kind(ref: str) -> str:
    """``secrets`` or ``containers``, from the reference's path (Octavia accepts both)."""
    return "containers" if "/containers/" in ref else "secrets"


class BarbicanCertManager:
    """Reads certificates with the service's credentials; grants itself read access with the user's token."""

    def __init__(self, connection: Any) -> None:
        self._conn = connection  # an openstack.connection.Connection (service credentials)

    # --- reading (service credentials) -------------------------------------------------------------

    def _get(self, path: str, accept: str = "application/json") -> bytes:
        response = self._conn.key_manager.get(path, headers={"Accept": accept}, raise_exc=False)
        if response.status_code in (403, 404):
            raise BadReference(f"{path}: {response.status_code} from Barbican (missing, or no ACL for the service)")
        if response.status_code >= 400:
            raise BadReference(f"{path}: Barbican answered {response.status_code}")
        return bytes(response.content)

    def _payload(self, secret_id: str) -> bytes:
        meta = json.loads(self._get(f"/secrets/{secret_id}"))
        if meta.get("status") not in (None, FOREIGN_ACTIVE):
            raise BadReference(f"secret {secret_id} is {meta.get('status')}")
        content_type = (meta.get("content_types") or {}).get("default", "application/octet-stream")
        return self._get(f"/secrets/{secret_id}/payload", accept=content_type)

    def _resolve(self, ref: str) -> TlsBundle:
        ident = ref_id(ref)
        if _kind(ref) == "secrets":
            return parse_bundle(self._payload(ident))
        container = json.loads(self._get(f"/containers/{ident}"))
        if container.get("type") != "certificate":
            raise BadReference(f"container {ident} is not a certificate container")
        parts = {item["name"]: ref_id(item["secret_ref"]) for item in container.get("secret_refs") or ()}
        if "certificate" not in parts:
            raise BadReference(f"container {ident} has no certificate")
        loaded = {name: self._payload(parts[name]) for name in CERTIFICATE_PARTS if name in parts}
        return bundle_from_parts(
            loaded["certificate"],
            loaded.get("private_key"),
            loaded.get("intermediates"),
            loaded.get("private_key_passphrase"),
        )

    async def resolve(self, ref: str) -> TlsBundle:
        """The certificate bundle ``ref`` names (Octavia's ``get_cert``)."""
        return await asyncio.to_thread(self._resolve, ref)

    async def resolve_secret(self, ref: str) -> bytes:
        """The payload of the secret ``ref`` names (Octavia's ``get_secret``: client CAs, CRLs)."""
        return await asyncio.to_thread(self._payload, ref_id(ref))

    # --- granting (the user's token) ---------------------------------------------------------------

    def _as_user(self, token: str, method: str, path: str, body: object = None) -> dict[str, Any]:
        endpoint = self._conn.key_manager.get_endpoint().rstrip("/")
        if not endpoint.endswith("/v1"):
            endpoint += "/v1"
        request = urllib.request.Request(
            endpoint + path, data=json.dumps(body).encode() if body is not None else None, method=method
        )
        request.add_header("X-Auth-Token", token)
        request.add_header("Content-Type", "application/json")
        request.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the catalog's endpoint
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise BadReference(f"{path}: Barbican refused the user's request ({exc.code})") from None
        return json.loads(raw) if raw else {}

    def _grant(self, token: str, path: str) -> None:
        current = self._as_user(token, "GET", f"{path}/acl").get("read", {})
        users = set(current.get("users") or ())
        service_user = self._conn.current_user_id
        if service_user in users:
            return
        read = {"users": sorted(users | {service_user}), "project-access": current.get("project-access", True)}
        self._as_user(token, "PUT", f"{path}/acl", {"read": read})

    def _ensure_access(self, token: str, ref: str) -> None:
        ident = ref_id(ref)
        if _kind(ref) == "containers":
            container = self._as_user(token, "GET", f"/containers/{ident}")
            self._grant(token, f"/containers/{ident}")
            for item in container.get("secret_refs") or ():
                self._grant(token, f"/secrets/{ref_id(item['secret_ref'])}")
        else:
            self._grant(token, f"/secrets/{ident}")

    async def ensure_access(self, user_token: str, ref: str) -> None:
        """Let the service user read what ``ref`` names, acting as the user (Octavia's ``set_acls``)."""
        await asyncio.to_thread(self._ensure_access, user_token, ref)
