"""Pools: ``/v2/lbaas/pools``."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict, InvalidField, InvalidInput, ValidationFailure
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import Filter, as_text, lenient_time, list_spec, scalar_list_filter, strict_bool, words
from octavia_mesh.api.resources.protocols import (
    alpn_list,
    check_alpn,
    check_ca_and_crl,
    check_certificate_refs,
    check_protocols,
    check_tls_versions,
    tls_defaults,
)
from octavia_mesh.common import haproxy_values
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import HealthMonitor, L7Policy, L7Rule, Listener, LoadBalancer, Member, Pool, utcnow

LABEL = "Pool"

# --- request bodies ----------------------------------------------------------

_COOKIE = re.compile(r"^[^\s,;\\]+$")


def _cookie_name(name: str, value: Any) -> str:
    s.text(255)(name, value)
    if not _COOKIE.match(value) or s.has_space_or_control(value):
        raise InvalidField(name, value, "Value should match the pattern ^[^\\s,;\\\\]+$")
    try:  # what HAProxy's req.cook() and res.cook() read: an RFC 6265 token
        return haproxy_values.cookie_name(value)
    except haproxy_values.ValueRefused as exc:
        raise InvalidField(name, value, exc.reason) from None


_PERSISTENCE = s.nested(
    {
        "type": s.Attr(s.enum("APP_COOKIE", "SOURCE_IP", "HTTP_COOKIE"), required=True),
        "cookie_name": s.Attr(_cookie_name),
        "persistence_timeout": s.Attr(s.integer()),
        "persistence_granularity": s.Attr(s.ip_address),
    },
    "pool_.pool.session_persistence",
)
_REF = s.text(255, single_word=True)  # container references reach the amphora's configuration

LB_ALGORITHMS = ("SOURCE_IP_PORT", "LEAST_CONNECTIONS", "SOURCE_IP", "ROUND_ROBIN")
POOL_PROTOCOLS = ("HTTP", "TCP", "SCTP", "PROXY", "HTTPS", "PROXYV2", "UDP")

#: PoolPOST in our attribute order; PoolPUT is the same without the create-only attributes.
BODY = s.Schema(
    "pool",
    "pool_",
    {
        "name": s.Attr(s.text(255), default=""),
        "description": s.Attr(s.text(255), default=""),
        "admin_state_up": s.Attr(s.boolean, default=True),
        "listener_id": s.Attr(s.uuid_value, create_only=True),
        "loadbalancer_id": s.Attr(s.uuid_value, create_only=True),
        "protocol": s.Attr(s.enum(*POOL_PROTOCOLS), required=True, create_only=True),
        # A null lb_algorithm passes here; the handlers refuse it as Octavia's mandatory-field fault.
        "lb_algorithm": s.Attr(s.enum(*LB_ALGORITHMS), required=True),
        "session_persistence": s.Attr(_PERSISTENCE),
        "tags": s.Attr(s.tag_list),
        "tls_container_ref": s.Attr(_REF),
        "ca_tls_container_ref": s.Attr(_REF),
        "crl_container_ref": s.Attr(_REF),
        "tls_enabled": s.Attr(s.boolean, default=False),
        "tls_ciphers": s.Attr(s.haproxy_rule(haproxy_values.cipher_list, 2048)),
        "tls_versions": s.Attr(s.listof(s.text(32))),
        "alpn_protocols": s.Attr(alpn_list),
        "project_id": s.Attr(s.text(36), create_only=True),
        "tenant_id": s.Attr(s.text(36), create_only=True),
        "healthmonitor": s.Attr(s.anything, create_only=True),
        "members": s.Attr(s.anything, create_only=True),
    },
    empty_update="No pool object supplied.",
)

# --- views and lists -------------------------------------------------------------------

#: Compared as times (text would fail on PostgreSQL); a value that is no time matches nothing, as in Octavia.
_TIMES = ("created_at", "updated_at")
_COLUMNS = words(
    "id name description project_id provisioning_status operating_status protocol lb_algorithm tls_container_ref "
    "ca_tls_container_ref crl_container_ref tls_ciphers"
)
SPEC = list_spec(
    "pools",
    Pool,
    {as_text: _COLUMNS, strict_bool: ("admin_state_up", "tls_enabled"), lenient_time: _TIMES},
    aliases={
        "tenant_id": Filter(Pool.project_id),
        "loadbalancer_id": Filter(Pool.load_balancer_id),
        "load_balancer_id": Filter(Pool.load_balancer_id),
        "tls_versions": scalar_list_filter(Pool.tls_versions),
        "alpn_protocols": scalar_list_filter(Pool.alpn_protocols),
    },
    unsortable=("tenant_id", "tls_versions", "alpn_protocols"),
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
        **store.status_view(pool),
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
            assert pool_id is not None  # matched a pool id of the chunk
            listeners[pool_id].append(child)
        # Octavia also counts listeners that reach the pool through an enabled REDIRECT_TO_POOL policy with rules.
        with_rules = select(L7Rule.l7policy_id).where(L7Rule.l7policy_id == L7Policy.id).exists()
        for pool_id, child in await session.execute(
            select(L7Policy.redirect_pool_id, L7Policy.listener_id)
            .where(L7Policy.redirect_pool_id.in_(chunk), L7Policy.admin_state_up.is_(True), with_rules)
            .order_by(L7Policy.position, L7Policy.created_at)
        ):
            assert pool_id is not None  # matched a pool id of the chunk
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
        for key, default in tls_defaults().items():
            if values.get(key) is None:
                values[key] = default


def _check_tls_update(values: dict[str, Any], row: Pool) -> None:
    """On update the lists are always checked, and a null restores the default."""
    if values.get("tls_versions") is not None:
        check_tls_versions(values["tls_versions"])
    if values.get("alpn_protocols") is not None:
        check_alpn(values["alpn_protocols"])
    defaults = {**tls_defaults(), "name": "", "description": "", "admin_state_up": False, "tls_enabled": False}
    for key, default in defaults.items():
        if key in values and values[key] is None:
            values[key] = default


async def _check_refs_create(app: App, session: AsyncSession, lb: LoadBalancer, values: dict[str, Any]) -> None:
    """The client certificate, CA and CRL resolve in the local secret store, within the pool's project."""
    provider, project_id = lb.provider, lb.project_id
    await check_certificate_refs(app, session, project_id, [values.get("tls_container_ref")], provider=provider)
    if values.get("ca_tls_container_ref"):
        await check_ca_and_crl(
            app,
            session,
            project_id,
            values["ca_tls_container_ref"],
            values.get("crl_container_ref"),
            provider=provider,
        )


