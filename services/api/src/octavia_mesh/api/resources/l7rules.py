"""L7 rules: ``/v2/lbaas/l7policies/{l7policy_id}/rules``.

Besides the handlers, this module holds what L7 policies reuse: the WSME-style
body parser (:class:`Body`, whose messages match real Octavia's where the
shared schema's differ) and :func:`check_rule`, Octavia's ``l7rule_data``
validation plus the checks that keep rule keys and values out of HAProxy's
syntax (Octavia lets quotes, ``#``, tabs inside quoted header values and a
trailing newline through; any of them would split or comment out an ACL line).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from octavia_mesh.api import store
from octavia_mesh.api.app import App, Call, Reply
from octavia_mesh.api.errors import Conflict, Immutable, InvalidField, InvalidInput, NotFound
from octavia_mesh.api.policy import Rule
from octavia_mesh.api.query import Filter, ListQuery, ListSpec, bool_filter, parse_query, select_fields
from octavia_mesh.api.schema import load_json
from octavia_mesh.common.commands import Kind, Op
from octavia_mesh.common.db.models import L7Policy, L7Rule, Listener, LoadBalancer, utcnow

# --- WSME-style request bodies ---------------------------------------------

MISSING: Any = object()
Check = Callable[[str, Any], Any]


class BodyLevel(InvalidInput):
    """A conversion error WSME reports against the whole body (``Value: '<body>'``); :class:`Body` words it."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Field:
    check: Check
    default: Any = MISSING
    mandatory: bool = False


