"""Listeners: ``/v2/lbaas/listeners``."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict, InvalidField, InvalidInput, NotImplementedByProvider, ValidationFailure
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import (
    Filter,
    as_text,
    lenient_time,
    list_spec,
    matches_nothing_filter,
    scalar_list_filter,
    strict_bool,
    strict_int,
    words,
)
from octavia_mesh.api.resources import providers
from octavia_mesh.api.resources.protocols import (
    alpn_list,
    check_alpn,
    check_listener_refs,
    check_protocols,
    check_tls_versions,
    tls_defaults,
)
from octavia_mesh.common import haproxy_values
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import (
    Amphora,
    L7Policy,
    Listener,
    ListenerStatistics,
    LoadBalancer,
    Pool,
    utcnow,
)
from octavia_mesh.common.lifecycle import AmphoraStatus

LABEL = "Listener"

PROTOCOLS = ("PROMETHEUS", "HTTP", "TCP", "SCTP", "HTTPS", "TERMINATED_HTTPS", "UDP")
#: Protocols sharing the TCP port space: two of them cannot listen on one port (UDP and SCTP have their own).
TCP_FAMILY = ("HTTP", "HTTPS", "TCP", "TERMINATED_HTTPS", "PROMETHEUS")
#: Octavia's API and octavia-lib accept the last three, but Octavia's amphora never writes them; we do.
HTTP_HEADERS = (
    "X-Forwarded-For",
    "X-Forwarded-Port",
    "X-Forwarded-Proto",
    "X-Real-IP",
    "X-Client-IP",
    "X-Forwarded-IP",
)
SSL_HEADERS = tuple(
    "X-SSL-Client-Verify X-SSL-Client-Has-Cert X-SSL-Client-DN X-SSL-Client-CN X-SSL-Issuer X-SSL-Client-SHA1 "
    "X-SSL-Client-Not-Before X-SSL-Client-Not-After".split()
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
        raise s.BodyLevelError(f"Value not a valid dict: {value}")
    for header, setting in value.items():
        if setting is None:
            continue
        if not isinstance(setting, str):
            raise InvalidField(name, value, "Value should be string")
        # The amphora writes these values into haproxy.cfg: no line breaks, no extra words.
        s.check_single_word(name, setting, shown=value)
        s.check_single_word(name, header, shown=value)
    return dict(value)


def _cidr(name: str, value: Any) -> str:
    try:
        if not isinstance(value, str) or s.has_space_or_control(value):
            raise ValueError
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise InvalidField(name, value, "Value should be IPv4 or IPv6 CIDR format") from None


def _cidrs(name: str, value: Any) -> list[str]:
    return list(dict.fromkeys(s.listof(_cidr)(name, value)))


_REF = s.text(255, single_word=True)  # container references reach the amphora's configuration
_TIMEOUT = s.integer(0, TIMEOUT_MAX)

#: ListenerPOST in its declaration order (WSME reports the first bad or missing attribute in it);
#: ListenerPUT is the same without the create-only attributes.
BODY = s.Schema(
    "listener",
    "listener_",
    {
        "name": s.Attr(s.text(255), default=""),
        "description": s.Attr(s.text(255), default=""),
        "admin_state_up": s.Attr(s.boolean, default=True),
        "protocol": s.Attr(s.enum(*PROTOCOLS), required=True, create_only=True),
        "protocol_port": s.Attr(s.integer(1, 65535), required=True, create_only=True),
        "connection_limit": s.Attr(s.integer(-1), default=-1),
        "default_tls_container_ref": s.Attr(_REF),
        "sni_container_refs": s.Attr(s.listof(_REF)),
        "project_id": s.Attr(s.text(36), create_only=True),
        "tenant_id": s.Attr(s.text(36), create_only=True),
        "default_pool_id": s.Attr(s.uuid_value),
        "default_pool": s.Attr(s.anything, create_only=True),
        "l7policies": s.Attr(s.anything, create_only=True),
        "insert_headers": s.Attr(_headers),
        "loadbalancer_id": s.Attr(s.uuid_value, required=True, create_only=True),
        "timeout_client_data": s.Attr(_TIMEOUT),
        "timeout_member_connect": s.Attr(_TIMEOUT),
        "timeout_member_data": s.Attr(_TIMEOUT),
        "timeout_tcp_inspect": s.Attr(_TIMEOUT),
        "tags": s.Attr(s.tag_list),
        "client_ca_tls_container_ref": s.Attr(_REF),
        "client_authentication": s.Attr(s.enum("MANDATORY", "NONE", "OPTIONAL"), default="NONE"),
        "client_crl_container_ref": s.Attr(_REF),
        "allowed_cidrs": s.Attr(_cidrs),
        "tls_ciphers": s.Attr(s.haproxy_rule(haproxy_values.cipher_list, 2048)),
        "tls_versions": s.Attr(s.listof(s.text(32, single_word=True))),
        "alpn_protocols": s.Attr(alpn_list),
        "hsts_max_age": s.Attr(s.integer(0)),
        "hsts_include_subdomains": s.Attr(s.boolean, default=False),
        "hsts_preload": s.Attr(s.boolean, default=False),
    },
    empty_update="No listener object supplied.",
)

#: Compared as times (text would fail on PostgreSQL); a value that is no time matches nothing, as in Octavia.
_TIMES = ("created_at", "updated_at")
_COLUMNS = words(
    "id name description project_id provisioning_status operating_status protocol default_pool_id "
    "default_tls_container_ref client_ca_tls_container_ref client_authentication client_crl_container_ref "
    "tls_ciphers"
)
_INT_COLUMNS = words(
    "protocol_port connection_limit timeout_client_data timeout_member_connect timeout_member_data "
    "timeout_tcp_inspect hsts_max_age"
)
_BOOL_COLUMNS = ("admin_state_up", "hsts_include_subdomains", "hsts_preload")
SPEC = list_spec(
    "listeners",
    Listener,
    {as_text: _COLUMNS, strict_int: _INT_COLUMNS, strict_bool: _BOOL_COLUMNS, lenient_time: _TIMES},
    # Octavia filters on its data model's attributes (load_balancer_id) and the API's names (loadbalancer_id).
    aliases={
        "tenant_id": Filter(Listener.project_id),
        "loadbalancer_id": Filter(Listener.load_balancer_id),
        "load_balancer_id": Filter(Listener.load_balancer_id),
        "tls_versions": scalar_list_filter(Listener.tls_versions),
        "alpn_protocols": scalar_list_filter(Listener.alpn_protocols),
        "insert_headers": matches_nothing_filter(Listener.insert_headers),
    },
    # sni_container_refs and allowed_cidrs stay refused (400): Octavia answers them with a 500.
    unsortable=(
        "tenant_id",
        "hsts_include_subdomains",
        "hsts_preload",
        "tls_versions",
        "alpn_protocols",
        "insert_headers",
    ),
)


def view(listener: Listener, tags: list[str], policy_ids: list[str]) -> dict[str, Any]:
    return {
        **store.status_view(listener),
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
    if cidrs and lb.vip_sg_ids:  # the user's groups decide who reaches the listeners (Octavia 2023.2)
        raise ValidationFailure("Allowed CIDRs are not allowed when using custom VIP Security Groups.")
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
            check_tls_versions(values["tls_versions"])
        if "alpn_protocols" in values:
            check_alpn(values["alpn_protocols"])


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
    check_protocols(protocol, pool.protocol)
    return pool


async def check_provider_supports(app: App, provider: str, protocol: str) -> None:
    """Refuse, before anything is written, a protocol the load balancer's provider says it cannot serve."""
    why = (await providers.facts_of(app, provider)).unsupported_protocols.get(protocol)
    if why is not None:
        raise NotImplementedByProvider(f"Provider '{provider}' does not support a requested option: {why}")


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
    await check_provider_supports(app, lb.provider, protocol)
    if protocol == "PROMETHEUS" and (
        values.get("default_pool_id") or values.get("default_pool") or values.get("l7policies")
    ):
        raise InvalidInput("Protocol PROMETHEUS listeners cannot have child objects.")
    if "client_authentication" in values and values["client_authentication"] is None:
        raise ValidationFailure("Client authentication setting None requires a client CA container reference.")
    _check_tls(values, protocol)
    _check_cidrs(values.get("allowed_cidrs"), lb)
    _check_hsts(values, protocol)
    await check_listener_refs(app, session, lb.project_id, values, provider=lb.provider)
    await check_port(session, lb.id, protocol, port)
    if values.get("default_pool_id"):
        await _default_pool(session, lb.id, values["default_pool_id"], protocol)
    if protocol == "TERMINATED_HTTPS":  # Octavia's TLS defaults apply to TLS-terminating listeners only
        for key, default in tls_defaults().items():
            values[key] = values.get(key) or default
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