async def _check_refs_update(app: App, session: AsyncSession, values: dict[str, Any], row: Pool, provider: str) -> None:
    """Octavia's ``_validate_pool_PUT`` reference rules: a stored CA or CRL stands in for one not given."""
    crl = values.get("crl_container_ref") or (row.crl_container_ref if "crl_container_ref" not in values else None)
    ca = None
    if "ca_tls_container_ref" in values:
        if not values["ca_tls_container_ref"] and crl:
            if row.ca_tls_container_ref:
                raise ValidationFailure(
                    "A CA reference cannot be removed when a certificate revocation list is present."
                )
            raise ValidationFailure("A CA reference is required to specify a certificate revocation list.")
        ca = values["ca_tls_container_ref"]
    elif row.ca_tls_container_ref:
        ca = row.ca_tls_container_ref
    elif crl:
        raise ValidationFailure("A CA reference is required to specify a certificate revocation list.")
    if values.get("tls_container_ref"):
        await check_certificate_refs(app, session, row.project_id, [values["tls_container_ref"]], provider=provider)
    # The stored CA and CRL are checked again only when the request changes one of them.
    if ca and ("ca_tls_container_ref" in values or "crl_container_ref" in values):
        await check_ca_and_crl(app, session, row.project_id, ca, crl, provider=provider)


def check_algorithm(provider: str, algorithm: str | None) -> None:
    """Every algorithm is supported: Octavia's amphora provider refuses SOURCE_IP_PORT, but ours hashes on
    the source address and port (``balance hash src,concat(...)``)."""
    del provider, algorithm


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
    await _check_refs_create(app, session, lb, values)
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


COLLECTION = store.ProjectCollection(Pool, LABEL, "pool", SPEC, views)


