"""The local secret store: Barbican v1's ``/v1/secrets`` and ``/v1/containers``, enough for TLS on load balancers.

Unchanged clients store certificates here (``openstack secret store``, openstacksdk's ``key_manager`` with
``key_manager_endpoint_override: <edge>/v1``), and Octavia's references to them
(``<edge>/v1/secrets/<uuid>``, ``<edge>/v1/containers/<uuid>``) resolve locally. Payloads are encrypted
at rest (``octavia_mesh.common.secrets``); they leave the service only through ``.../payload``, and only
to members of the owning project. Secrets are strictly project-scoped, as in Barbican: another project's
secret is a 404, even for admins. Faults are Barbican's (see :mod:`.barbican`).

Not served: ``PUT`` of a payload after the fact, orders, ACLs, consumers, secret metadata, quotas.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any

import grpc
from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api.app import App
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.resources.barbican import (
    VERSION_HANDLERS,
    Answer,
    BarbicanError,
    KmCall,
    bind,
    iso,
    keyring,
    load_json,
    not_allowed,
    page_links,
    paging,
    project_of,
)
from octavia_mesh.api.resources.barbican import invalid as _invalid
from octavia_mesh.common.db.models import Listener, Pool, Secret, SecretContainer, utcnow
from octavia_mesh.common.lifecycle import Provisioning
from octavia_mesh.common.lifecycle.status import FOREIGN_ACTIVE
from octavia_mesh.common.secrets import DecryptionFailed, SecretError, ref_id
from octavia_mesh.protos.keymanager.v1 import keymanager_pb2

SECRET_TYPES = ["symmetric", "passphrase", "private", "public", "certificate", "opaque"]
PLAIN_TEXT = ("text/plain", "text/plain;charset=utf-8", "text/plain; charset=utf-8")
BINARY = ("application/octet-stream", "application/pkcs8", "application/pkix-cert")
SUPPORTED_TYPES = [*PLAIN_TEXT, *BINARY]
MAX_PAYLOAD = 20000  # Barbican's max_allowed_secret_in_bytes: the payload as sent (base64 for binary)
CONTAINER_NAMES = {
    "certificate": ({"certificate"}, {"private_key", "private_key_passphrase", "intermediates"}),
    "rsa": ({"public_key", "private_key"}, {"private_key_passphrase"}),
}
CONTAINER_NAME_ERRORS = {
    "certificate": (
        "only 'private_key', 'certificate' , 'private_key_passphrase',  or 'intermediates' reference names are "
        "allowed for Certificate type",
        "The minimum required reference name is 'certificate' for Certificate type",
    ),
    "rsa": (
        "only 'private_key', 'public_key' and 'private_key_passphrase' reference names are allowed for RSA type",
        "The minimum required reference names are 'public_key' and'private_key' for RSA type",
    ),
}

# --- request bodies --------------------------------------------------------------------------------


def _text(schema: str, doc: dict[str, Any], key: str, max_len: int, *, nullable: bool = False) -> str | None:
    """A JSON-schema string property, with jsonschema's wording of its faults."""
    value = doc.get(key)
    if value is None and (nullable or key not in doc):
        return None
    if not isinstance(value, str):
        kinds = "'string', 'null'" if nullable else "'string'"
        raise _invalid(schema, f"{value!r} is not of type {kinds}", key)
    if len(value) > max_len:
        raise _invalid(schema, f"{value!r} is too long", key)
    return value


def _expiration(schema: str, doc: dict[str, Any]) -> dt.datetime | None:
    raw = _text(schema, doc, "expiration", 255)
    if not raw or not raw.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(raw.strip())
    except ValueError:
        raise _invalid(schema, "Invalid date for 'expiration'", "expiration") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    if parsed <= utcnow():
        raise _invalid(schema, "'expiration' is before current time", "expiration")
    return parsed


