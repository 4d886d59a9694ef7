"""L7 rules: ``/v2/lbaas/l7policies/{l7policy_id}/rules``.

Besides the handlers, this module holds what L7 policies reuse: the rule
bodies (a policy embeds its rules) and :func:`check_rule`, Octavia's
``l7rule_data`` validation plus the checks that keep rule keys and values out
of HAProxy's syntax (Octavia lets quotes, ``#``, tabs inside quoted header
values and a trailing newline through; any of them would split or comment out
an ACL line).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import schema as s
from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict, Immutable, InvalidInput, NotFound
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import (
    Filter,
    as_text,
    lenient_time,
    list_query,
    list_spec,
    page_reply,
    select_fields,
    show_fields,
    strict_bool,
    words,
)
from octavia_mesh.common import haproxy_values
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import L7Policy, L7Rule, Listener, LoadBalancer, utcnow

# --- rule validation --------------------------------------------------------

#: Both enums in the order real Octavia 19.0.0 prints them in its 400s.
TYPES = tuple("PATH HOST_NAME COOKIE FILE_TYPE SSL_VERIFY_RESULT SSL_CONN_HAS_CERT HEADER SSL_DN_FIELD".split())
COMPARE_TYPES = ("EQUAL_TO", "ENDS_WITH", "CONTAINS", "STARTS_WITH", "REGEX")
KEYLESS_TYPES = ("HOST_NAME", "PATH", "FILE_TYPE")  # an update to one of these clears the key, as Octavia does
MAX_RULES_PER_POLICY = 50  # octavia.common.constants: HAProxy failed to parse more than 53

# octavia.common.constants. HEADER_NAME's "+-." is a character range in Octavia, so it also admits ','.
_HEADER_NAME = re.compile(r"\A[a-zA-Z0-9!#$%&'*+-.^_`|~]+\Z")
_COOKIE_VALUE = re.compile(r"\A[a-zA-Z0-9!#$%&'()*+-./:<=>?@[\]^_`{|}~]+\Z")
_HEADER_VALUE = re.compile(r"\A[a-zA-Z0-9!\"#$%&'()*+,-./:;<=>?@[\]^_`{|}~\\]+\Z")
_QUOTED_HEADER_VALUE = re.compile(r"\A\"[a-zA-Z0-9 \t!\"#$%&'()*+,-./:;<=>?@[\]^_`{|}~\\]*\"\Z")
_DN_FIELD = re.compile(r"\A[a-zA-Z][A-Za-z0-9-]*\Z")  # Octavia's ends in '$', which lets "CN\n" through
_COMPARISONS = ("STARTS_WITH", "ENDS_WITH", "CONTAINS", "EQUAL_TO")

# Ours, stricter than Octavia: what may reach an HAProxy ACL line unquoted. A key sits inside
# req.hdr(...)/req.cook(...): no quote (opens a string), ',' (next argument) or '#' (comment).
# A value must not contain white space (a second pattern), quotes, '#' or a line break, nor end
# in a backslash (it would escape the line's end).
_SAFE_KEY = re.compile(r"\A[a-zA-Z0-9!$%&*+\-.^_`|~]+\Z")
_UNSAFE_VALUE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\"'#]|\\\Z")


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(f"Error parsing L7Rule: {message}")


def _regex(value: str) -> None:
    """Octavia compiles with Python's ``re``; the amphora's HAProxy with PCRE, which refuses some of what
    Python takes (``\\u0061``, ``\\N{BULLET}``, ``(?a)``): the shared rule checks both."""
    if haproxy_values.CONTROL.search(value):
        return  # refused by check_rule's last check, worded as for every other value
    try:
        haproxy_values.pcre_regex(value)
    except haproxy_values.ValueRefused as exc:
        raise _invalid(exc.reason) from None


def _ssl_rule(rule_type: str, compare_type: Any, key: Any, value: str) -> None:
    """Octavia's ``validate_l7rule_ssl_types``."""
    message = None
    if rule_type in ("SSL_CONN_HAS_CERT", "SSL_VERIFY_RESULT"):
        if key:
            message = f'L7rule type {rule_type} does not use the "key" field.'
        elif rule_type == "SSL_CONN_HAS_CERT" and value.lower() != "true":
            message = f"L7rule value {value} is not a boolean True string."
        elif rule_type == "SSL_VERIFY_RESULT" and not _non_negative(value):
            message = f"L7rule type {rule_type} needs a int value, which is >= 0"
        elif compare_type != "EQUAL_TO":
            message = f"L7rule type {rule_type} only supports the EQUAL_TO compare type."
    else:  # SSL_DN_FIELD
        if compare_type == "REGEX":
            _regex(value)
        if not key:
            message = f"L7rule type {rule_type} needs to specify a key and a value."
        elif not _DN_FIELD.match(key):
            message = "Invalid L7rule distinguished name field."
    if message:
        raise _invalid(f"Invalid L7 Rule: {message}")