async def create(app: App, call: Call) -> Reply:
    values = BODY.parse_create(call.body)
    if values.get("protocol") is None:
        raise InvalidField("protocol", None, "Mandatory field missing.")
    if values.get("healthmonitor") is not None or values.get("members") is not None:
        # Octavia 19 answers 500 here: embedded children belong to the single-call load balancer create.
        raise InvalidInput("Embedded healthmonitor and members are only supported in a load balancer create.")
    listener_id, lb_id = values.get("listener_id"), values.get("loadbalancer_id")
    if not listener_id and not lb_id:
        raise ValidationFailure("Must provide at least one of: loadbalancer_id, listener_id")
    async with app.change() as session:
        listener = None
        if listener_id:
            listener = await store.load_visible(session, call, Listener, listener_id, "Listener")
            if lb_id and lb_id != listener.load_balancer_id:
                # Octavia 19 accepts this and builds a default pool on another load balancer; we refuse it.
                raise ValidationFailure("The listener and the pool must be on the same load balancer.")
            lb_id = listener.load_balancer_id
        lb = await store.load_visible(
            session, call, LoadBalancer, lb_id, "Load Balancer", Rule.WRITE, hide_deleted=True
        )
        pool = await insert(app, call, session, lb, values, listener)
        await store.lock_load_balancer(session, lb.id)
        if listener is not None:
            store.check_state(listener, "listener")
            listener.provisioning_status = store.PENDING_UPDATE
        await store.reserve_quota(app, session, lb.project_id, {"pool": 1})
        store.command(session, lb.provider, Kind.RESOURCE_KIND_POOL, Op.OPERATION_CREATE, pool.id, lb.id)
        return await store.view_reply(session, 201, "pool", pool, views)


async def update_(app: App, call: Call) -> Reply:
    values = BODY.parse_update(call.body)
    async with app.change() as session:
        pool = await store.load_visible(session, call, Pool, call.id, LABEL, Rule.WRITE)
        lb = await store.get_known(session, LoadBalancer, pool.load_balancer_id)
        if "lb_algorithm" in values and values["lb_algorithm"] is None:
            raise InvalidField("lb_algorithm", None, "Mandatory field missing.")
        if "session_persistence" in values:
            _check_persistence(pool.protocol, values["session_persistence"])
        await _check_refs_update(app, session, values, pool, lb.provider)
        _check_tls_update(values, pool)
        check_algorithm(lb.provider, values.get("lb_algorithm"))
        await store.lock_load_balancer(session, lb.id)
        store.check_state(pool, "pool")
        tags = values.pop("tags", s.MISSING)
        for key, value in values.items():
            setattr(pool, key, value)
        if tags is not s.MISSING:
            await store.set_tags(session, pool.id, tags or [])
        pool.provisioning_status = store.PENDING_UPDATE
        pool.updated_at = utcnow()
        await _touch_listeners(session, pool)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_POOL, Op.OPERATION_UPDATE, pool.id, lb.id)
        return await store.view_reply(session, 200, "pool", pool, views)


async def _touch_listeners(session: AsyncSession, pool: Pool) -> None:
    """Octavia moves the listeners a pool serves to PENDING_UPDATE with it; the provider settles them."""
    await session.execute(
        update(Listener)
        .where(Listener.default_pool_id == pool.id, Listener.provisioning_status == store.ACTIVE)
        .values(provisioning_status=store.PENDING_UPDATE, updated_at=utcnow())
    )


async def delete_(app: App, call: Call) -> Reply:
    async with app.change() as session:
        pool = await store.load_visible(session, call, Pool, call.id, LABEL, Rule.WRITE)
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
        lb = await store.get_known(session, LoadBalancer, pool.load_balancer_id)
        await store.lock_load_balancer(session, lb.id)
        store.check_state(pool, "pool", deleting=True)
        pool.provisioning_status = store.PENDING_DELETE
        pool.updated_at = utcnow()
        await _touch_listeners(session, pool)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_POOL, Op.OPERATION_DELETE, pool.id, lb.id)
    return Reply(204)


HANDLERS = {
    "ListPools": COLLECTION.list_,
    "CreatePool": create,
    "GetPool": COLLECTION.get,
    "UpdatePool": update_,
    "DeletePool": delete_,
}