def _payload(schema: str, doc: dict[str, Any]) -> tuple[bytes | None, str | None]:
    """The payload as stored (decoded) and its normalized content type; Barbican's rules and wording."""
    content_type = _text(schema, doc, "payload_content_type", 255, nullable=True)
    encoding = doc.get("payload_content_encoding")
    if "payload_content_encoding" in doc and encoding != "base64":
        shown = "encoding" if not isinstance(encoding, str) or len(encoding) > 255 else repr(encoding)
        raise _invalid(schema, f"{shown} is not one of ['base64']", "payload_content_encoding")
    if "payload" not in doc:
        if content_type is not None or "payload_content_type" in doc:
            raise _invalid(schema, "payload must be provided when payload_content_type is specified", "payload")
        return None, None
    payload = doc["payload"]
    if not isinstance(payload, str):  # never echo what may be a secret
        raise _invalid(schema, "the payload is not of type 'string'", "payload")
    if content_type is None:
        raise _invalid(
            schema, "If 'payload' is supplied, 'payload_content_type' must also be supplied.", "payload_content_type"
        )
    if content_type.lower() not in SUPPORTED_TYPES:
        raise _invalid(schema, f"payload_content_type is not one of {SUPPORTED_TYPES}", "payload_content_type")
    binary = content_type.lower() in BINARY
    if binary != (encoding == "base64"):
        supported = ["base64"] if binary else None
        raise _invalid(schema, f"payload_content_encoding is not one of {supported}", "payload_content_encoding")
    if len(payload.encode()) > MAX_PAYLOAD:
        raise BarbicanError(413, "Provided information too large to process")
    payload = payload.strip()
    if not payload:
        raise _invalid(schema, "If 'payload' specified, must be non empty", "payload")
    if not binary:
        return payload.encode(), "text/plain"
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(schema, "Invalid payload for payload_content_encoding", "payload") from None
    return data, "application/octet-stream"


def secret_values(doc: dict[str, Any]) -> dict[str, Any]:
    """A validated ``POST /v1/secrets`` body (Barbican's NewSecretValidator)."""
    schema = "Secret"
    name = _text(schema, doc, "name", 255, nullable=True)
    values: dict[str, Any] = {
        "name": name.strip() if name is not None else None,
        "algorithm": _text(schema, doc, "algorithm", 255),
        "mode": _text(schema, doc, "mode", 255),
    }
    bits = doc.get("bit_length")
    if "bit_length" in doc:
        if not isinstance(bits, int) or isinstance(bits, bool):
            raise _invalid(schema, f"{bits!r} is not of type 'integer'", "bit_length")
        if bits < 1:
            raise _invalid(schema, f"{bits!r} is less than the minimum of 1", "bit_length")
        if bits > 32767:
            raise _invalid(schema, f"{bits!r} is greater than the maximum of 32767", "bit_length")
    values["bit_length"] = bits
    kind = _text(schema, doc, "secret_type", 80)
    if kind is not None and kind not in SECRET_TYPES:
        raise _invalid(schema, f"{kind!r} is not one of {SECRET_TYPES}", "secret_type")
    values["secret_type"] = kind or "opaque"
    values["expiration"] = _expiration(schema, doc)
    values["payload"], values["content_type"] = _payload(schema, doc)
    return values


