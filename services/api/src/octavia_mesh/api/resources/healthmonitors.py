"""Health monitors: ``/v2/lbaas/healthmonitors``.

Behaviour checked against Octavia 19.0.0: one monitor per pool (409), the
pool/monitor type matrix (UDP and SCTP pools take UDP-CONNECT, SCTP, TCP and
HTTP; the others refuse UDP-CONNECT and SCTP), the HTTP options only on HTTP
and HTTPS monitors (filled with GET, ``/`` and ``200`` there, null
otherwise), and a change needs the pool ACTIVE before the load-balancer lock.

``url_path``, ``domain_name`` and ``expected_codes`` end up in the HAProxy
configuration, so on top of Octavia's own patterns they may not hold control
characters (Octavia's ``$`` lets a trailing newline through) and the first
two no whitespace either.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict, InvalidField, InvalidInput, ValidationFailure
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import (
    Filter,
    as_text,
    lenient_bool,
    lenient_float,
    lenient_int,
    lenient_time,
    list_spec,
    refuse_query_args,
    words,
)
from octavia_mesh.common import haproxy_values
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import HealthMonitor, LoadBalancer, Pool, utcnow

LABEL = "Health Monitor"
#: Octavia's enum orders, as its messages print them.
TYPES = ("TCP", "HTTP", "TLS-HELLO", "UDP-CONNECT", "SCTP", "HTTPS", "PING")
HTTP_METHODS = ("PUT", "DELETE", "CONNECT", "PATCH", "HEAD", "POST", "TRACE", "GET", "OPTIONS")
HTTP_TYPES = ("HTTP", "HTTPS")
UDP_POOL_TYPES = ("UDP-CONNECT", "SCTP", "TCP", "HTTP")
UDP_CONNECT_MIN_DELAY = 3  # [api_settings] udp_connect_min_interval_health_monitor
INT32 = 2**31 - 1  # Octavia has no upper bound; the column is a 32-bit integer

EXPECTED_CODES_PATTERN = r"^(\d{3}(\s*,\s*\d{3})*)$|^(\d{3}-\d{3})$"
_EXPECTED_CODES = re.compile(r"[0-9]{3}( *, *[0-9]{3})*|[0-9]{3}-[0-9]{3}")
DOMAIN_NAME_PATTERN = r"^(?=.{1,253}\.?$)(?:(?!-|[^.]+_)[A-Za-z0-9-_]{1,63}(?<!-)(?:\.|$))+$"
_DOMAIN_NAME = re.compile(DOMAIN_NAME_PATTERN)


# --- checks ------------------------------------------------------------------------


def url_path(name: str, value: Any) -> str:
    """A URL path (Octavia: rfc3986 without scheme, authority or a missing leading slash); no whitespace."""
    if isinstance(value, str) and len(value) > 2048:
        raise InvalidField(name, value, "Value should have a maximum character requirement of 2048")
    if (
        isinstance(value, str)
        and value.startswith("/")
        and not value.startswith("//")  # "//host/..." is a network-path reference
        and not s.has_space_or_control(value)
    ):
        return value
    raise InvalidField(name, value, "Value must be a valid URL Path string")


def expected_codes(name: str, value: Any) -> str:
    s.text(64)(name, value)
    if not _EXPECTED_CODES.fullmatch(value):
        raise InvalidField(name, value, f"Value should match the pattern {EXPECTED_CODES_PATTERN}")
    try:  # status codes HAProxy's check can expect: 100 to 599, ranges from low to high
        haproxy_values.expected_codes(value)
    except haproxy_values.ValueRefused as exc:
        raise InvalidField(name, value, exc.reason) from None
    return value


def domain_name(name: str, value: Any) -> str:
    s.text(255)(name, value)
    if not value:
        raise InvalidField(name, value, "Value should have a minimum character requirement of 1")
    if not _DOMAIN_NAME.fullmatch(value) or s.has_space_or_control(value):
        raise InvalidField(name, value, f"Value should match the pattern {DOMAIN_NAME_PATTERN}")
    try:  # Octavia's pattern admits '_' in labels; the Host header of HAProxy's check is an RFC 1123 name
        return haproxy_values.hostname(value)
    except haproxy_values.ValueRefused as exc:
        raise InvalidField(name, value, exc.reason) from None


def http_version(name: str, value: Any) -> float:
    """WSME's float enum: numbers and numeric strings convert, then 1.0 or 1.1."""
    if isinstance(value, (bool, int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise s.BodyLevelError(f"could not convert string to float: {value!r}") from None
    else:
        raise s.BodyLevelError(f"float() argument must be a string or a real number, not '{type(value).__name__}'")
    if number not in (1.0, 1.1):
        raise InvalidField(name, number, "Value should be one of: 1.0, 1.1")
    return number


_RETRIES = s.integer(1, 10)
#: HealthMonitorPOST in its declaration order (WSME reports the first bad attribute in it);
#: HealthMonitorPUT is the same without the create-only attributes.
BODY = s.Schema(
    "healthmonitor",
    "health_monitor_",
    {
        "name": s.Attr(s.text(255)),
        "type": s.Attr(s.enum(*TYPES), required=True, create_only=True),
        "delay": s.Attr(s.integer(0, INT32), required=True),
        "timeout": s.Attr(s.integer(0, INT32), required=True),
        "max_retries_down": s.Attr(_RETRIES, default=3),
        "max_retries": s.Attr(_RETRIES, required=True),
        "http_method": s.Attr(s.enum(*HTTP_METHODS)),
        "url_path": s.Attr(url_path),
        "expected_codes": s.Attr(expected_codes),
        "admin_state_up": s.Attr(s.boolean, default=True),
        "project_id": s.Attr(s.text(36), create_only=True),
        "tenant_id": s.Attr(s.text(36), create_only=True),
        "pool_id": s.Attr(s.uuid_value, required=True, create_only=True),
        "tags": s.Attr(s.tag_list),
        "http_version": s.Attr(http_version),
        "domain_name": s.Attr(domain_name),
    },
)
#: A monitor inside a single-call create (Octavia's HealthMonitorSingleCreate: no pool or project ids).
EMBEDDED = BODY.derive(drop=("pool_id", "project_id", "tenant_id"))


# --- validation ---------------------------------------------------------------------------


def check_pool_type(protocol: str, hm_type: str | None, delay: int | None) -> None:
    """Which monitor types a pool protocol takes (Octavia checks this before the lock)."""
    if protocol in ("UDP", "SCTP"):
        if hm_type not in UDP_POOL_TYPES:
            raise ValidationFailure(
                f"The associated pool protocol is {protocol}, so only a {'/'.join(UDP_POOL_TYPES)} health monitor "
                "is supported."
            )
        if hm_type == "UDP-CONNECT" and delay is not None and delay < UDP_CONNECT_MIN_DELAY:
            raise ValidationFailure(
                f"The request delay value {delay} should be larger than {UDP_CONNECT_MIN_DELAY} for "
                "UDP-CONNECT health monitor type."
            )
    elif hm_type in ("UDP-CONNECT", "SCTP"):
        raise ValidationFailure(f"The {hm_type} type is only supported for pools of type UDP/SCTP.")


def _check_domain(domain: str | None, version: float | None) -> None:
    if domain and not version:
        raise ValidationFailure("'http_version' must be specified when 'domain_name' is provided.")
    if domain and version and version < 1.1:
        raise InvalidInput(
            f"http_version {version} is not a valid option for health monitors HTTP 1.1 domain name health check"
        )


def check_create(values: dict[str, Any]) -> None:
    """Octavia's ``_validate_create_hm`` (after the lock): mandatory values, HTTP-only options, defaults."""
    for field in ("type", "delay", "timeout", "max_retries"):
        if values.get(field) is None:
            raise InvalidInput(f"None is not a valid option for {field}")
    hm_type = values["type"]
    if hm_type in HTTP_TYPES:
        values["http_method"] = values.get("http_method") or "GET"
        values["url_path"] = values.get("url_path") or "/"
        values["expected_codes"] = values.get("expected_codes") or "200"
    else:
        for field in ("http_method", "url_path", "expected_codes"):
            if values.get(field):
                raise InvalidInput(f"{field} is not a valid option for health monitors of type {hm_type}")
    _check_domain(values.get("domain_name"), values.get("http_version"))


def check_update(hm: HealthMonitor, values: dict[str, Any]) -> None:
    """Octavia's ``_validate_update_hm`` and ``_set_default_on_none`` (before the lock)."""
    if hm.type not in HTTP_TYPES:
        for field in ("http_method", "url_path", "expected_codes"):
            if field in values:  # even a null: Octavia tests "given", not "truthy" here
                raise InvalidInput(f"{field} is not a valid option for health monitors of type {hm.type}")
    for field in ("delay", "max_retries", "timeout"):
        if field in values and values[field] is None:
            raise InvalidInput(f"None is not a valid option for {field}")
    domain, version = values.get("domain_name"), values.get("http_version")
    if domain and not (hm.http_version or version):
        raise ValidationFailure("'http_version' must be specified when 'domain_name' is provided.")
    if (hm.http_version or version) and (hm.domain_name or domain):
        _check_domain(hm.domain_name or domain, version or hm.http_version)
    for field, default in (
        ("http_method", "GET"),
        ("url_path", "/"),
        ("expected_codes", "200"),
        ("max_retries_down", 3),
    ):
        if field in values and values[field] is None:
            values[field] = default


async def insert(
    app: App, call: Call, session: AsyncSession, lb: LoadBalancer, pool: Pool, values: dict[str, Any]
) -> HealthMonitor:
    """Validate a parsed monitor body against ``pool`` and add its row (PENDING_CREATE).

    The caller holds the load-balancer lock, reserves quota and queues the command.
    """
    check_pool_type(pool.protocol, values.get("type"), values.get("delay"))
    check_create(values)
    taken = await session.execute(select(HealthMonitor.id).where(HealthMonitor.pool_id == pool.id).limit(1))
    if taken.first() is not None:
        raise Conflict("This pool already has a health monitor")
    hm = store.fresh(
        HealthMonitor,
        id=str(uuid.uuid4()),
        project_id=lb.project_id,
        pool_id=pool.id,
        name=values.get("name"),  # Octavia stores no name as null: ``?name=`` does not list it
        admin_state_up=True if values.get("admin_state_up") is None else values["admin_state_up"],
        type=values["type"],
        delay=values["delay"],
        timeout=values["timeout"],
        max_retries=values["max_retries"],
        max_retries_down=3 if values.get("max_retries_down") is None else values["max_retries_down"],
        http_method=values.get("http_method"),
        url_path=values.get("url_path"),
        expected_codes=values.get("expected_codes"),
        http_version=values.get("http_version"),
        domain_name=values.get("domain_name"),
    )
    session.add(hm)
    await session.flush()
    await store.set_tags(session, hm.id, values.get("tags") or [])
    return hm


# --- views ----------------------------------------------------------------------------------


def view(hm: HealthMonitor, tags: list[str]) -> dict[str, Any]:
    return {
        "id": hm.id,
        "name": hm.name or "",
        "type": hm.type,
        "delay": hm.delay,
        "timeout": hm.timeout,
        "max_retries": hm.max_retries,
        "max_retries_down": hm.max_retries_down,
        "http_method": hm.http_method,
        "url_path": hm.url_path,
        "expected_codes": hm.expected_codes,
        "admin_state_up": hm.admin_state_up,
        "project_id": hm.project_id,
        "pools": [{"id": hm.pool_id}],
        "provisioning_status": hm.provisioning_status,
        "operating_status": hm.operating_status,
        "created_at": store.timestamp(hm.created_at),
        "updated_at": store.timestamp(hm.updated_at),
        "tags": tags,
        "http_version": hm.http_version,
        "domain_name": hm.domain_name,
        "tenant_id": hm.project_id,
    }


views = store.tagged_views(view)


_TEXT = words(
    "id name project_id pool_id type http_method url_path expected_codes domain_name provisioning_status "
    "operating_status"
)
_INTS = ("delay", "timeout", "max_retries", "max_retries_down")
_TIMES = ("created_at", "updated_at")
SPEC = list_spec(
    "healthmonitors",
    HealthMonitor,
    # Lenient, as Octavia's: a value that cannot match matches nothing.
    {
        as_text: _TEXT,
        lenient_int: _INTS,
        lenient_time: _TIMES,
        lenient_float: ("http_version",),
        lenient_bool: ("admin_state_up",),
    },
    aliases={  # Octavia's data-model names are filters too
        "enabled": Filter(HealthMonitor.admin_state_up, lenient_bool),
        "rise_threshold": Filter(HealthMonitor.max_retries, lenient_int),
        "fall_threshold": Filter(HealthMonitor.max_retries_down, lenient_int),
    },
    unsortable=("enabled", "rise_threshold", "fall_threshold"),
    comma_separated_fields=False,  # as Octavia: ``fields=a,b`` names one field "a,b"
)


# --- handlers ----------------------------------------------------------------------------------


COLLECTION = store.ProjectCollection(HealthMonitor, LABEL, "healthmonitor", SPEC, views)


async def create(app: App, call: Call) -> Reply:
    refuse_query_args(call.query)
    values = BODY.parse_create(call.body)
    async with app.change() as session:
        pool = await store.load_visible(session, call, Pool, values.get("pool_id"), "Pool", Rule.WRITE)
        lb = await store.get_known(session, LoadBalancer, pool.load_balancer_id)
        check_pool_type(pool.protocol, values.get("type"), values.get("delay"))
        await store.reserve_quota(app, session, lb.project_id, {"health_monitor": 1})
        await store.lock_pool(session, pool)
        hm = await insert(app, call, session, lb, pool, values)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_HEALTH_MONITOR, Op.OPERATION_CREATE, hm.id, lb.id)
        return await store.view_reply(session, 201, "healthmonitor", hm, views)


async def update_(app: App, call: Call) -> Reply:
    refuse_query_args(call.query)
    values = BODY.parse_update(call.body)
    async with app.change() as session:
        hm = await store.load_visible(session, call, HealthMonitor, call.id, LABEL, Rule.WRITE)
        pool = await store.get_known(session, Pool, hm.pool_id)
        lb = await store.get_known(session, LoadBalancer, pool.load_balancer_id)
        check_update(hm, values)
        if pool.protocol in ("UDP", "SCTP"):
            check_pool_type(pool.protocol, hm.type, values.get("delay"))
        await store.lock_pool(session, pool)
        tags = values.pop("tags", None)
        for key, value in values.items():
            if key == "admin_state_up" and value is None:
                value = False  # Octavia stores the null and shows it as false
            setattr(hm, key, value)
        if tags is not None:  # a null tag list leaves the tags alone, as in Octavia
            await store.set_tags(session, hm.id, tags)
        hm.provisioning_status = store.PENDING_UPDATE
        hm.updated_at = utcnow()
        store.command(session, lb.provider, Kind.RESOURCE_KIND_HEALTH_MONITOR, Op.OPERATION_UPDATE, hm.id, lb.id)
        return await store.view_reply(session, 200, "healthmonitor", hm, views)


async def delete_(app: App, call: Call) -> Reply:
    refuse_query_args(call.query)
    async with app.change() as session:
        hm = await store.load_visible(session, call, HealthMonitor, call.id, LABEL, Rule.WRITE)
        pool = await store.get_known(session, Pool, hm.pool_id)
        lb = await store.get_known(session, LoadBalancer, pool.load_balancer_id)
        await store.lock_pool(session, pool)
        hm.provisioning_status = store.PENDING_DELETE
        hm.updated_at = utcnow()
        store.command(session, lb.provider, Kind.RESOURCE_KIND_HEALTH_MONITOR, Op.OPERATION_DELETE, hm.id, lb.id)
    return Reply(204)


HANDLERS: dict[str, Callable[[App, Call], Awaitable[Reply]]] = {
    "ListHealthMonitors": COLLECTION.list_,
    "CreateHealthMonitor": create,
    "GetHealthMonitor": COLLECTION.get,
    "UpdateHealthMonitor": update_,
    "DeleteHealthMonitor": delete_,
}
