"""Listeners: ``/v2/lbaas/listeners``."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict, InvalidField, InvalidInput, ValidationFailure
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import Filter, ListQuery, ListSpec, bool_filter, int_filter, parse_query, select_fields
from octavia_mesh.api.resources import pools as p
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import L7Policy, Listener, ListenerStatistics, LoadBalancer, Pool, utcnow

LABEL = "Listener"

PROTOCOLS = ("PROMETHEUS", "HTTP", "TCP", "SCTP", "HTTPS", "TERMINATED_HTTPS", "UDP")
#: Protocols sharing the TCP port space: two of them cannot listen on one port (UDP and SCTP have their own).
TCP_FAMILY = ("HTTP", "HTTPS", "TCP", "TERMINATED_HTTPS", "PROMETHEUS")
HTTP_HEADERS = ("X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto")
SSL_HEADERS = (
    "X-SSL-Client-Verify",
    "X-SSL-Client-Has-Cert",
    "X-SSL-Client-DN",
    "X-SSL-Client-CN",
    "X-SSL-Issuer",
    "X-SSL-Client-SHA1",
    "X-SSL-Client-Not-Before",
    "X-SSL-Client-Not-After",
)
TIMEOUT_MAX = 2073600000  # 24 days in milliseconds, Octavia's MAX_TIMEOUT
TIMEOUT_DEFAULTS = {
    "timeout_client_data": 50000,
    "timeout_member_connect": 5000,
    "timeout_member_data": 50000,
    "timeout_tcp_inspect": 0,
}
TLS_REFS = ("default_tls_container_ref", "sni_container_refs")


def _headers(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise p.BodyError(f"Value not a valid dict: {value}")
    for header, setting in value.items():
        if setting is None:
            continue
        if not isinstance(setting, str):
            raise InvalidField(name, value, "Value should be string")
        # The amphora writes these values into haproxy.cfg: no line breaks, no extra words.
        p.no_space(name, setting, shown=value)
        p.no_space(name, header, shown=value)
    return dict(value)


def _cidr(name: str, value: Any) -> str:
    try:
        if not isinstance(value, str) or p._UNSAFE.search(value):
            raise ValueError
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise InvalidField(name, value, "Value should be IPv4 or IPv6 CIDR format") from None


def _cidrs(name: str, value: Any) -> list[str]:
    return list(dict.fromkeys(p.listof(_cidr)(name, value)))


_REF = p.text(255, safe=True)
_TIMEOUT = p.integer(0, TIMEOUT_MAX)

_MUTABLE = {
    "name": s.Attr(p.text(255), default=""),
    "description": s.Attr(p.text(255), default=""),
    "admin_state_up": s.Attr(p.boolean, default=True),
    "connection_limit": s.Attr(p.integer(-1), default=-1),
    "default_tls_container_ref": s.Attr(_REF),
    "sni_container_refs": s.Attr(p.listof(_REF)),
    "default_pool_id": s.Attr(p.uuid_check),
    "insert_headers": s.Attr(_headers),
    "timeout_client_data": s.Attr(_TIMEOUT),
    "timeout_member_connect": s.Attr(_TIMEOUT),
    "timeout_member_data": s.Attr(_TIMEOUT),
    "timeout_tcp_inspect": s.Attr(_TIMEOUT),
    "tags": s.Attr(p.listof(p.text(255))),
    "client_ca_tls_container_ref": s.Attr(_REF),
    "client_authentication": s.Attr(p.enum("MANDATORY", "NONE", "OPTIONAL"), default="NONE"),
    "client_crl_container_ref": s.Attr(_REF),
    "allowed_cidrs": s.Attr(_cidrs),
    "tls_ciphers": s.Attr(p.text(2048, safe=True)),
    "tls_versions": s.Attr(p.listof(p.text(32, safe=True))),
    "alpn_protocols": s.Attr(p.choices_list(p.ALPN_PROTOCOLS, "Value should be a valid ALPN protocol ID")),
    "hsts_max_age": s.Attr(p.integer(0)),
    "hsts_include_subdomains": s.Attr(p.boolean, default=False),
    "hsts_preload": s.Attr(p.boolean, default=False),
}
_ORDER = (  # ListenerPOST's attribute order: WSME reports the first bad or missing one in this order
    "name",
    "description",
    "admin_state_up",
    "protocol",
    "protocol_port",
    "connection_limit",
    "default_tls_container_ref",
    "sni_container_refs",
    "project_id",
    "tenant_id",
    "default_pool_id",
    "default_pool",
    "l7policies",
    "insert_headers",
    "loadbalancer_id",
)
_CREATE_ONLY = {
    "protocol": s.Attr(p.enum(*PROTOCOLS), required=True, create_only=True),
    "protocol_port": s.Attr(p.integer(1, 65535), required=True, create_only=True),
    "project_id": s.Attr(p.text(36), create_only=True),
    "tenant_id": s.Attr(p.text(36), create_only=True),
    "default_pool": s.Attr(s.any_value, create_only=True),
    "l7policies": s.Attr(s.any_value, create_only=True),
    "loadbalancer_id": s.Attr(p.uuid_check, required=True, create_only=True),
}
_ALL = {**_MUTABLE, **_CREATE_ONLY}
CREATE = s.Schema(
    "listener",
    "listener_",
    {**{n: _ALL[n] for n in _ORDER}, **{n: a for n, a in _MUTABLE.items() if n not in _ORDER}},
)
UPDATE = s.Schema("listener", "listener_", {n: s.Attr(a.check) for n, a in _MUTABLE.items()})

_COLUMNS = (
    "id",
    "name",
    "description",
    "project_id",
    "provisioning_status",
    "operating_status",
    "protocol",
    "default_pool_id",
    "default_tls_container_ref",
    "client_ca_tls_container_ref",
    "client_authentication",
    "client_crl_container_ref",
    "tls_ciphers",
    "created_at",
    "updated_at",
)
_INT_COLUMNS = (
    "protocol_port",
    "connection_limit",
    "timeout_client_data",
    "timeout_member_connect",
    "timeout_member_data",
    "timeout_tcp_inspect",
    "hsts_max_age",
)
SPEC = ListSpec(
    collection="listeners",
    id_column=Listener.id,
    created_column=Listener.created_at,
    filters={
        **{n: Filter(getattr(Listener, n)) for n in _COLUMNS},
        **{n: int_filter(getattr(Listener, n)) for n in _INT_COLUMNS},
        "tenant_id": Filter(Listener.project_id),
        "loadbalancer_id": Filter(Listener.load_balancer_id),
        "admin_state_up": bool_filter(Listener.admin_state_up),
        "hsts_include_subdomains": bool_filter(Listener.hsts_include_subdomains),
        "hsts_preload": bool_filter(Listener.hsts_preload),
    },
    sort_keys={
        **{n: getattr(Listener, n) for n in _COLUMNS + _INT_COLUMNS},
        "admin_state_up": Listener.admin_state_up,
        "loadbalancer_id": Listener.load_balancer_id,
    },
)


def view(listener: Listener, tags: list[str], policy_ids: list[str]) -> dict[str, Any]:
    return {
        "id": listener.id,
        "name": listener.name or "",
        "description": listener.description or "",
        "provisioning_status": listener.provisioning_status,
        "operating_status": listener.operating_status,
        "admin_state_up": listener.admin_state_up,
        "protocol": listener.protocol,
        "protocol_port": listener.protocol_port,
        "connection_limit": listener.connection_limit,
        "default_tls_container_ref": listener.default_tls_container_ref,
        "sni_container_refs": list(listener.sni_container_refs or []),
        "project_id": listener.project_id,
        "default_pool_id": listener.default_pool_id,
        "l7policies": [{"id": i} for i in policy_ids],
        "insert_headers": dict(listener.insert_headers or {}),
        "created_at": store.timestamp(listener.created_at),
        "updated_at": store.timestamp(listener.updated_at),
        "loadbalancers": [{"id": listener.load_balancer_id}],
        "timeout_client_data": listener.timeout_client_data,
        "timeout_member_connect": listener.timeout_member_connect,
        "timeout_member_data": listener.timeout_member_data,
        "timeout_tcp_inspect": listener.timeout_tcp_inspect,
        "tags": tags,
        "client_ca_tls_container_ref": listener.client_ca_tls_container_ref,
        "client_authentication": listener.client_authentication,
        "client_crl_container_ref": listener.client_crl_container_ref,
        "allowed_cidrs": list(listener.allowed_cidrs) if listener.allowed_cidrs else None,
        "tls_ciphers": listener.tls_ciphers,
        "tls_versions": listener.tls_versions,
        "alpn_protocols": listener.alpn_protocols,
        "hsts_max_age": listener.hsts_max_age,
        "hsts_include_subdomains": bool(listener.hsts_include_subdomains),
        "hsts_preload": bool(listener.hsts_preload),
        "tenant_id": listener.project_id,
    }


async def views(session: AsyncSession, listeners: list[Listener]) -> list[dict[str, Any]]:
    """Views of many listeners with one query for their L7 policies and one for their tags."""
    ids = [listener.id for listener in listeners]
    policies: dict[str, list[str]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):
        for listener_id, policy_id in await session.execute(
            select(L7Policy.listener_id, L7Policy.id)
            .where(L7Policy.listener_id.in_(ids[start : start + 500]))
            .order_by(L7Policy.position, L7Policy.created_at)
        ):
            policies[listener_id].append(policy_id)
    tags = await store.tags_of(session, ids)
    return [view(x, tags.get(x.id, []), policies[x.id]) for x in listeners]


# --- validation --------------------------------------------------------------


def check_headers(headers: dict[str, Any] | None, protocol: str, *, update: bool = False) -> None:
    """Octavia's ``_validate_insert_headers`` with its (odd but exact) messages."""
    if not headers:
        return
    if protocol not in ("HTTP", "TERMINATED_HTTPS"):
        raise InvalidInput(f"insert-headers is not a valid option for a {protocol} protocol listener.")
    if set(headers) - set(HTTP_HEADERS + SSL_HEADERS):
        keys = f"{list(headers)!r}" if update else f"dict_keys({list(headers)!r})"  # PUT passes a list, POST keys()
        raise InvalidInput(f"{keys} is not a valid option for insert_headers")
    ssl = [h for h in headers if h in SSL_HEADERS]
    if protocol != "TERMINATED_HTTPS" and ssl:
        raise InvalidInput(f"{ssl!r} is not a valid option for {protocol} protocol listener.")