COLLECTION = store.ProjectCollection(Listener, LABEL, "listener", SPEC, views)


async def create(app: App, call: Call) -> Reply:
    values = BODY.parse_create(call.body)
    if values.get("default_pool") is not None or values.get("l7policies"):
        # Embedded children are the single-call create's business (resources/graph.py).
        raise InvalidInput("Embedded default_pool and l7policies are only supported in a load balancer create.")
    async with app.change() as session:
        lb_id = values["loadbalancer_id"]
        lb = await store.load_visible(
            session, call, LoadBalancer, lb_id, "Load Balancer", Rule.WRITE, hide_deleted=True
        )
        listener = await insert(app, call, session, lb, values)
        await store.lock_load_balancer(session, lb.id)
        await store.reserve_quota(app, session, lb.project_id, {"listener": 1})
        store.command(session, lb.provider, Kind.RESOURCE_KIND_LISTENER, Op.OPERATION_CREATE, listener.id, lb.id)
        return await store.view_reply(session, 201, "listener", listener, views)


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
    defaults.update(tls_defaults())
    for key, default in defaults.items():
        if key in values and values[key] is None:
            values[key] = default


async def update_(app: App, call: Call) -> Reply:
    values = BODY.parse_update(call.body)
    async with app.change() as session:
        listener = await store.load_visible(session, call, Listener, call.id, LABEL, Rule.WRITE)
        lb = await store.get_known(session, LoadBalancer, listener.load_balancer_id)
        protocol = listener.protocol
        if protocol in ("UDP", "SCTP") and values.get("insert_headers"):
            raise ValidationFailure(f"{protocol} protocol listener does not support TLS or header insertion.")
        _check_tls(values, protocol, listener)
        check_headers(values.get("insert_headers"), protocol, update=True)
        _check_cidrs(values.get("allowed_cidrs"), lb)
        _check_hsts(values, protocol, listener)
        await check_listener_refs(app, session, listener.project_id, values, listener, provider=lb.provider)
        if values.get("default_pool_id"):
            if protocol == "PROMETHEUS":
                raise InvalidInput("Protocol PROMETHEUS listeners cannot have child objects.")
            await _default_pool(session, lb.id, values["default_pool_id"], protocol)
        await store.lock_load_balancer(session, lb.id)
        store.check_state(listener, "listener")
        _reset_nulls(values)
        tags = values.pop("tags", s.MISSING)
        for key, value in values.items():
            setattr(listener, key, value)
        if tags is not s.MISSING:
            await store.set_tags(session, listener.id, tags or [])
        listener.provisioning_status = store.PENDING_UPDATE
        listener.updated_at = utcnow()
        store.command(session, lb.provider, Kind.RESOURCE_KIND_LISTENER, Op.OPERATION_UPDATE, listener.id, lb.id)
        return await store.view_reply(session, 200, "listener", listener, views)