def _non_negative(value: str) -> bool:
    if not value.isdigit():
        return False
    try:
        return int(value) >= 0
    except ValueError as exc:  # str.isdigit() admits '²', which int() refuses
        raise _invalid(str(exc)) from None


def check_rule(rule: Mapping[str, Any], embedded: bool = False) -> None:
    """Octavia's ``l7rule_data`` on a whole rule (type, compare_type, key, value), then our HAProxy safety checks.

    ``embedded`` rules (inside a policy body) get the single-line checks here, worded as Octavia words them there.
    """
    rule_type, compare_type, key, value = (rule.get(k) for k in ("type", "compare_type", "key", "value"))
    if embedded:
        for name in ("key", "value"):
            if isinstance(rule.get(name), str) and ("\r" in rule[name] or "\n" in rule[name]):
                raise _invalid(
                    f"Invalid input for field/attribute {name}. Value: '{rule[name]}'. "
                    r"Value should match the pattern ^[^\r\n]*$"
                )
    if not value:
        raise _invalid("Invalid L7 Rule: L7 rule type requires a value")
    what = "comparison value"
    if rule_type in ("HEADER", "COOKIE"):
        what = "header value" if rule_type == "HEADER" else "cookie value"
        if not key:
            raise _invalid("Invalid L7 Rule: L7 rule type requires a key")
        if not _HEADER_NAME.match(key):
            raise _invalid("Invalid characters in key")
        if compare_type == "REGEX":
            _regex(value)
        elif compare_type in _COMPARISONS:
            ok = (
                (_HEADER_VALUE.match(value) or _QUOTED_HEADER_VALUE.match(value))
                if rule_type == "HEADER"
                else _COOKIE_VALUE.match(value)
            )
            if not ok:
                raise _invalid(f"Invalid characters in {what}")
        else:
            raise _invalid("Invalid L7 Rule: invalid comparison type for rule type")
    elif rule_type in ("HOST_NAME", "PATH", "FILE_TYPE"):
        allowed = _COMPARISONS if rule_type != "FILE_TYPE" else ("EQUAL_TO",)
        if compare_type == "REGEX":
            _regex(value)
        elif compare_type in allowed:
            if not _HEADER_VALUE.match(value):
                raise _invalid(f"Invalid characters in {what}")
        else:
            raise _invalid("Invalid L7 Rule: invalid comparison type for rule type")
    elif rule_type in ("SSL_CONN_HAS_CERT", "SSL_VERIFY_RESULT", "SSL_DN_FIELD"):
        _ssl_rule(rule_type, compare_type, key, value)
    else:
        raise _invalid("Invalid L7 Rule: invalid rule type")
    # Beyond Octavia: nothing that could break out of the ACL line.
    if key and not _SAFE_KEY.match(key):
        raise _invalid("Invalid characters in key")
    if _UNSAFE_VALUE.search(value):
        raise _invalid(f"Invalid characters in {what}")


def _attrs(*, single_line: bool) -> dict[str, s.Attr]:
    """L7RulePOST / L7RuleSingleCreate in their declaration order (the PUT type drops ``project_id``)."""
    out = {
        "type": s.Attr(s.enum(*TYPES), required=True),
        "compare_type": s.Attr(s.enum(*COMPARE_TYPES), required=True),
        "key": s.Attr(s.text(255, single_line=single_line)),
        "value": s.Attr(s.text(255, single_line=single_line), required=True),
        "invert": s.Attr(s.boolean, default=False),
        "admin_state_up": s.Attr(s.boolean, default=True),
    }
    if single_line:  # a rule of its own, not one embedded in a policy
        out["project_id"] = s.Attr(s.text(36))
    out["tags"] = s.Attr(s.tag_list)
    return out


CREATE = s.Schema("rule", "rule_", _attrs(single_line=True))
UPDATE = CREATE.derive(argument="l7rule_", drop=("project_id",))
#: Rules embedded in a policy (``rules`` of POST /l7policies, and of a single-call tree).
EMBEDDED = s.Schema("rules", "l7policy_.l7policy", _attrs(single_line=False))


