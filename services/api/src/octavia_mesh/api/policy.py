"""Who may do what: Octavia's default RBAC, kept in this one module.

The start-up mode decides who the caller is (:mod:`octavia_mesh.api.identity`):

* ``noauth`` (Octavia's ``auth_strategy = noauth``): every caller is admin, and
  the project comes from the body's ``project_id`` or ``X-Project-Id``.
* ``keystone``: a Keystone token names the project, user, scope and roles.
* ``trusted_headers``: an authenticating proxy in front of the edge (as
  keystonemiddleware does), named by a shared secret, sets ``X-Project-Id``
  and ``X-Roles``.

The rules below then decide. They are Octavia 19's defaults (``octavia/policies/``): Keystone's
``admin``, ``member`` and ``reader`` roles. Octavia's deprecated advanced-RBAC
roles ``load-balancer_{admin,member,observer,global_observer,quota_admin}``
grant nothing unless ``OCTAVIA_MESH_API_POLICY_LEGACY_ROLES`` is on (oslo.policy's
``enforce_new_defaults = False``). Where Octavia finds an object and then
refuses the caller, the answer is its 403; a missing object is its 404.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from octavia_mesh.api.errors import Forbidden, Unauthorized


class AuthStrategy(enum.StrEnum):
    NOAUTH = "noauth"
    KEYSTONE = "keystone"
    TRUSTED_HEADERS = "trusted_headers"


class Rule(enum.Enum):
    """The rule an API call is checked against: Octavia's ``load-balancer:*`` building blocks (policies/base.py)."""

    READ = "read"
    READ_GLOBAL = "read-global"
    WRITE = "write"
    ADMIN = "admin"
    READ_QUOTA = "read-quota"
    READ_QUOTA_GLOBAL = "read-quota-global"
    WRITE_QUOTA = "write-quota"