def _check_cidrs(cidrs: list[str] | None, lb: LoadBalancer) -> None:
    vips = [lb.vip_address] + [v.get("ip_address") for v in lb.additional_vips or [] if v.get("ip_address")]
    vips = [v for v in vips if v]
    if not vips:
        return
    versions = {ipaddress.ip_address(v).version for v in vips}
    for cidr in cidrs or []:
        if ipaddress.ip_network(cidr).version not in versions:
            raise ValidationFailure(f"CIDR {cidr} IP version incompatible with all VIPs {vips} IP version.")


def _check_hsts(values: dict[str, Any], protocol: str, row: Listener | None = None) -> None:
    wants = values.get("hsts_include_subdomains") or values.get("hsts_preload")
    if row is None and wants and values.get("hsts_max_age") is None:
        raise ValidationFailure(
            "HSTS configuration options hsts_include_subdomains and hsts_preload only make sense if hsts_max_age "
            "is set as well."
        )
    if row is not None and wants and values.get("hsts_max_age") is None and row.hsts_max_age is None:
        raise ValidationFailure(
            "Cannot enable hsts_include_subdomains or hsts_preload if hsts_max_age was not set as well."
        )
    if values.get("hsts_max_age") is not None and protocol != "TERMINATED_HTTPS":
        raise ValidationFailure("The HSTS feature can only be used for listeners using the TERMINATED_HTTPS protocol.")