def parse_rules(_name: str, value: Any) -> list[dict[str, Any]]:
    """The ``rules`` of a policy body (a check for :class:`s.Attr`)."""
    if not isinstance(value, list):
        raise s.BodyLevelError(f"Value not a valid list: {value}")
    return [EMBEDDED.parse_embedded(item) for item in value]


def clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """Stored form of a parsed rule: WSME's nulls as Octavia stores them."""
    out = dict(values)
    out["invert"] = bool(out.get("invert"))
    if "admin_state_up" in out and out["admin_state_up"] is None:
        out["admin_state_up"] = False
    return out


def new_row(policy: L7Policy, values: Mapping[str, Any]) -> L7Rule:
    """A PENDING_CREATE rule of ``policy`` (validated by the caller; tags are set after a flush)."""
    return store.fresh(
        L7Rule,
        id=str(uuid.uuid4()),
        project_id=policy.project_id,
        l7policy_id=policy.id,
        type=values["type"],
        compare_type=values["compare_type"],
        key=values.get("key"),
        value=values["value"],
        invert=bool(values.get("invert")),
        admin_state_up=values.get("admin_state_up") is not False,
    )


# --- views and lists ----------------------------------------------------------


def view(rule: L7Rule, tags: list[str]) -> dict[str, Any]:
    return {
        "id": rule.id,
        "type": rule.type,
        "compare_type": rule.compare_type,
        "key": rule.key,
        "value": rule.value,
        "invert": rule.invert,
        "provisioning_status": rule.provisioning_status,
        "operating_status": rule.operating_status,
        "created_at": store.timestamp(rule.created_at),
        "updated_at": store.timestamp(rule.updated_at),
        "project_id": rule.project_id,
        "admin_state_up": rule.admin_state_up,
        "tags": tags,
        "tenant_id": rule.project_id,
    }


views = store.tagged_views(view)


#: Compared as times (text would fail on PostgreSQL); a value that is no time matches nothing, as in Octavia.
_TIMES = ("created_at", "updated_at")
_COLUMNS = words("id type compare_type key value project_id provisioning_status operating_status")
SPEC = list_spec(
    "rules",
    L7Rule,
    {as_text: _COLUMNS, strict_bool: ("invert", "admin_state_up"), lenient_time: _TIMES},
    # l7policy_id: an attribute of Octavia's rule, so a filter there (openstacksdk sends it on every rules list).
    aliases={"tenant_id": Filter(L7Rule.project_id), "l7policy_id": Filter(L7Rule.l7policy_id)},
    unsortable=("tenant_id",),
)


# --- shared steps -------------------------------------------------------------


async def load_policy(session: AsyncSession, call: Call, rule: Rule = Rule.READ) -> L7Policy:
    """The policy named in the path, if the caller may see it (Octavia's lookup names it ``L7Policy``)."""
    return await store.load_visible(session, call, L7Policy, call.parent_id, "L7Policy", rule)


async def parents(session: AsyncSession, policy: L7Policy) -> tuple[Listener, LoadBalancer]:
    listener = await store.get_or_404(session, Listener, policy.listener_id, "Listener")
    lb = await store.get_or_404(session, LoadBalancer, listener.load_balancer_id, "Load Balancer")
    return listener, lb


async def _load_rule(session: AsyncSession, call: Call, policy: L7Policy) -> L7Rule:
    rule = await session.get(L7Rule, call.id) if call.id else None
    if rule is None or rule.l7policy_id != policy.id:  # Octavia would show another policy's rule here; we do not
        raise NotFound("L7 Rule", call.id)
    return rule


async def _lock(session: AsyncSession, policy: L7Policy, lb: LoadBalancer) -> None:
    """Octavia's order: the policy must be ACTIVE, then the load balancer lock is taken."""
    if policy.provisioning_status not in store.CHANGEABLE:
        raise Immutable("L7Policy", policy.id)
    await store.lock_load_balancer(session, lb.id)
    await store.reload(session, policy, "L7Policy")
    if policy.provisioning_status not in store.CHANGEABLE:  # changed between our read and the lock
        raise Immutable("L7Policy", policy.id)


async def _rule_count(session: AsyncSession, policy_id: str) -> int:
    query = select(func.count()).select_from(L7Rule).where(L7Rule.l7policy_id == policy_id)
    return (await session.execute(query)).scalar_one()


# --- handlers -----------------------------------------------------------------


