"""Pools: ``/v2/lbaas/pools``.

This module also holds what listeners and pools share: the listener/pool
protocol matrix, the TLS defaults, and :func:`parse`, a WSME-faithful body
parser (attributes checked in definition order, "Mandatory field missing."
with ``Value: 'None'``, and WSME's whole-body message when a value does not
convert at all).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict, InvalidField, InvalidInput, NotImplementedByProvider, ValidationFailure
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import Filter, ListQuery, ListSpec, bool_filter, parse_query, select_fields
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import HealthMonitor, L7Policy, L7Rule, Listener, LoadBalancer, Member, Pool, utcnow

LABEL = "Pool"

# --- shared with listeners ---------------------------------------------------

#: Which pool protocols a listener protocol may forward to (Octavia's VALID_LISTENER_POOL_PROTOCOL_MAP).
PROTOCOL_MAP: dict[str, tuple[str, ...]] = {
    "HTTP": ("HTTP", "PROXY", "PROXYV2"),
    "HTTPS": ("HTTPS", "PROXY", "PROXYV2", "TCP"),
    "TCP": ("HTTP", "HTTPS", "PROXY", "PROXYV2", "TCP"),
    "TERMINATED_HTTPS": ("HTTP", "PROXY", "PROXYV2"),
    "UDP": ("UDP",),
    "SCTP": ("SCTP",),
    "PROMETHEUS": (),
}
TLS_VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
ALPN_PROTOCOLS = ("http/1.0", "http/1.1", "h2")
DEFAULT_TLS_VERSIONS = ["TLSv1.2", "TLSv1.3"]
DEFAULT_ALPN = ["h2", "http/1.1", "http/1.0"]
#: Octavia's default_listener_ciphers / default_pool_ciphers (OWASP suite B).
DEFAULT_CIPHERS = (
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:"
    "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


class BodyError(Exception):
    """A value WSME cannot convert: Octavia then quotes the whole request body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def text(max_length: int = 255, *, safe: bool = False) -> s.Check:
    """A string; ``safe`` also refuses whitespace and control characters (the value reaches HAProxy)."""

    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidField(name, value, "Value should be string")
        if len(value) > max_length:
            raise InvalidField(name, value, f"Value should have a maximum character requirement of {max_length}")
        if safe:
            no_space(name, value)
        return value

    return check


_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]")


def no_space(name: str, value: str, shown: Any = None) -> str:
    """Refuse whitespace and control characters: they would split or inject an HAProxy configuration line."""
    if _UNSAFE.search(value):
        raise InvalidField(
            name, value if shown is None else shown, "Value must not contain spaces or control characters"
        )
    return value


def integer(minimum: int | None = None, maximum: int | None = None) -> s.Check:
    """WSME's integer: numbers and numeric strings convert (floats truncate), anything else quotes the body."""

    def check(name: str, value: Any) -> int:
        if isinstance(value, (bool, int, float)):
            number = int(value)
        elif isinstance(value, str):
            try:
                number = int(value)
            except ValueError:
                raise BodyError(f"invalid literal for int() with base 10: {value!r}") from None
        else:
            raise BodyError(
                f"int() argument must be a string, a bytes-like object or a real number, not '{type(value).__name__}'"
            )
        if minimum is not None and number < minimum:
            raise InvalidField(name, number, f"Value should be greater or equal to {minimum}")
        if maximum is not None and number > maximum:
            raise InvalidField(name, number, f"Value should be lower or equal to {maximum}")
        return number

    return check


_TRUE = ("true", "1", "t", "yes", "y", "on")
_FALSE = ("false", "0", "f", "no", "n", "off")


def boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise BodyError(f"Value not an unambiguous boolean: {value}")


def enum(*choices: str) -> s.Check:
    def check(name: str, value: Any) -> str:
        if value not in choices or not isinstance(value, str):
            raise InvalidField(name, value, f"Value should be one of: {', '.join(choices)}")
        return value

    return check


def uuid_check(name: str, value: Any) -> str:
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) else str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidField(name, value, "Value should be UUID format") from None