def _check_tls(values: dict[str, Any], protocol: str, row: Listener | None = None) -> None:
    """The certificate rules of ``_validate_create_listener`` / ``_validate_listener_PUT``."""

    def current(key: str) -> Any:
        return values[key] if key in values else getattr(row, key, None)

    has_cert = bool(current("default_tls_container_ref") or current("sni_container_refs"))
    given_cert = bool(values.get("default_tls_container_ref") or values.get("sni_container_refs"))
    if protocol in ("UDP", "SCTP") and given_cert:
        extra = " or header insertion" if row is not None else ""
        raise ValidationFailure(f"{protocol} protocol listener does not support TLS{extra}.")
    if protocol not in ("TERMINATED_HTTPS", "PROMETHEUS") and given_cert:
        raise ValidationFailure(f"Certificate container references are not allowed on {protocol} protocol listeners.")
    if values.get("client_ca_tls_container_ref") and not has_cert:
        raise ValidationFailure(
            "An SNI or default certificate container reference must be provided with a client CA container reference."
        )
    if protocol == "TERMINATED_HTTPS" and not has_cert:
        raise ValidationFailure(
            f"An SNI or default certificate container reference must be provided for {protocol} protocol listeners."
        )
    if "client_authentication" in values and values["client_authentication"] != "NONE":
        if not current("client_ca_tls_container_ref"):
            raise ValidationFailure(
                f"Client authentication setting {values['client_authentication']} requires a client CA container "
                "reference."
            )
    if current("client_crl_container_ref") and not current("client_ca_tls_container_ref"):
        raise ValidationFailure(
            "A client authentication CA reference is required to specify a client authentication revocation list."
        )
    if protocol == "TERMINATED_HTTPS" or row is not None:
        if "tls_versions" in values and (row is None or values["tls_versions"] is not None):
            p.check_tls_versions(values["tls_versions"])
        if "alpn_protocols" in values:
            p.check_alpn(values["alpn_protocols"])