def container_values(doc: dict[str, Any]) -> dict[str, Any]:
    """A validated ``POST /v1/containers`` body (Barbican's ContainerValidator), secrets not looked up yet."""
    schema = "Container"
    name = _text(schema, doc, "name", 255, nullable=True)
    if "type" not in doc:
        raise _invalid(schema, "'type' is a required property", None)
    kind = doc["type"]
    if kind not in ("generic", "rsa", "certificate"):
        raise _invalid(schema, f"{kind!r} is not one of ['generic', 'rsa', 'certificate']", "type")
    refs = doc.get("secret_refs", [])
    if not isinstance(refs, list):
        raise _invalid(schema, f"{refs!r} is not of type 'array'", "secret_refs")
    items = []
    for item in refs:
        if not isinstance(item, dict):
            raise _invalid(schema, f"{item!r} is not of type 'object'", "secret_refs")
        if "secret_ref" not in item:
            raise _invalid(schema, "'secret_ref' is a required property", "secret_refs")
        ref = item["secret_ref"]
        if not isinstance(ref, str) or not ref:
            raise _invalid(
                schema,
                f"{ref!r} is not of type 'string'" if not isinstance(ref, str) else "'' is too short",
                "secret_refs",
            )
        ref_name = _text(schema, item, "name", 255, nullable=True)
        items.append((ref_name, ref))
    if items:
        if len({n or "" for n, _ in items}) != len(items):
            raise _invalid(schema, "Duplicate reference names are not allowed", "secret_refs")
        if len({r.rstrip("/").rsplit("/", 1)[-1] for _, r in items}) != len(items):
            raise _invalid(schema, "Duplicate secret ids are not allowed", "secret_refs")
        if kind in CONTAINER_NAMES:
            required, optional = CONTAINER_NAMES[kind]
            names = {n or "" for n, _ in items}
            unsupported, minimum = CONTAINER_NAME_ERRORS[kind]
            if names - required - optional:
                raise _invalid(schema, unsupported, "secret_refs")
            if not required <= names:
                raise _invalid(schema, minimum, "secret_refs")
    return {"name": name, "type": kind, "items": items}


# --- views -----------------------------------------------------------------------------------------


def secret_ref(root: str, secret_id: str) -> str:
    return f"{root}/v1/secrets/{secret_id}"


def container_ref(root: str, container_id: str) -> str:
    return f"{root}/v1/containers/{container_id}"


def secret_view(secret: Secret, root: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": FOREIGN_ACTIVE,  # Barbican's secret status
        "created": iso(secret.created_at),
        "updated": iso(secret.updated_at or secret.created_at),
        "expiration": iso(secret.expiration),
        "algorithm": secret.algorithm,
        "bit_length": secret.bit_length,
        "mode": secret.mode,
        "name": secret.name,
        "secret_ref": secret_ref(root, secret.id),
        "secret_type": secret.secret_type,
    }
    if secret.content_type:
        out["content_types"] = {"default": secret.content_type}
    out["creator_id"] = None
    out["consumers"] = []
    return out


def container_view(container: SecretContainer, root: str) -> dict[str, Any]:
    return {
        "status": FOREIGN_ACTIVE,  # Barbican's secret status
        "updated": iso(container.updated_at or container.created_at),
        "name": container.name,
        "consumers": [],
        "created": iso(container.created_at),
        "container_ref": container_ref(root, container.id),
        "creator_id": None,
        "secret_refs": [
            {"secret_ref": secret_ref(root, item["secret_id"]), "name": item.get("name")}
            for item in container.secret_refs or []
        ],
        "type": container.type,
    }


# --- loading ---------------------------------------------------------------------------------------


def _not_expired(model: Any) -> Any:
    return or_(model.expiration.is_(None), model.expiration > utcnow())


async def _own(session: AsyncSession, call: KmCall, model: Any, label: str, rule: Rule, operation: str) -> Any:
    """The caller's project's row, or Barbican's 404; a role that does not allow ``rule`` is a 403."""
    try:
        ident = str(uuid.UUID(call.id))
    except ValueError:
        ident = None
    row = await session.get(model, ident) if ident else None
    expired = model is Secret and row is not None and row.expiration is not None and row.expiration <= utcnow()
    if row is None or expired or row.project_id != call.caller.project_id:
        raise BarbicanError(404, f"{label} not found.")
    if not call.caller.allowed(rule, row.project_id):
        raise not_allowed(operation)
    return row