@dataclass(frozen=True, slots=True)
class Body:
    """``{wrapper: {...}}`` parsed as WSME does: declaration order, its messages, mandatory fields as ``'None'``."""

    wrapper: str
    argument: str  # the controller's parameter name, as WSME prints it: "rule_", "l7policy_"
    fields: Mapping[str, Field]

    def parse_create(self, raw: bytes) -> dict[str, Any]:
        return self._parse(raw, create=True)

    def parse_update(self, raw: bytes) -> dict[str, Any]:
        return self._parse(raw, create=False)

    def parse_embedded(self, obj: Any, path: str) -> dict[str, Any]:
        """An object inside another body (``rules`` of a policy); ``path`` names it in messages."""
        if not isinstance(obj, dict):
            raise InvalidField(path.rsplit(".", 1)[-1], obj, "Value should be an object")
        return self._values(obj, path, create=True)

    def _parse(self, raw: bytes, create: bool) -> dict[str, Any]:
        document = load_json(raw)
        if document is None:
            raise InvalidInput(f'Missing argument: "{self.argument}"')
        if not isinstance(document, dict):
            raise InvalidInput(f"Invalid input for argument {self.argument}")
        unknown = [k for k in document if k != self.wrapper]
        if unknown:
            raise InvalidInput(f"Unknown attribute for argument {self.argument}: {', '.join(unknown)}")
        if self.wrapper not in document:
            raise InvalidInput(f'Missing argument: "{self.argument}"')
        inner = document[self.wrapper]
        if not isinstance(inner, dict):
            raise InvalidInput(f"Invalid input for argument {self.argument}.{self.wrapper}")
        try:
            return self._values(inner, f"{self.argument}.{self.wrapper}", create)
        except BodyLevel as exc:
            raise InvalidInput(
                f"Invalid input for field/attribute {self.argument}. Value: '{document}'. {exc.detail}"
            ) from None

    def _values(self, obj: dict[str, Any], path: str, create: bool) -> dict[str, Any]:
        unknown = [k for k in obj if k not in self.fields]
        if unknown:
            raise InvalidInput(f"Unknown attribute for argument {path}: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, spec in self.fields.items():  # declaration order decides which error comes first
            if name in obj:
                values[name] = None if obj[name] is None else spec.check(name, obj[name])
            elif create and spec.mandatory:
                raise InvalidField(name, None, "Mandatory field missing.")
            elif create and spec.default is not MISSING:
                values[name] = spec.default
        return values


def text(max_length: int = 255, single_line: bool = False) -> Check:
    """WSME ``StringType``; ``single_line``: Octavia's no-CR/LF pattern, without its trailing-newline gap."""

    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidField(name, value, "Value should be string")
        if len(value) > max_length:
            raise InvalidField(name, value, f"Value should have a maximum character requirement of {max_length}")
        if single_line:
            no_newline(name, value)
        return value

    return check


def no_newline(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise InvalidField(name, value, r"Value should match the pattern ^[^\r\n]*$")
    return value


def choice(*choices: str) -> Check:
    """WSME ``Enum(str)``; ``choices`` in the order real Octavia prints them."""

    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise InvalidField(name, value, f"Value should be one of: {', '.join(choices)}")
        return value

    return check


def as_int(value: Any) -> int:
    """WSME's ``int(value)`` conversion: numeric strings, floats and booleans pass; the rest is a body-level error."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BodyLevel(str(exc)) from None


def integer(minimum: int, maximum: int) -> Check:
    def check(name: str, value: Any) -> int:
        number = as_int(value)
        if number < minimum:
            raise InvalidField(name, number, f"Value should be greater or equal to {minimum}")
        if number > maximum:
            raise InvalidField(name, number, f"Value should be lower or equal to {maximum}")
        return number

    return check


def int_choice(*choices: int) -> Check:
    def check(name: str, value: Any) -> int:
        number = as_int(value)
        if number not in choices:
            raise InvalidField(name, number, f"Value should be one of: {', '.join(map(str, choices))}")
        return number

    return check


_TRUE = ("true", "t", "yes", "y", "on", "1")
_FALSE = ("false", "f", "no", "n", "off", "0")


def boolean(_name: str, value: Any) -> bool:
    """WSME's bool: JSON booleans and integers, or the exact strings it lists."""
    if isinstance(value, bool | int):
        return bool(value)
    if isinstance(value, str) and value in _TRUE:
        return True
    if isinstance(value, str) and value in _FALSE:
        return False
    raise BodyLevel(f"Value not an unambiguous boolean: {value}")


def uuid_value(name: str, value: Any) -> str:
    try:
        if isinstance(value, bool | dict | list):
            raise ValueError
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidField(name, value, "Value should be UUID format") from None


def tag_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise BodyLevel(f"Value not a valid list: {value}")
    for item in value:
        if not isinstance(item, str):
            raise InvalidField(name, value, "Value should be string")
        if len(item) > 255:
            raise InvalidField(name, value, "Value should have a maximum character requirement of 255")
    return value


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
    try:
        re.compile(value)
    except Exception as exc:  # re.error, or RecursionError on pathological input
        raise _invalid(f"Unable to parse regular expression: {exc}") from None


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


def _fields(create: bool, single_line: bool) -> dict[str, Field]:
    """L7RulePOST / L7RulePUT / L7RuleSingleCreate, in their declaration order."""
    out = {
        "type": Field(choice(*TYPES), mandatory=create),
        "compare_type": Field(choice(*COMPARE_TYPES), mandatory=create),
        "key": Field(text(255, single_line)),
        "value": Field(text(255, single_line), mandatory=create),
        "invert": Field(boolean, default=False),
        "admin_state_up": Field(boolean, default=True),
    }
    if create and single_line:
        out["project_id"] = Field(text(36))
    out["tags"] = Field(tag_list)
    return out


CREATE = Body("rule", "rule_", _fields(create=True, single_line=True))
UPDATE = Body("rule", "l7rule_", _fields(create=False, single_line=True))
#: Rules embedded in a policy (``rules`` of POST /l7policies, and of a single-call tree).
EMBEDDED = Body("rules", "l7policy_.l7policy", _fields(create=True, single_line=False))


def parse_rules(_name: str, value: Any) -> list[dict[str, Any]]:
    """The ``rules`` of a policy body (a check for :class:`Field`)."""
    if not isinstance(value, list):
        raise BodyLevel(f"Value not a valid list: {value}")
    return [EMBEDDED.parse_embedded(item, "l7policy_.l7policy.rules") for item in value]


def clean(values: dict[str, Any]) -> dict[str, Any]:
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


async def views(session: AsyncSession, rules: list[L7Rule]) -> list[dict[str, Any]]:
    tags = await store.tags_of(session, [r.id for r in rules])
    return [view(r, tags.get(r.id, [])) for r in rules]


_COLUMNS = tuple(
    "id type compare_type key value project_id provisioning_status operating_status created_at updated_at".split()
)
SPEC = ListSpec(
    collection="rules",
    id_column=L7Rule.id,
    created_column=L7Rule.created_at,
    filters={
        **{name: Filter(getattr(L7Rule, name)) for name in _COLUMNS},
        "tenant_id": Filter(L7Rule.project_id),
        "invert": bool_filter(L7Rule.invert),
        "admin_state_up": bool_filter(L7Rule.admin_state_up),
    },
    sort_keys={name: getattr(L7Rule, name) for name in (*_COLUMNS, "invert", "admin_state_up")},
)


# --- shared steps -------------------------------------------------------------


async def load_policy(session: AsyncSession, call: Call, rule: Rule = Rule.READ) -> L7Policy:
    """The policy named in the path, if the caller may see it (Octavia's lookup names it ``L7Policy``)."""
    policy = await session.get(L7Policy, call.parent_id) if call.parent_id else None
    if policy is None or not call.caller.allowed(Rule.READ, policy.project_id):
        raise NotFound("L7Policy", call.parent_id)
    call.caller.check(rule, policy.project_id)
    return policy


async def parents(session: AsyncSession, policy: L7Policy) -> tuple[Listener, LoadBalancer]:
    listener = await store.get_or_404(session, Listener, policy.listener_id, "Listener")
    lb = await store.get_or_404(session, LoadBalancer, listener.load_balancer_id, "Load Balancer")
    return listener, lb


async def reload(session: AsyncSession, row: Any, label: str) -> None:
    """Re-read ``row`` after the load-balancer lock (a 404 if it went away in between, never a crash)."""
    if await session.get(type(row), row.id, populate_existing=True) is None:
        raise NotFound(label, row.id)


def mark_pending_update(now: Any, *rows: Any) -> None:
    """Parents of a changed object show PENDING_UPDATE until the provider is done, as in Octavia."""
    for row in rows:
        row.provisioning_status = store.PENDING_UPDATE
        row.updated_at = now


async def _load_rule(session: AsyncSession, call: Call, policy: L7Policy) -> L7Rule:
    rule = await session.get(L7Rule, call.id) if call.id else None
    if rule is None or rule.l7policy_id != policy.id:  # Octavia would show another policy's rule here; we do not
        raise NotFound("L7 Rule", call.id)
    return rule


async def _lock(session: AsyncSession, policy: L7Policy, lb: LoadBalancer) -> None:
    """Octavia's order: the policy must be ACTIVE, then the load balancer lock is taken."""
    if policy.provisioning_status != store.ACTIVE:
        raise Immutable("L7Policy", policy.id)
    await store.lock_load_balancer(session, lb.id)
    await reload(session, policy, "L7Policy")
    if policy.provisioning_status != store.ACTIVE:  # changed between our read and the lock
        raise Immutable("L7Policy", policy.id)


async def _rule_count(session: AsyncSession, policy_id: str) -> int:
    query = select(func.count()).select_from(L7Rule).where(L7Rule.l7policy_id == policy_id)
    return (await session.execute(query)).scalar_one()


def _fields_param(raw: str) -> list[str] | None:
    values = [v for item in parse_query(raw).get("fields", []) for v in item.split(",") if v]
    return values or None


# --- handlers -----------------------------------------------------------------


async def list_(app: App, call: Call) -> Reply:
    params = parse_query(call.query)
    async with app.read() as session:
        policy = await load_policy(session, call)
        listing = ListQuery(SPEC, params, app.settings.pagination_max_limit)
        page = await listing.page(session, select(L7Rule).where(L7Rule.l7policy_id == policy.id), call.base_url)
        items = await views(session, page.rows)
    return Reply(200, {"rules": [select_fields(v, page.fields) for v in items], "rules_links": page.links})


async def get(app: App, call: Call) -> Reply:
    fields = _fields_param(call.query)  # other query arguments are ignored, as Octavia does on show
    async with app.read() as session:
        policy = await load_policy(session, call)
        (item,) = await views(session, [await _load_rule(session, call, policy)])
    return Reply(200, {"rule": select_fields(item, fields)})


async def create(app: App, call: Call) -> Reply:
    values = clean(CREATE.parse_create(call.body))
    values.pop("project_id", None)  # deprecated; the rule takes its load balancer's project
    tags = values.pop("tags", None) or []
    async with app.write() as session, session.begin():
        policy = await load_policy(session, call, Rule.WRITE)
        listener, lb = await parents(session, policy)
        check_rule(values)
        if await _rule_count(session, policy.id) >= MAX_RULES_PER_POLICY:
            raise Conflict(f"Too many rules on L7 policy {policy.id}")
        await store.reserve_quota(app, session, policy.project_id, {"l7rule": 1})
        await _lock(session, policy, lb)
        if await _rule_count(session, policy.id) >= MAX_RULES_PER_POLICY:  # again, now that nothing else can change
            raise Conflict(f"Too many rules on L7 policy {policy.id}")
        await reload(session, listener, "Listener")
        mark_pending_update(utcnow(), listener, policy)
        rule = new_row(policy, values)
        session.add(rule)
        await session.flush()
        await store.set_tags(session, rule.id, tags)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_L7_RULE, Op.OPERATION_CREATE, rule.id, lb.id)
        await session.flush()
        (item,) = await views(session, [rule])
    app.commands_committed()
    return Reply(201, {"rule": item})


async def update_(app: App, call: Call) -> Reply:
    values = UPDATE.parse_update(call.body)
    async with app.write() as session, session.begin():
        policy = await load_policy(session, call, Rule.WRITE)
        rule = await _load_rule(session, call, policy)
        listener, lb = await parents(session, policy)
        merged = _merge(rule, values)
        check_rule(merged)
        if rule.provisioning_status == store.ERROR:  # an object in ERROR may only be deleted
            raise Immutable("L7Rule", rule.id)
        await _lock(session, policy, lb)
        await reload(session, rule, "L7 Rule")
        await reload(session, listener, "Listener")
        for key in ("type", "compare_type", "key", "value", "invert", "admin_state_up"):
            setattr(rule, key, merged[key])
        if "tags" in values:
            await store.set_tags(session, rule.id, values["tags"] or [])
        now = utcnow()
        mark_pending_update(now, listener, policy, rule)
        store.command(session, lb.provider, Kind.RESOURCE_KIND_L7_RULE, Op.OPERATION_UPDATE, rule.id, lb.id)
        await session.flush()
        (item,) = await views(session, [rule])
    app.commands_committed()
    return Reply(200, {"rule": item})


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
    async with app.write() as session, session.begin():
        policy = await load_policy(session, call, Rule.WRITE)
        rule = await _load_rule(session, call, policy)
        listener, lb = await parents(session, policy)
        await _lock(session, policy, lb)
        await reload(session, rule, "L7 Rule")
        await reload(session, listener, "Listener")
        now = utcnow()
        mark_pending_update(now, listener, policy)
        rule.provisioning_status = store.PENDING_DELETE
        rule.updated_at = now
        store.command(session, lb.provider, Kind.RESOURCE_KIND_L7_RULE, Op.OPERATION_DELETE, rule.id, lb.id)
    app.commands_committed()
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