async def check_port(session: AsyncSession, lb_id: str, protocol: str, port: int) -> None:
    """409 when another listener on the load balancer already owns the port in the same transport."""
    family = TCP_FAMILY if protocol in TCP_FAMILY else (protocol,)
    clash = (
        await session.execute(
            select(Listener.protocol)
            .where(
                Listener.load_balancer_id == lb_id,
                Listener.protocol_port == port,
                Listener.protocol.in_(family),
            )
            .limit(1)
        )
    ).scalar_one_or_none()
    if clash is not None:
        raise Conflict(
            f"Another Listener on this Load Balancer is already using protocol {clash} and protocol_port {port}"
        )


async def _default_pool(session: AsyncSession, lb_id: str, pool_id: str, protocol: str) -> Pool:
    """A pool that may become the listener's default: same load balancer, compatible protocol."""
    pool = await session.get(Pool, pool_id)
    if pool is None or pool.load_balancer_id != lb_id:
        raise store.NotFound("Pool", pool_id)
    p.check_protocols(protocol, pool.protocol)
    return pool


async def insert(app: App, call: Call, session: AsyncSession, lb: LoadBalancer, values: dict[str, Any]) -> Listener:
    """Validate a parsed listener body against ``lb`` and add its row in PENDING_CREATE.

    The caller holds (or takes) the load-balancer lock, reserves quota and queues the command.
    """
    protocol, port = values.get("protocol"), values.get("protocol_port")
    if protocol is None:
        raise InvalidInput("None is not a valid option for protocol")
    if port is None:
        raise InvalidInput(f"{protocol} is not a valid option for protocol")
    check_headers(values.get("insert_headers"), protocol)
    if protocol == "PROMETHEUS" and (
        values.get("default_pool_id") or values.get("default_pool") or values.get("l7policies")
    ):
        raise InvalidInput("Protocol PROMETHEUS listeners cannot have child objects.")
    if "client_authentication" in values and values["client_authentication"] is None:
        raise ValidationFailure("Client authentication setting None requires a client CA container reference.")
    _check_tls(values, protocol)
    _check_cidrs(values.get("allowed_cidrs"), lb)
    _check_hsts(values, protocol)
    await check_port(session, lb.id, protocol, port)
    if values.get("default_pool_id"):
        await _default_pool(session, lb.id, values["default_pool_id"], protocol)
    if protocol == "TERMINATED_HTTPS":  # Octavia's TLS defaults apply to TLS-terminating listeners only
        values["tls_ciphers"] = values.get("tls_ciphers") or p.DEFAULT_CIPHERS
        values["tls_versions"] = values.get("tls_versions") or list(p.DEFAULT_TLS_VERSIONS)
        values["alpn_protocols"] = values.get("alpn_protocols") or list(p.DEFAULT_ALPN)
    timeouts = {k: d if values.get(k) is None else values[k] for k, d in TIMEOUT_DEFAULTS.items()}
    listener = store.fresh(
        Listener,
        id=str(uuid.uuid4()),
        project_id=lb.project_id,
        load_balancer_id=lb.id,
        name=values.get("name") or "",
        description=values.get("description") or "",
        admin_state_up=bool(values.get("admin_state_up")),
        protocol=protocol,
        protocol_port=port,
        connection_limit=values.get("connection_limit"),
        default_pool_id=values.get("default_pool_id"),
        default_tls_container_ref=values.get("default_tls_container_ref"),
        sni_container_refs=values.get("sni_container_refs") or [],
        client_authentication=values.get("client_authentication") or "NONE",
        client_ca_tls_container_ref=values.get("client_ca_tls_container_ref"),
        client_crl_container_ref=values.get("client_crl_container_ref"),
        insert_headers=values.get("insert_headers") or {},
        allowed_cidrs=values.get("allowed_cidrs") or [],
        tls_ciphers=values.get("tls_ciphers"),
        tls_versions=values.get("tls_versions"),
        alpn_protocols=values.get("alpn_protocols"),
        hsts_max_age=values.get("hsts_max_age"),
        hsts_include_subdomains=bool(values.get("hsts_include_subdomains")),
        hsts_preload=bool(values.get("hsts_preload")),
        **timeouts,
    )
    session.add(listener)
    await session.flush()
    await store.set_tags(session, listener.id, values.get("tags") or [])
    return listener