async def delete_(app: App, call: Call) -> Reply:
    async with app.change() as session:
        listener = await store.load_visible(session, call, Listener, call.id, LABEL, Rule.WRITE)
        # The load-balancer lock first: Octavia answers "immutable" while anything under it is pending.
        await store.lock_load_balancer(session, listener.load_balancer_id)
        store.check_state(listener, "listener", deleting=True)
        lb = await store.get_known(session, LoadBalancer, listener.load_balancer_id)
        listener.provisioning_status = store.PENDING_DELETE
        listener.updated_at = utcnow()
        store.command(session, lb.provider, Kind.RESOURCE_KIND_LISTENER, Op.OPERATION_DELETE, listener.id, lb.id)
    return Reply(204)


async def stats(app: App, call: Call) -> Reply:
    async with app.read() as session:
        listener = await store.load_visible(session, call, Listener, call.id, LABEL)
        return Reply(200, {"stats": await traffic(session, ListenerStatistics.listener_id == listener.id)})


async def traffic(session: AsyncSession, which: ColumnElement[bool]) -> dict[str, int]:
    """Octavia's ``stats`` document: the counters of the listener statistics rows ``which`` selects, summed."""
    keys = ("bytes_in", "bytes_out", "active_connections", "total_connections", "request_errors")
    # Totals add up over every amphora that ever served the listener; connections open *now* only over the
    # live ones (a failed-over amphora's last count is stale), as Octavia's get_listener_stats. Rows of no
    # amphora come from provider drivers (octavia-lib's update_statistics) and count as they are.
    live = Amphora.id.is_(None) | (Amphora.status == AmphoraStatus.ALLOCATED)
    sums = [
        func.coalesce(
            func.sum(case((live, ListenerStatistics.active_connections), else_=0))
            if key == "active_connections"
            else func.sum(getattr(ListenerStatistics, key)),
            0,
        )
        for key in keys
    ]
    statement = select(*sums).outerjoin(Amphora, Amphora.id == ListenerStatistics.amphora_id).where(which)
    totals = (await session.execute(statement)).one()
    return {key: int(total) for key, total in zip(keys, totals, strict=True)}


HANDLERS = {
    "ListListeners": COLLECTION.list_,
    "CreateListener": create,
    "GetListener": COLLECTION.get,
    "UpdateListener": update_,
    "DeleteListener": delete_,
    "GetListenerStats": stats,
}