# Octavia's deprecated "advanced RBAC" roles. oslo.policy ORs a deprecated rule into its successor only while
# ``enforce_new_defaults`` is off (its default has been on since oslo.policy 4.4, so Octavia 19 refuses them).
LEGACY_ADMIN = "load-balancer_admin"
LEGACY_GLOBAL_OBSERVER = "load-balancer_global_observer"
LEGACY_QUOTA_ADMIN = "load-balancer_quota_admin"
LEGACY_MEMBER = "load-balancer_member"
LEGACY_OBSERVER = "load-balancer_observer"


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity a request carries, and Octavia 19's default policy (keystone_default_roles.py) over it.

    ``legacy_roles`` is oslo.policy's ``enforce_new_defaults = False``: the ``load-balancer_*`` roles then count
    too, each ORed into the rule it was deprecated for.
    """

    project_id: str | None
    roles: frozenset[str]
    noauth: bool = False
    user_id: str | None = None
    domain_id: str | None = None  # a domain-scoped token's domain
    system_scope: str | None = None  # "all" for a system-scoped token
    legacy_roles: bool = False

    def _has(self, role: str, legacy: str) -> bool:
        return role in self.roles or (self.legacy_roles and legacy in self.roles)

    @property
    def is_admin(self) -> bool:
        """``load-balancer:admin``: ``is_admin:True or role:admin`` (is_admin also covers noauth)."""
        return self.noauth or self._has("admin", LEGACY_ADMIN)

    @property
    def global_observer(self) -> bool:
        return self._has("admin", LEGACY_GLOBAL_OBSERVER)

    @property
    def quota_admin(self) -> bool:
        return self._has("admin", LEGACY_QUOTA_ADMIN)

    def owns(self, project_id: str | None) -> bool:
        """``project_id:%(project_id)s``; a caller with no project owns nothing."""
        return self.project_id is not None and project_id == self.project_id

    def member_and_owner(self, project_id: str | None) -> bool:
        return self.owns(project_id) and self._has("member", LEGACY_MEMBER)

    def observer_and_owner(self, project_id: str | None) -> bool:
        return self.owns(project_id) and self._has("reader", LEGACY_OBSERVER)

    @property
    def reads_everything(self) -> bool:
        """``load-balancer:read-global``: lists every project's objects."""
        return self.allowed(Rule.READ_GLOBAL)

    @property
    def reads_all_quotas(self) -> bool:
        """``load-balancer:read-quota-global``."""
        return self.allowed(Rule.READ_QUOTA_GLOBAL)

    def allowed(self, rule: Rule, project_id: str | None = None) -> bool:
        """Whether this caller passes ``rule`` on an object owned by ``project_id``.

        ``None`` targets the caller's own project, as Octavia does for calls on objects no project owns
        (flavors, providers, availability zones).
        """
        target = self.project_id if project_id is None else project_id
        if self.system_scope is not None and not self.noauth:
            # Every rule of Octavia 19 has scope_types=[project], and oslo.policy enforces scope by default
            # (4.4+): a system-scoped token passes none (Octavia lets oslo's InvalidScope out as a 500).
            return False
        if self.is_admin:
            return True
        if rule is Rule.READ:
            return self.observer_and_owner(target) or self.global_observer or self.member_and_owner(target)
        if rule is Rule.READ_GLOBAL:
            return self.global_observer
        if rule is Rule.WRITE:
            return self.member_and_owner(target)
        if rule is Rule.READ_QUOTA:
            return (
                self.observer_and_owner(target)
                or self.global_observer
                or self.member_and_owner(target)
                or self.quota_admin
            )
        if rule is Rule.READ_QUOTA_GLOBAL:
            return self.global_observer or self.quota_admin
        if rule is Rule.WRITE_QUOTA:
            return self.quota_admin
        return False  # Rule.ADMIN

    def check(self, rule: Rule, project_id: str | None = None) -> None:
        """Raise Octavia's 403 unless ``rule`` allows the call."""
        if not self.allowed(rule, project_id):
            raise Forbidden()

    def list_project(
        self, wanted: str | None, *, global_rule: Rule = Rule.READ_GLOBAL, rule: Rule = Rule.READ
    ) -> str | None:
        """Octavia's ``_auth_get_all``: the project a list must be limited to (``None``: no limit by policy).

        ``wanted`` is the list's ``project_id`` filter. A caller who may not read globally is limited to
        ``wanted`` or else their own project, and must pass ``rule`` there: another project's list is a 403,
        and so is any list for a caller with no project.
        """
        if self.allowed(global_rule):
            return None  # the list's own ``project_id`` filter, if any, applies as to any attribute
        project = wanted or self.project_id
        if project is None:
            raise Forbidden()
        self.check(rule, project)
        return project


def caller_from_metadata(
    strategy: AuthStrategy, metadata: Mapping[str, str], default_project: str = "", *, legacy_roles: bool = False
) -> Caller:
    """Build the caller from the request's headers (gRPC metadata keys are lower case).

    Only for ``noauth`` and for ``trusted_headers`` once the proxy is known to have sent them
    (keystonemiddleware's names: ``X-Project-Id``, ``X-Roles``, ``X-User-Id``, ``X-Domain-Id``,
    ``OpenStack-System-Scope``).
    """
    project = metadata.get("x-project-id") or None
    if strategy is AuthStrategy.NOAUTH:
        return Caller(project_id=project or default_project or None, roles=frozenset({"admin"}), noauth=True)
    system_scope = metadata.get("openstack-system-scope") or None
    user_id = metadata.get("x-user-id") or None
    roles = frozenset(r.strip().lower() for r in metadata.get("x-roles", "").split(",") if r.strip())
    # A token scoped to no project (domain or system scope) still names its user; such a caller gets Octavia's
    # answers for a context without a project (403, or 400 where a create needs a project).
    if project is None and system_scope is None and user_id is None:
        raise Unauthorized("The request you have made requires authentication.")
    return Caller(
        project_id=project,
        roles=roles,
        user_id=user_id,
        domain_id=metadata.get("x-domain-id") or None,
        system_scope=system_scope,
        legacy_roles=legacy_roles,
    )