async def list_(app: App, call: Call) -> Reply:
    async with app.read() as session:
        policy = await load_policy(session, call)
        statement = select(L7Rule).where(L7Rule.l7policy_id == policy.id)
        return await page_reply(session, call, list_query(app, call, SPEC), statement, views)


async def get(app: App, call: Call) -> Reply:
    fields = show_fields(call.query)
    async with app.read() as session:
        policy = await load_policy(session, call)
        (item,) = await views(session, [await _load_rule(session, call, policy)])
    return Reply(200, {"rule": select_fields(item, fields)})


async def create(app: App, call: Call) -> Reply:
    values = clean(CREATE.parse_create(call.body))
    values.pop("project_id", None)  # deprecated; the rule takes its load balancer's project
    tags = values.pop("tags", None) or []
    async with app.change() as session:
        policy = await load_policy(session, call, Rule.WRITE)
        listener, lb = await parents(session, policy)
        check_rule(values)
        if await _rule_count(session, policy.id) >= MAX_RULES_PER_POLICY:
            raise Conflict(f"Too many rules on L7 policy {policy.id}")
        await store.reserve_quota(app, session, policy.project_id, {"l7rule": 1})
        await _lock(session, policy, lb)
        if await _rule_count(session, policy.id) >= MAX_RULES_PER_POLICY:  # again, now that nothing else can change
            raise Conflict(f"Too many rules on L7 policy {policy.id}")
        await store.reload(session, listener, "Listener")
        store.mark_pending_update(utcnow(), listener, policy)
        rule = new_row(policy, values)
        session.add(rule)
        await session.flush()
        await store.set_tags(session, rule.id, tags)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_L7_RULE, Op.OPERATION_CREATE, rule.id, lb.id)
        return await store.view_reply(session, 201, "rule", rule, views)


async def update_(app: App, call: Call) -> Reply:
    values = UPDATE.parse_update(call.body)
    async with app.change() as session:
        policy = await load_policy(session, call, Rule.WRITE)
        rule = await _load_rule(session, call, policy)
        listener, lb = await parents(session, policy)
        merged = _merge(rule, values)
        check_rule(merged)
        await _lock(session, policy, lb)
        await store.reload(session, rule, "L7 Rule")
        await store.reload(session, listener, "Listener")
        for key in ("type", "compare_type", "key", "value", "invert", "admin_state_up"):
            setattr(rule, key, merged[key])
        if "tags" in values:
            await store.set_tags(session, rule.id, values["tags"] or [])
        now = utcnow()
        store.mark_pending_update(now, listener, policy, rule)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_L7_RULE, Op.OPERATION_UPDATE, rule.id, lb.id)
        return await store.view_reply(session, 200, "rule", rule, views)


def _merge(rule: L7Rule, values: Mapping[str, Any]) -> dict[str, Any]:
    """The rule as the update leaves it: Octavia validates the whole rule, with its null handling."""
    merged = {k: getattr(rule, k) for k in ("type", "compare_type", "key", "value", "invert", "admin_state_up")}
    merged.update({k: v for k, v in values.items() if k != "tags"})
    merged["invert"] = bool(merged["invert"])  # an explicit null means False
    merged["admin_state_up"] = bool(merged["admin_state_up"])  # WSME turns null into False
    if merged["type"] in KEYLESS_TYPES:
        merged["key"] = None
    return merged


async def delete_(app: App, call: Call) -> Reply:
    async with app.change() as session:
        policy = await load_policy(session, call, Rule.WRITE)
        rule = await _load_rule(session, call, policy)
        listener, lb = await parents(session, policy)
        await _lock(session, policy, lb)
        await store.reload(session, rule, "L7 Rule")
        await store.reload(session, listener, "Listener")
        now = utcnow()
        store.mark_pending_update(now, listener, policy)
        rule.provisioning_status = store.PENDING_DELETE
        rule.updated_at = now
        store.command(session, lb.provider, Kind.RESOURCE_KIND_L7_RULE, Op.OPERATION_DELETE, rule.id, lb.id)
    return Reply(204)


def embedded_rows(policy: L7Policy, rules: Iterable[Mapping[str, Any]]) -> list[tuple[L7Rule, list[str]]]:
    """Rows (and tags) of the rules embedded in a new policy, validated beforehand with :func:`check_rule`."""
    return [(new_row(policy, clean(r)), list(r.get("tags") or [])) for r in rules]


HANDLERS = {
    "ListL7Rules": list_,
    "CreateL7Rule": create,
    "GetL7Rule": get,
    "UpdateL7Rule": update_,
    "DeleteL7Rule": delete_,
}