async def usage(session: AsyncSession, project_id: str, ids: list[str]) -> str | None:
    """A listener or pool of ``project_id`` (not being deleted) whose references name one of ``ids``."""
    checks = [
        (
            Listener,
            "listener",
            (
                Listener.default_tls_container_ref,
                Listener.client_ca_tls_container_ref,
                Listener.client_crl_container_ref,
                cast(Listener.sni_container_refs, Text),
            ),
        ),
        (Pool, "pool", (Pool.tls_container_ref, Pool.ca_tls_container_ref, Pool.crl_container_ref)),
    ]
    for model, label, columns in checks:
        matches = [column.like(f"%{ident}%") for ident in ids for column in columns]
        found = (
            await session.execute(
                select(model.id)
                .where(
                    model.project_id == project_id,
                    model.provisioning_status != Provisioning.PENDING_DELETE,
                    or_(*matches),
                )
                .order_by(model.id)
                .limit(1)
            )
        ).scalar_one_or_none()
        if found is not None:
            return f"{label} {found}"
    return None


# --- secrets ---------------------------------------------------------------------------------------


async def create_secret(app: App, call: KmCall) -> Answer:
    project = project_of(call)
    if not call.caller.allowed(Rule.WRITE, project):
        raise not_allowed("Secret creation")
    values = secret_values(load_json(call.body, "Secret"))
    payload = values.pop("payload")
    secret = Secret(id=str(uuid.uuid4()), project_id=project, created_at=utcnow(), **values)
    if payload is not None:
        secret.encrypted_payload = keyring(app.settings).encrypt(secret.id, payload)
    secret.updated_at = secret.created_at
    async with app.write() as session, session.begin():
        session.add(secret)
    return Answer(201, {"secret_ref": secret_ref(call.root_url, secret.id)})


async def get_secret(app: App, call: KmCall) -> Answer:
    if call.accept and not call.accept.startswith(("application/json", "*/*")):
        return await get_payload(app, call)  # Barbican's older payload retrieval by Accept header
    async with app.read() as session:
        secret = await _own(session, call, Secret, "Secret", Rule.READ, "Secret retrieval")
    return Answer(200, secret_view(secret, call.root_url))


async def get_payload(app: App, call: KmCall) -> Answer:
    async with app.read() as session:
        secret = await _own(session, call, Secret, "Secret", Rule.READ, "Secret payload retrieval")
    if not call.caller.allowed(Rule.WRITE, secret.project_id):  # readers see metadata, members decrypt
        raise not_allowed("Secret payload retrieval")
    if secret.encrypted_payload is None:
        raise BarbicanError(404, "Not Found. Sorry but your secret has no payload.")
    try:
        payload = keyring(app.settings).decrypt(secret.id, secret.encrypted_payload)
    except DecryptionFailed as exc:
        raise RuntimeError(str(exc)) from None  # logged as a 500: the deployment's keys are wrong
    content_type = "text/plain; charset=utf-8" if secret.content_type == "text/plain" else secret.content_type
    return Answer(200, raw=payload, content_type=content_type or "application/octet-stream")


async def delete_secret(app: App, call: KmCall) -> Answer:
    async with app.write() as session, session.begin():
        secret = await _own(session, call, Secret, "Secret", Rule.WRITE, "Secret deletion")
        containers = (
            await session.scalars(select(SecretContainer).where(SecretContainer.project_id == secret.project_id))
        ).all()
        holding = [c.id for c in containers if any(i["secret_id"] == secret.id for i in c.secret_refs or [])]
        user = await usage(session, secret.project_id, [secret.id, *holding])
        if user is not None:
            raise BarbicanError(409, f"Secret {secret.id} is in use by {user}.")
        await session.delete(secret)
    return Answer(204)


async def list_secrets(app: App, call: KmCall) -> Answer:
    project = project_of(call)
    if not call.caller.allowed(Rule.READ, project):
        raise not_allowed("Secret(s) retrieval")
    offset, limit, filters = paging(call.query, ("name", "secret_type", "alg", "mode"))
    where = [Secret.project_id == project, _not_expired(Secret)]
    for key, column in (("name", Secret.name), ("secret_type", Secret.secret_type), ("alg", Secret.algorithm)):
        if key in filters:
            where.append(column == filters[key])
    if "mode" in filters:
        where.append(Secret.mode == filters["mode"])
    async with app.read() as session:
        total = (await session.execute(select(func.count()).select_from(Secret).where(*where))).scalar_one()
        rows = (
            await session.scalars(
                select(Secret).where(*where).order_by(Secret.created_at, Secret.id).offset(offset).limit(limit)
            )
        ).all()
    body: dict[str, Any] = {"secrets": [secret_view(s, call.root_url) for s in rows], "total": total}
    body.update(page_links(f"{call.root_url}/v1/secrets", offset, limit, total, filters))
    return Answer(200, body)