# --- handlers ----------------------------------------------------------------


async def load_visible(call: Call, session: AsyncSession, listener_id: str, rule: Rule = Rule.READ) -> Listener:
    listener = await store.get_or_404(session, Listener, listener_id, LABEL)
    if not call.caller.allowed(Rule.READ, listener.project_id):
        raise store.NotFound(LABEL, listener_id)
    call.caller.check(rule, listener.project_id)
    return listener


async def list_(app: App, call: Call) -> Reply:
    params = parse_query(call.query)
    call.caller.check(Rule.READ)
    listing = ListQuery(SPEC, params, app.settings.pagination_max_limit)
    statement = select(Listener)
    if not call.caller.reads_everything:
        statement = statement.where(Listener.project_id == call.caller.project_id)
    async with app.read() as session:
        page = await listing.page(session, statement, call.base_url)
        items = await views(session, page.rows)
    return Reply(200, {"listeners": [select_fields(v, page.fields) for v in items], "listeners_links": page.links})


async def get(app: App, call: Call) -> Reply:
    fields = p.only_fields(call.query)
    async with app.read() as session:
        listener = await load_visible(call, session, call.id)
        (item,) = await views(session, [listener])
    return Reply(200, {"listener": select_fields(item, fields)})


async def create(app: App, call: Call) -> Reply:
    values = p.parse(CREATE, call.body, create=True)
    if values.get("default_pool") is not None or values.get("l7policies"):
        # Embedded children are the single-call create's business (resources/graph.py).
        raise InvalidInput("Embedded default_pool and l7policies are only supported in a load balancer create.")
    async with app.write() as session, session.begin():
        lb = await p.visible_lb(call, session, values["loadbalancer_id"])
        listener = await insert(app, call, session, lb, values)
        await store.lock_load_balancer(session, lb.id)
        await store.reserve_quota(app, session, lb.project_id, {"listener": 1})
        store.command(session, lb.provider, Kind.RESOURCE_KIND_LISTENER, Op.OPERATION_CREATE, listener.id, lb.id)
        await session.flush()
        (item,) = await views(session, [listener])
    app.commands_committed()
    return Reply(201, {"listener": item})