def listof(item: s.Check) -> s.Check:
    """A list whose items pass ``item``; a fault quotes the whole list, as WSME does."""

    def check(name: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise BodyError(f"Value not a valid list: {value}")
        out = []
        for entry in value:
            try:
                out.append(item(name, entry))
            except InvalidField as exc:
                raise InvalidField(name, value, _reason(exc.message)) from None
        return out

    return check


def _reason(message: str) -> str:
    """The reason part of an InvalidField message (after ``Value: '...'. ``)."""
    return message.rsplit("'. ", 1)[-1]


def choices_list(allowed: tuple[str, ...], reason: str) -> s.Check:
    """A list of enum values (ALPN protocol IDs), refused with WSME's type message."""

    def item(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidField(name, value, "Value should be string")
        if value not in allowed:
            raise InvalidField(name, value, reason)
        return value

    return listof(item)


def parse(schema: s.Schema, raw: bytes, *, create: bool, empty: str | None = None) -> dict[str, Any]:
    """Validate a request body the way WSME does (see the module docstring).

    Create fills defaults; update returns only the attributes present and
    refuses the create-only ones as unknown attributes. ``empty`` is the
    validation failure an update answers to a bare ``{}``.
    """
    if not (raw or b"").strip():
        raise InvalidInput(f'Missing argument: "{schema.argument}"')
    body = s.load_json(raw)
    if empty is not None and body == {}:
        raise ValidationFailure(empty)
    if not isinstance(body, dict):
        raise InvalidInput(f"Invalid input for argument {schema.argument}")
    unknown = [k for k in body if k != schema.wrapper]
    if unknown:
        raise InvalidInput(f"Unknown attribute for argument {schema.argument}: {', '.join(unknown)}")
    if schema.wrapper not in body:
        raise InvalidInput(f'Missing argument: "{schema.argument}"')
    inner = body[schema.wrapper]
    if not isinstance(inner, dict):
        raise InvalidInput(f"Invalid input for argument {schema.argument}.{schema.wrapper}")
    try:
        return parse_inner(schema, inner, create=create)
    except BodyError as exc:
        raise InvalidInput(
            f"Invalid input for field/attribute {schema.argument}. Value: '{body}'. {exc.reason}"
        ) from None


def parse_inner(
    schema: s.Schema, inner: dict[str, Any], *, create: bool, optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Validate the object inside the wrapper.

    Also for objects embedded in a single-call create: ``optional`` names the
    required attributes the parent supplies there (``loadbalancer_id``).
    May raise :class:`BodyError`, which :func:`parse` turns into WSME's whole-body message.
    """
    allowed = {n for n, a in schema.attrs.items() if create or not a.create_only}
    unknown = [k for k in inner if k not in allowed]
    if unknown:
        raise InvalidInput(f"Unknown attribute for argument {schema.argument}.{schema.wrapper}: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, attr in schema.attrs.items():
        if name in inner:
            value = inner[name]
            values[name] = None if value is None else attr.check(name, value)
        elif create and attr.required and name not in optional:
            raise InvalidField(name, None, "Mandatory field missing.")
        elif create and attr.default is not s.MISSING:
            values[name] = attr.default() if callable(attr.default) else attr.default
    return values


def check_protocols(listener_protocol: str, pool_protocol: str) -> None:
    """The listener/pool protocol matrix (400 as Octavia words it)."""
    if listener_protocol == "PROMETHEUS":
        raise InvalidInput("Protocol PROMETHEUS listeners cannot have child objects.")
    if pool_protocol not in PROTOCOL_MAP.get(listener_protocol, ()):
        raise ValidationFailure(
            f"The pool protocol '{pool_protocol}' is invalid while the listener protocol is '{listener_protocol}'."
        )


def check_tls_versions(versions: list[str] | None) -> None:
    if versions == []:
        raise ValidationFailure(
            "Empty TLS version list. Either specify at least one TLS version or remove this parameter to use "
            "the default."
        )
    bad = [v for v in versions or [] if v not in TLS_VERSIONS]
    if bad:
        raise ValidationFailure(f"Invalid TLS versions: {', '.join(bad)}")


def check_alpn(protocols: list[str] | None) -> None:
    if protocols == []:
        raise ValidationFailure(
            "Empty ALPN protocol list. Either specify at least one ALPN protocol or remove this parameter to use "
            "the default."
        )


def only_fields(raw: str) -> list[str] | None:
    """The ``fields`` of a show call (Octavia ignores any other parameter there)."""
    params = parse_query(raw)
    values = [v for raw_value in params.get("fields", []) for v in raw_value.split(",") if v]
    return values or None


def check_child_state(obj: Any, kind: str, *, deleting: bool = False) -> None:
    """An object in ERROR may only be deleted; any other non-ACTIVE object is busy (409)."""
    allowed = (store.ACTIVE, store.ERROR) if deleting else (store.ACTIVE,)
    if obj.provisioning_status not in allowed:
        raise Conflict(f"Invalid state {obj.provisioning_status} of {kind} resource {obj.id}")


# --- pool request bodies -----------------------------------------------------

_COOKIE = re.compile(r"^[^\s,;\\]+$")


def _cookie_name(name: str, value: Any) -> str:
    text(255)(name, value)
    if not _COOKIE.match(value) or _UNSAFE.search(value):
        raise InvalidField(name, value, "Value should match the pattern ^[^\\s,;\\\\]+$")
    return value


_PERSISTENCE = {
    "type": s.Attr(enum("APP_COOKIE", "SOURCE_IP", "HTTP_COOKIE"), required=True),
    "cookie_name": s.Attr(_cookie_name),
    "persistence_timeout": s.Attr(integer()),
    "persistence_granularity": s.Attr(s.ip_address),
}


def _persistence(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BodyError(f"Value not a valid dict: {value}")
    unknown = [k for k in value if k not in _PERSISTENCE]
    if unknown:
        raise InvalidInput(f"Unknown attribute for argument pool_.pool.session_persistence: {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for key, attr in _PERSISTENCE.items():
        given = value.get(key)
        if given is None:
            if attr.required:
                raise InvalidField(key, None, "Mandatory field missing.")
            out[key] = None
        else:
            out[key] = attr.check(key, given)
    return out


LB_ALGORITHMS = ("SOURCE_IP_PORT", "LEAST_CONNECTIONS", "SOURCE_IP", "ROUND_ROBIN")
POOL_PROTOCOLS = ("HTTP", "TCP", "SCTP", "PROXY", "HTTPS", "PROXYV2", "UDP")

_COMMON = {
    "name": s.Attr(text(255), default=""),
    "description": s.Attr(text(255), default=""),
    "admin_state_up": s.Attr(boolean, default=True),
    "lb_algorithm": s.Attr(enum(*LB_ALGORITHMS), required=True, nullable=False),
    "session_persistence": s.Attr(_persistence),
    "tags": s.Attr(listof(text(255))),
    "tls_container_ref": s.Attr(text(255, safe=True)),
    "ca_tls_container_ref": s.Attr(text(255, safe=True)),
    "crl_container_ref": s.Attr(text(255, safe=True)),
    "tls_enabled": s.Attr(boolean, default=False),
    "tls_ciphers": s.Attr(text(2048, safe=True)),
    "tls_versions": s.Attr(listof(text(32))),
    "alpn_protocols": s.Attr(choices_list(ALPN_PROTOCOLS, "Value should be a valid ALPN protocol ID")),
}
CREATE = s.Schema(
    "pool",
    "pool_",
    {
        "name": _COMMON["name"],
        "description": _COMMON["description"],
        "admin_state_up": _COMMON["admin_state_up"],
        "listener_id": s.Attr(uuid_check, create_only=True),
        "loadbalancer_id": s.Attr(uuid_check, create_only=True),
        "protocol": s.Attr(enum(*POOL_PROTOCOLS), required=True, create_only=True),
        **{k: v for k, v in _COMMON.items() if k not in ("name", "description", "admin_state_up")},
        "project_id": s.Attr(text(36), create_only=True),
        "tenant_id": s.Attr(text(36), create_only=True),
        "healthmonitor": s.Attr(s.any_value, create_only=True),
        "members": s.Attr(s.any_value, create_only=True),
    },
)
UPDATE = s.Schema("pool", "pool_", {k: s.Attr(a.check) for k, a in _COMMON.items()})

# --- views -------------------------------------------------------------------

_COLUMNS = (
    "id",
    "name",
    "description",
    "project_id",
    "provisioning_status",
    "operating_status",
    "protocol",
    "lb_algorithm",
    "tls_container_ref",
    "ca_tls_container_ref",
    "crl_container_ref",
    "tls_ciphers",
    "created_at",
    "updated_at",
)
SPEC = ListSpec(
    collection="pools",
    id_column=Pool.id,
    created_column=Pool.created_at,
    filters={
        **{n: Filter(getattr(Pool, n)) for n in _COLUMNS},
        "tenant_id": Filter(Pool.project_id),
        "loadbalancer_id": Filter(Pool.load_balancer_id),
        "admin_state_up": bool_filter(Pool.admin_state_up),
        "tls_enabled": bool_filter(Pool.tls_enabled),
    },
    sort_keys={
        **{n: getattr(Pool, n) for n in _COLUMNS},
        "admin_state_up": Pool.admin_state_up,
        "tls_enabled": Pool.tls_enabled,
        "loadbalancer_id": Pool.load_balancer_id,
    },
)


def view(
    pool: Pool,
    tags: list[str],
    listener_ids: list[str],
    member_ids: list[str],
    healthmonitor_id: str | None,
) -> dict[str, Any]:
    persistence = pool.session_persistence
    out: dict[str, Any] = {
        "id": pool.id,
        "name": pool.name or "",
        "description": pool.description or "",
        "provisioning_status": pool.provisioning_status,
        "operating_status": pool.operating_status,
        "admin_state_up": pool.admin_state_up,
        "protocol": pool.protocol,
        "lb_algorithm": pool.lb_algorithm,
        "session_persistence": (
            {
                "type": persistence.get("type"),
                "cookie_name": persistence.get("cookie_name"),
                "persistence_timeout": persistence.get("persistence_timeout"),
                "persistence_granularity": persistence.get("persistence_granularity"),
            }
            if persistence
            else None
        ),
        "project_id": pool.project_id,
        "loadbalancers": [{"id": pool.load_balancer_id}],
        "listeners": [{"id": i} for i in listener_ids],
        "created_at": store.timestamp(pool.created_at),
        "updated_at": store.timestamp(pool.updated_at),
    }
    if healthmonitor_id:  # Octavia leaves the key out when the pool has no monitor
        out["healthmonitor_id"] = healthmonitor_id
    out.update(
        {
            "members": [{"id": i} for i in member_ids],
            "tags": tags,
            "tls_container_ref": pool.tls_container_ref,
            "ca_tls_container_ref": pool.ca_tls_container_ref,
            "crl_container_ref": pool.crl_container_ref,
            "tls_enabled": pool.tls_enabled,
            "tls_ciphers": pool.tls_ciphers,
            "tls_versions": pool.tls_versions,
            "alpn_protocols": pool.alpn_protocols,
            "tenant_id": pool.project_id,
        }
    )
    return out


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + 500] for i in range(0, len(ids), 500)]


async def views(session: AsyncSession, pools: list[Pool]) -> list[dict[str, Any]]:
    """Views of many pools with a few bulk queries for their relations."""
    ids = [p.id for p in pools]
    listeners: dict[str, list[str]] = {i: [] for i in ids}
    members: dict[str, list[str]] = {i: [] for i in ids}
    monitors: dict[str, str] = {}
    for chunk in _chunks(ids):
        for pool_id, child in await session.execute(
            select(Listener.default_pool_id, Listener.id)
            .where(Listener.default_pool_id.in_(chunk))
            .order_by(Listener.created_at, Listener.id)
        ):
            listeners[pool_id].append(child)
        # Octavia also counts listeners that reach the pool through an enabled REDIRECT_TO_POOL policy with rules.
        with_rules = select(L7Rule.l7policy_id).where(L7Rule.l7policy_id == L7Policy.id).exists()
        for pool_id, child in await session.execute(
            select(L7Policy.redirect_pool_id, L7Policy.listener_id)
            .where(L7Policy.redirect_pool_id.in_(chunk), L7Policy.admin_state_up.is_(True), with_rules)
            .order_by(L7Policy.position, L7Policy.created_at)
        ):
            if child not in listeners[pool_id]:
                listeners[pool_id].append(child)
        for pool_id, child in await session.execute(
            select(Member.pool_id, Member.id).where(Member.pool_id.in_(chunk)).order_by(Member.created_at, Member.id)
        ):
            members[pool_id].append(child)
        for pool_id, child in await session.execute(
            select(HealthMonitor.pool_id, HealthMonitor.id).where(HealthMonitor.pool_id.in_(chunk))
        ):
            monitors[pool_id] = child
    tags = await store.tags_of(session, ids)
    return [view(p, tags.get(p.id, []), listeners[p.id], members[p.id], monitors.get(p.id)) for p in pools]


# --- validation shared by create and update ----------------------------------


def _check_persistence(protocol: str, persistence: dict[str, Any] | None) -> None:
    """Octavia's session-persistence rules, protocol-specific ones first as the controller runs them."""
    if not persistence:
        return
    kind, cookie = persistence.get("type"), persistence.get("cookie_name")
    if protocol in ("UDP", "SCTP"):
        if cookie:
            raise ValidationFailure("Cookie names are not supported for UDP/SCTP pools.")
        if kind in ("HTTP_COOKIE", "APP_COOKIE"):
            raise ValidationFailure(f"Session persistence of type {kind} is not supported for UDP/SCTP protocol pools.")
    elif persistence.get("persistence_timeout") or persistence.get("persistence_granularity"):
        raise ValidationFailure(
            "persistence_timeout and persistence_granularity is only for UDP and SCTP protocol pools."
        )
    if kind == "APP_COOKIE" and not cookie:
        raise ValidationFailure(
            'Field "cookie_name" must be specified when using the "APP_COOKIE" session persistence type.'
        )
    if kind != "APP_COOKIE" and cookie:
        raise ValidationFailure(
            'Field "cookie_name" can only be specified with session persistence of type "APP_COOKIE".'
        )


def _check_tls_create(values: dict[str, Any]) -> None:
    """On create Octavia checks the TLS lists only when re-encryption is on, then fills the defaults."""
    if values.get("crl_container_ref") and not values.get("ca_tls_container_ref"):
        raise ValidationFailure("A CA certificate reference is required to specify a revocation list.")
    if values.get("tls_enabled"):
        check_tls_versions(values.get("tls_versions"))
        check_alpn(values.get("alpn_protocols"))
        for key, default in (
            ("tls_ciphers", DEFAULT_CIPHERS),
            ("tls_versions", DEFAULT_TLS_VERSIONS),
            ("alpn_protocols", DEFAULT_ALPN),
        ):
            if values.get(key) is None:
                values[key] = list(default) if isinstance(default, list) else default


def _check_tls_update(values: dict[str, Any], row: Pool) -> None:
    """On update the lists are always checked, and a null restores the default."""
    if values.get("crl_container_ref") and not values.get("ca_tls_container_ref", row.ca_tls_container_ref):
        raise ValidationFailure("A CA reference is required to specify a certificate revocation list.")
    if values.get("tls_versions") is not None:
        check_tls_versions(values["tls_versions"])
    if values.get("alpn_protocols") is not None:
        check_alpn(values["alpn_protocols"])
    for key, default in (
        ("tls_ciphers", DEFAULT_CIPHERS),
        ("tls_versions", DEFAULT_TLS_VERSIONS),
        ("alpn_protocols", DEFAULT_ALPN),
        ("name", ""),
        ("description", ""),
        ("admin_state_up", False),
        ("tls_enabled", False),
    ):
        if key in values and values[key] is None:
            values[key] = list(default) if isinstance(default, list) else default


def check_algorithm(provider: str, algorithm: str | None) -> None:
    """Octavia's amphora provider refuses SOURCE_IP_PORT; our noop (and OVN-like) providers support it."""
    if algorithm == "SOURCE_IP_PORT" and provider in ("amphora", "octavia"):
        raise NotImplementedByProvider(
            f"Provider '{provider}' does not support a requested option: Amphora provider does not support "
            "SOURCE_IP_PORT algorithm."
        )


async def insert(
    app: App,
    call: Call,
    session: AsyncSession,
    lb: LoadBalancer,
    values: dict[str, Any],
    listener: Listener | None = None,
) -> Pool:
    """Validate a parsed pool body against ``lb`` (and ``listener``) and add its row in PENDING_CREATE.

    The caller holds the load-balancer lock, reserves quota and queues the command.
    """
    protocol = values["protocol"]
    if values.get("lb_algorithm") is None:
        raise InvalidField("lb_algorithm", None, "Mandatory field missing.")
    if listener is not None:
        check_protocols(listener.protocol, protocol)
        if listener.default_pool_id:
            raise Conflict("This listener already has a default pool")
    _check_persistence(protocol, values.get("session_persistence"))
    _check_tls_create(values)
    check_algorithm(lb.provider, values["lb_algorithm"])
    pool = store.fresh(
        Pool,
        id=str(uuid.uuid4()),
        project_id=lb.project_id,
        load_balancer_id=lb.id,
        name=values.get("name") or "",
        description=values.get("description") or "",
        admin_state_up=bool(values.get("admin_state_up")) if values.get("admin_state_up") is not None else False,
        protocol=protocol,
        lb_algorithm=values["lb_algorithm"],
        session_persistence=values.get("session_persistence"),
        tls_enabled=bool(values.get("tls_enabled")),
        tls_container_ref=values.get("tls_container_ref"),
        ca_tls_container_ref=values.get("ca_tls_container_ref"),
        crl_container_ref=values.get("crl_container_ref"),
        tls_ciphers=values.get("tls_ciphers"),
        tls_versions=values.get("tls_versions"),
        alpn_protocols=values.get("alpn_protocols"),
    )
    session.add(pool)
    await session.flush()
    await store.set_tags(session, pool.id, values.get("tags") or [])
    if listener is not None:
        listener.default_pool_id = pool.id
        await session.flush()
    return pool


# --- handlers ----------------------------------------------------------------


async def load_visible(call: Call, session: AsyncSession, pool_id: str, rule: Rule = Rule.READ) -> Pool:
    """The pool, if the caller may see it (404 otherwise, 403 when it may see but not change it)."""
    pool = await store.get_or_404(session, Pool, pool_id, LABEL)
    if not call.caller.allowed(Rule.READ, pool.project_id):
        raise store.NotFound(LABEL, pool_id)
    call.caller.check(rule, pool.project_id)
    return pool


async def visible_lb(call: Call, session: AsyncSession, lb_id: str) -> LoadBalancer:
    """A load balancer a child is being created on (404 when missing or hidden, 403 when read-only)."""
    lb = await store.get_or_404(session, LoadBalancer, lb_id, "Load Balancer", hide_deleted=True)
    if not call.caller.allowed(Rule.READ, lb.project_id):
        raise store.NotFound("Load Balancer", lb_id)
    call.caller.check(Rule.WRITE, lb.project_id)
    return lb


async def list_(app: App, call: Call) -> Reply:
    params = parse_query(call.query)
    call.caller.check(Rule.READ)
    listing = ListQuery(SPEC, params, app.settings.pagination_max_limit)
    statement = select(Pool)
    if not call.caller.reads_everything:
        statement = statement.where(Pool.project_id == call.caller.project_id)
    async with app.read() as session:
        page = await listing.page(session, statement, call.base_url)
        items = await views(session, page.rows)
    return Reply(200, {"pools": [select_fields(v, page.fields) for v in items], "pools_links": page.links})


async def get(app: App, call: Call) -> Reply:
    fields = only_fields(call.query)
    async with app.read() as session:
        pool = await load_visible(call, session, call.id)
        (item,) = await views(session, [pool])
    return Reply(200, {"pool": select_fields(item, fields)})


async def create(app: App, call: Call) -> Reply:
    values = parse(CREATE, call.body, create=True)
    if values.get("protocol") is None:
        raise InvalidField("protocol", None, "Mandatory field missing.")
    if values.get("healthmonitor") is not None or values.get("members") is not None:
        # Octavia 19 answers 500 here: embedded children belong to the single-call load balancer create.
        raise InvalidInput("Embedded healthmonitor and members are only supported in a load balancer create.")
    listener_id, lb_id = values.get("listener_id"), values.get("loadbalancer_id")
    if not listener_id and not lb_id:
        raise ValidationFailure("Must provide at least one of: loadbalancer_id, listener_id")
    async with app.write() as session, session.begin():
        listener = None
        if listener_id:
            listener = await store.get_or_404(session, Listener, listener_id, "Listener")
            if not call.caller.allowed(Rule.READ, listener.project_id):
                raise store.NotFound("Listener", listener_id)
            if lb_id and lb_id != listener.load_balancer_id:
                # Octavia 19 accepts this and builds a default pool on another load balancer; we refuse it.
                raise ValidationFailure("The listener and the pool must be on the same load balancer.")
            lb_id = listener.load_balancer_id
        lb = await visible_lb(call, session, lb_id)
        pool = await insert(app, call, session, lb, values, listener)
        await store.lock_load_balancer(session, lb.id)
        if listener is not None:
            check_child_state(listener, "listener")
            listener.provisioning_status = store.PENDING_UPDATE
        await store.reserve_quota(app, session, lb.project_id, {"pool": 1})
        store.command(session, lb.provider, Kind.RESOURCE_KIND_POOL, Op.OPERATION_CREATE, pool.id, lb.id)
        await session.flush()
        (item,) = await views(session, [pool])
    app.commands_committed()
    return Reply(201, {"pool": item})


async def update_(app: App, call: Call) -> Reply:
    values = parse(UPDATE, call.body, create=False, empty="No pool object supplied.")
    async with app.write() as session, session.begin():
        pool = await load_visible(call, session, call.id, Rule.WRITE)
        lb = await session.get(LoadBalancer, pool.load_balancer_id)
        if "lb_algorithm" in values and values["lb_algorithm"] is None:
            raise InvalidField("lb_algorithm", None, "Mandatory field missing.")
        if "session_persistence" in values:
            _check_persistence(pool.protocol, values["session_persistence"])
        _check_tls_update(values, pool)
        check_algorithm(lb.provider, values.get("lb_algorithm"))
        await store.lock_load_balancer(session, lb.id)
        check_child_state(pool, "pool")
        tags = values.pop("tags", s.MISSING)
        for key, value in values.items():
            setattr(pool, key, value)
        if tags is not s.MISSING:
            await store.set_tags(session, pool.id, tags or [])
        pool.provisioning_status = store.PENDING_UPDATE
        pool.updated_at = utcnow()
        await _touch_listeners(session, pool)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_POOL, Op.OPERATION_UPDATE, pool.id, lb.id)
        await session.flush()
        (item,) = await views(session, [pool])
    app.commands_committed()
    return Reply(200, {"pool": item})


async def _touch_listeners(session: AsyncSession, pool: Pool) -> None:
    """Octavia moves the listeners a pool serves to PENDING_UPDATE with it; the provider settles them."""
    await session.execute(
        update(Listener)
        .where(Listener.default_pool_id == pool.id, Listener.provisioning_status == store.ACTIVE)
        .values(provisioning_status=store.PENDING_UPDATE, updated_at=utcnow())
    )


async def delete_(app: App, call: Call) -> Reply:
    async with app.write() as session, session.begin():
        pool = await load_visible(call, session, call.id, Rule.WRITE)
        policy = (
            await session.execute(
                select(L7Policy.id)
                .where(L7Policy.redirect_pool_id == pool.id)
                .order_by(L7Policy.created_at, L7Policy.id)
                .limit(1)
            )
        ).scalar_one_or_none()
        if policy is not None:
            raise Conflict(f"Pool {pool.id} is in use by L7 policy {policy}")
        lb = await session.get(LoadBalancer, pool.load_balancer_id)
        await store.lock_load_balancer(session, lb.id)
        check_child_state(pool, "pool", deleting=True)
        pool.provisioning_status = store.PENDING_DELETE
        pool.updated_at = utcnow()
        await _touch_listeners(session, pool)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_POOL, Op.OPERATION_DELETE, pool.id, lb.id)
    app.commands_committed()
    return Reply(204)


HANDLERS: dict[str, Callable[..., Any]] = {
    "ListPools": list_,
    "CreatePool": create,
    "GetPool": get,
    "UpdatePool": update_,
    "DeletePool": delete_,
}
