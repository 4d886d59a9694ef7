"""Who may do what: Octavia's default RBAC, kept in this one module.

The start-up mode decides who the caller is (:mod:`octavia_mesh.api.identity`):

* ``noauth`` (Octavia's ``auth_strategy = noauth``): every caller is admin, and
  the project comes from the body's ``project_id`` or ``X-Project-Id``.
* ``keystone``: a Keystone token names the project, user, scope and roles.
* ``trusted_headers``: an authenticating proxy in front of the edge (as
  keystonemiddleware does), named by a shared secret, sets ``X-Project-Id``
  and ``X-Roles``.

The rules below then decide.

Roles understood: Keystone's default ``admin``, ``member`` and ``reader``
(Octavia's default since 2025.1) and Octavia's advanced-RBAC roles
``load-balancer_{admin,member,observer,global_observer,quota_admin}``.
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
    """The rule an API call is checked against (Octavia's ``load-balancer:*`` building blocks)."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    READ_QUOTA = "read-quota"
    WRITE_QUOTA = "write-quota"


_ADMIN_ROLES = {"admin", "load-balancer_admin"}
_WRITER_ROLES = {"member", "load-balancer_member"}
_READER_ROLES = {"reader", "load-balancer_observer"} | _WRITER_ROLES
_GLOBAL_READER_ROLES = {"load-balancer_global_observer"}
_QUOTA_ADMIN_ROLES = {"load-balancer_quota_admin"}


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity a request carries."""

    project_id: str | None
    roles: frozenset[str]
    noauth: bool = False
    user_id: str | None = None
    domain_id: str | None = None  # a domain-scoped token's domain
    system_scope: str | None = None  # "all" for a system-scoped token

    @property
    def is_admin(self) -> bool:
        return self.noauth or bool(self.roles & _ADMIN_ROLES)

    @property
    def reads_everything(self) -> bool:
        """Admins and global observers list every project's objects."""
        return self.is_admin or bool(self.roles & _GLOBAL_READER_ROLES)

    @property
    def reads_all_quotas(self) -> bool:
        """Admins, global observers and quota admins see every project's quotas."""
        return self.is_admin or bool(self.roles & (_GLOBAL_READER_ROLES | _QUOTA_ADMIN_ROLES))

    def allowed(self, rule: Rule, project_id: str | None = None) -> bool:
        """Whether this caller passes ``rule`` on an object owned by ``project_id``."""
        if self.is_admin:
            return True
        own = project_id is None or project_id == self.project_id
        if rule is Rule.READ:
            return self.reads_everything or (own and bool(self.roles & _READER_ROLES))
        if rule is Rule.WRITE:
            return own and bool(self.roles & _WRITER_ROLES)
        if rule is Rule.READ_QUOTA:
            return bool(self.roles & (_GLOBAL_READER_ROLES | _QUOTA_ADMIN_ROLES)) or (
                own and bool(self.roles & _READER_ROLES)
            )
        if rule is Rule.WRITE_QUOTA:
            return bool(self.roles & _QUOTA_ADMIN_ROLES)
        return False

    def check(self, rule: Rule, project_id: str | None = None) -> None:
        """Raise 403 unless ``rule`` allows the call."""
        if not self.allowed(rule, project_id):
            raise Forbidden()


def caller_from_metadata(strategy: AuthStrategy, metadata: Mapping[str, str], default_project: str = "") -> Caller:
    """Build the caller from the request's headers (gRPC metadata keys are lower case).

    Only for ``noauth`` and for ``trusted_headers`` once the proxy is known to have sent them
    (keystonemiddleware's names: ``X-Project-Id``, ``X-Roles``, ``X-User-Id``, ``X-Domain-Id``,
    ``OpenStack-System-Scope``).
    """
    project = metadata.get("x-project-id") or None
    if strategy is AuthStrategy.NOAUTH:
        return Caller(project_id=project or default_project or None, roles=frozenset({"admin"}), noauth=True)
    system_scope = metadata.get("openstack-system-scope") or None
    if project is None and system_scope is None:
        raise Unauthorized("The request you have made requires authentication.")
    roles = frozenset(r.strip().lower() for r in metadata.get("x-roles", "").split(",") if r.strip())
    return Caller(
        project_id=project,
        roles=roles,
        user_id=metadata.get("x-user-id") or None,
        domain_id=metadata.get("x-domain-id") or None,
        system_scope=system_scope,
    )