def _reset_nulls(values: dict[str, Any]) -> None:
    """Octavia's ``_set_default_on_none``: a null on update restores the default."""
    for key, default in TIMEOUT_DEFAULTS.items():
        if key in values and values[key] is None:
            values[key] = default
    defaults: dict[str, Any] = {
        "connection_limit": -1,
        "insert_headers": {},
        "sni_container_refs": [],
        "allowed_cidrs": [],
        "client_authentication": "NONE",
        "hsts_include_subdomains": False,
        "hsts_preload": False,
        "admin_state_up": False,
        "name": "",
        "description": "",
    }
    # Octavia restores the TLS defaults on null whatever the protocol (an HTTP listener gets them too).
    defaults.update(
        tls_ciphers=p.DEFAULT_CIPHERS, tls_versions=list(p.DEFAULT_TLS_VERSIONS), alpn_protocols=list(p.DEFAULT_ALPN)
    )
    for key, default in defaults.items():
        if key in values and values[key] is None:
            values[key] = default


async def update_(app: App, call: Call) -> Reply:
    values = p.parse(UPDATE, call.body, create=False, empty="No listener object supplied.")
    async with app.write() as session, session.begin():
        listener = await load_visible(call, session, call.id, Rule.WRITE)
        lb = await session.get(LoadBalancer, listener.load_balancer_id)
        protocol = listener.protocol
        if protocol in ("UDP", "SCTP") and values.get("insert_headers"):
            raise ValidationFailure(f"{protocol} protocol listener does not support TLS or header insertion.")
        _check_tls(values, protocol, listener)
        check_headers(values.get("insert_headers"), protocol, update=True)
        _check_cidrs(values.get("allowed_cidrs"), lb)
        _check_hsts(values, protocol, listener)
        if values.get("default_pool_id"):
            if protocol == "PROMETHEUS":
                raise InvalidInput("Protocol PROMETHEUS listeners cannot have child objects.")
            await _default_pool(session, lb.id, values["default_pool_id"], protocol)
        await store.lock_load_balancer(session, lb.id)
        p.check_child_state(listener, "listener")
        _reset_nulls(values)
        tags = values.pop("tags", s.MISSING)
        for key, value in values.items():
            setattr(listener, key, value)
        if tags is not s.MISSING:
            await store.set_tags(session, listener.id, tags or [])
        listener.provisioning_status = store.PENDING_UPDATE
        listener.updated_at = utcnow()
        store.command(session, lb.provider, Kind.RESOURCE_KIND_LISTENER, Op.OPERATION_UPDATE, listener.id, lb.id)
        await session.flush()
        (item,) = await views(session, [listener])
    app.commands_committed()
    return Reply(200, {"listener": item})


async def delete_(app: App, call: Call) -> Reply:
    async with app.write() as session, session.begin():
        listener = await load_visible(call, session, call.id, Rule.WRITE)
        # The load-balancer lock first: Octavia answers "immutable" while anything under it is pending.
        await store.lock_load_balancer(session, listener.load_balancer_id)
        p.check_child_state(listener, "listener", deleting=True)
        lb = await session.get(LoadBalancer, listener.load_balancer_id)
        listener.provisioning_status = store.PENDING_DELETE
        listener.updated_at = utcnow()
        store.command(session, lb.provider, Kind.RESOURCE_KIND_LISTENER, Op.OPERATION_DELETE, listener.id, lb.id)
    app.commands_committed()
    return Reply(204)


async def stats(app: App, call: Call) -> Reply:
    async with app.read() as session:
        listener = await load_visible(call, session, call.id)
        totals = (
            await session.execute(
                select(
                    func.coalesce(func.sum(ListenerStatistics.bytes_in), 0),
                    func.coalesce(func.sum(ListenerStatistics.bytes_out), 0),
                    func.coalesce(func.sum(ListenerStatistics.active_connections), 0),
                    func.coalesce(func.sum(ListenerStatistics.total_connections), 0),
                    func.coalesce(func.sum(ListenerStatistics.request_errors), 0),
                ).where(ListenerStatistics.listener_id == listener.id)
            )
        ).one()
    keys = ("bytes_in", "bytes_out", "active_connections", "total_connections", "request_errors")
    return Reply(200, {"stats": {k: int(v) for k, v in zip(keys, totals, strict=True)}})


HANDLERS = {
    "ListListeners": list_,
    "CreateListener": create,
    "GetListener": get,
    "UpdateListener": update_,
    "DeleteListener": delete_,
    "GetListenerStats": stats,
}