# --- containers ------------------------------------------------------------------------------------


async def create_container(app: App, call: KmCall) -> Answer:
    project = project_of(call)
    if not call.caller.allowed(Rule.WRITE, project):
        raise not_allowed("Container creation")
    values = container_values(load_json(call.body, "Container"))
    async with app.write() as session, session.begin():
        items = []
        for name, ref in values["items"]:
            try:
                ident = ref_id(ref)
            except SecretError:
                ident = None
            secret = await session.get(Secret, ident) if ident else None
            if secret is None or secret.project_id != project:
                raise BarbicanError(404, f"Secret provided for '{name}' doesn't exist.")
            items.append({"name": name, "secret_id": secret.id})
        now = utcnow()
        container = SecretContainer(
            id=str(uuid.uuid4()),
            project_id=project,
            name=values["name"],
            type=values["type"],
            secret_refs=items,
            created_at=now,
            updated_at=now,
        )
        session.add(container)
    return Answer(201, {"container_ref": container_ref(call.root_url, container.id)})


async def get_container(app: App, call: KmCall) -> Answer:
    async with app.read() as session:
        container = await _own(session, call, SecretContainer, "Container", Rule.READ, "Container retrieval")
    return Answer(200, container_view(container, call.root_url))


async def delete_container(app: App, call: KmCall) -> Answer:
    async with app.write() as session, session.begin():
        container = await _own(session, call, SecretContainer, "Container", Rule.WRITE, "Container deletion")
        user = await usage(session, container.project_id, [container.id])
        if user is not None:
            raise BarbicanError(409, f"Container {container.id} is in use by {user}.")
        await session.delete(container)
    return Answer(204)


async def list_containers(app: App, call: KmCall) -> Answer:
    project = project_of(call)
    if not call.caller.allowed(Rule.READ, project):
        raise not_allowed("Containers(s) retrieval")
    offset, limit, filters = paging(call.query, ("name", "type"))
    where = [SecretContainer.project_id == project]
    if "name" in filters:
        where.append(SecretContainer.name == filters["name"])
    if "type" in filters:
        where.append(SecretContainer.type == filters["type"])
    async with app.read() as session:
        total = (await session.execute(select(func.count()).select_from(SecretContainer).where(*where))).scalar_one()
        rows = (
            await session.scalars(
                select(SecretContainer)
                .where(*where)
                .order_by(SecretContainer.created_at, SecretContainer.id)
                .offset(offset)
                .limit(limit)
            )
        ).all()
    body: dict[str, Any] = {"containers": [container_view(c, call.root_url) for c in rows], "total": total}
    body.update(page_links(f"{call.root_url}/v1/containers", offset, limit, total, filters))
    return Answer(200, body)


SECRET_HANDLERS = {
    "ListSecrets": list_secrets,
    "CreateSecret": create_secret,
    "GetSecret": get_secret,
    "DeleteSecret": delete_secret,
    "GetSecretPayload": get_payload,
}
CONTAINER_HANDLERS = {
    "ListContainers": list_containers,
    "CreateContainer": create_container,
    "GetContainer": get_container,
    "DeleteContainer": delete_container,
}


def bindings(app: App) -> list[tuple[grpc.GenericRpcHandler, str]]:
    """The store's gRPC services, with their full names (for health and reflection)."""
    services = (
        ("KeyManagerVersions", VERSION_HANDLERS, True),
        ("Secrets", SECRET_HANDLERS, False),
        ("Containers", CONTAINER_HANDLERS, False),
    )
    return [
        (bind(app, keymanager_pb2, name, handlers, public), f"octavia_mesh.keymanager.v1.{name}")
        for name, handlers, public in services
    ]
