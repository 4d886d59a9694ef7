"""Octavia 19's default policy, rule by rule and role by role (``octavia/policies/``, oslo.policy 4.4+ defaults).

The rules are a pure function of the caller's project and roles and the target's project; the edge-to-API paths
that apply them (403 against 404, lists, creates under a parent) are in ``test_rbac.py``.
"""

from __future__ import annotations

import pytest

from octavia_mesh.api.errors import Forbidden, Unauthorized
from octavia_mesh.api.policy import AuthStrategy, Caller, Rule, caller_from_metadata

OWN, OTHER = "p-own", "p-other"
R = Rule

# rule -> (roles, allowed on the caller's own project, allowed on another project's)
MATRIX: list[tuple[tuple[str, ...], dict[Rule, tuple[bool, bool]]]] = [
    (
        ("admin",),
        {r: (True, True) for r in Rule},
    ),
    (
        ("member",),
        {
            R.READ: (True, False),
            R.READ_GLOBAL: (False, False),
            R.WRITE: (True, False),
            R.ADMIN: (False, False),
            R.READ_QUOTA: (True, False),
            R.READ_QUOTA_GLOBAL: (False, False),
            R.WRITE_QUOTA: (False, False),
        },
    ),
    (
        ("reader",),
        {
            R.READ: (True, False),
            R.READ_GLOBAL: (False, False),
            R.WRITE: (False, False),
            R.ADMIN: (False, False),
            R.READ_QUOTA: (True, False),
            R.READ_QUOTA_GLOBAL: (False, False),
            R.WRITE_QUOTA: (False, False),
        },
    ),
    ((), {r: (False, False) for r in Rule}),
    (("service",), {r: (False, False) for r in Rule}),  # Octavia's ``service`` rule guards no API call
]

# Every legacy role, with new defaults enforced (Octavia 19 as shipped), grants nothing.
LEGACY = (
    "load-balancer_admin",
    "load-balancer_global_observer",
    "load-balancer_quota_admin",
    "load-balancer_member",
    "load-balancer_observer",
)
MATRIX += [((role,), {r: (False, False) for r in Rule}) for role in LEGACY]

# With deprecated rules on (enforce_new_defaults = False) each is ORed into its successor.
LEGACY_ON: list[tuple[tuple[str, ...], dict[Rule, tuple[bool, bool]]]] = [
    (("load-balancer_admin",), {r: (True, True) for r in Rule}),
    (
        ("load-balancer_global_observer",),
        {
            R.READ: (True, True),
            R.READ_GLOBAL: (True, True),
            R.WRITE: (False, False),
            R.ADMIN: (False, False),
            R.READ_QUOTA: (True, True),
            R.READ_QUOTA_GLOBAL: (True, True),
            R.WRITE_QUOTA: (False, False),
        },
    ),
    (
        ("load-balancer_quota_admin",),
        {
            R.READ: (False, False),
            R.READ_GLOBAL: (False, False),
            R.WRITE: (False, False),
            R.ADMIN: (False, False),
            R.READ_QUOTA: (True, True),
            R.READ_QUOTA_GLOBAL: (True, True),
            R.WRITE_QUOTA: (True, True),
        },
    ),
    (
        ("load-balancer_member",),
        {
            R.READ: (True, False),
            R.READ_GLOBAL: (False, False),
            R.WRITE: (True, False),
            R.ADMIN: (False, False),
            R.READ_QUOTA: (True, False),
            R.READ_QUOTA_GLOBAL: (False, False),
            R.WRITE_QUOTA: (False, False),
        },
    ),
    (
        ("load-balancer_observer",),
        {
            R.READ: (True, False),
            R.READ_GLOBAL: (False, False),
            R.WRITE: (False, False),
            R.ADMIN: (False, False),
            R.READ_QUOTA: (True, False),
            R.READ_QUOTA_GLOBAL: (False, False),
            R.WRITE_QUOTA: (False, False),
        },
    ),
]


def _cases(matrix: list[tuple[tuple[str, ...], dict[Rule, tuple[bool, bool]]]]) -> list[object]:
    return [
        pytest.param(roles, rule, own, other, id=f"{'+'.join(roles) or 'no-role'}-{rule.value}")
        for roles, rules in matrix
        for rule, (own, other) in rules.items()
    ]


@pytest.mark.parametrize(("roles", "rule", "own", "other"), _cases(MATRIX))
def test_default_policy(roles: tuple[str, ...], rule: Rule, own: bool, other: bool) -> None:
    caller = Caller(project_id=OWN, roles=frozenset(roles))
    assert caller.allowed(rule, OWN) is own
    assert caller.allowed(rule, None) is own  # no target: the caller's own project, as Octavia's flavors
    assert caller.allowed(rule, OTHER) is other


@pytest.mark.parametrize(("roles", "rule", "own", "other"), _cases(LEGACY_ON))
def test_legacy_roles_when_switched_on(roles: tuple[str, ...], rule: Rule, own: bool, other: bool) -> None:
    caller = Caller(project_id=OWN, roles=frozenset(roles), legacy_roles=True)
    assert caller.allowed(rule, OWN) is own
    assert caller.allowed(rule, OTHER) is other


def test_noauth_is_admin_everywhere() -> None:
    caller = caller_from_metadata(AuthStrategy.NOAUTH, {})
    assert all(caller.allowed(rule, OTHER) for rule in Rule)


def test_caller_without_project() -> None:
    """A token scoped to no project: a member owns nothing; an admin stays admin (role:admin has no owner)."""
    member = caller_from_metadata(AuthStrategy.TRUSTED_HEADERS, {"x-roles": "member,reader", "x-user-id": "u"})
    assert member.project_id is None
    assert not any(member.allowed(rule) for rule in Rule)
    with pytest.raises(Forbidden):
        member.list_project(None)
    admin = caller_from_metadata(AuthStrategy.TRUSTED_HEADERS, {"x-roles": "admin", "x-user-id": "u"})
    assert admin.list_project(None) is None and admin.allowed(Rule.WRITE, OTHER)
    with pytest.raises(Unauthorized):
        caller_from_metadata(AuthStrategy.TRUSTED_HEADERS, {})


def test_list_scope() -> None:
    """Octavia's ``_auth_get_all``: global readers list everything or the project asked for; others only their
    own project, and asking for another one is a 403."""
    member = Caller(project_id=OWN, roles=frozenset({"member"}))
    assert member.list_project(None) == OWN
    assert member.list_project(OWN) == OWN
    with pytest.raises(Forbidden):
        member.list_project(OTHER)
    with pytest.raises(Forbidden):
        Caller(project_id=OWN, roles=frozenset()).list_project(None)
    admin = Caller(project_id=OWN, roles=frozenset({"admin"}))
    assert admin.list_project(None) is None and admin.list_project(OTHER) is None
    quota_admin = Caller(project_id=OWN, roles=frozenset({"load-balancer_quota_admin"}), legacy_roles=True)
    assert quota_admin.list_project(None, global_rule=Rule.READ_QUOTA_GLOBAL, rule=Rule.READ_QUOTA) is None
    with pytest.raises(Forbidden):
        quota_admin.list_project(None)


def test_system_scope_passes_no_rule() -> None:
    """Octavia 19's rules are project-scoped and scope is enforced: a system-scoped admin gets nothing."""
    caller = caller_from_metadata(
        AuthStrategy.TRUSTED_HEADERS, {"x-roles": "admin", "x-user-id": "u", "openstack-system-scope": "all"}
    )
    assert not any(caller.allowed(rule, OTHER) or caller.allowed(rule) for rule in Rule)
