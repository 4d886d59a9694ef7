"""The headers that carry identity, shared by the API service (which reads them) and the edge (which strips them).

In ``keystone`` mode only the token (``X-Auth-Token``) names the caller; in ``noauth`` mode every caller is admin
and only ``X-Project-Id`` means something (Octavia's noauth convention: the project of a call that names none in
its body). In both, a client's identity headers are dropped at the edge. Only ``trusted_headers`` mode passes them
on, and the API then believes them only with the proxy's shared secret.
"""

from __future__ import annotations

TOKEN_HEADER = "x-auth-token"
#: The shared secret an authenticating proxy sends with every request in ``trusted_headers`` mode.
PROXY_SECRET_HEADER = "x-octavia-mesh-proxy-secret"
#: keystonemiddleware's identity headers, and the older names it still removes from clients' requests.
IDENTITY_HEADERS = (
    "x-identity-status",
    "x-service-identity-status",
    "x-domain-id",
    "x-domain-name",
    "x-project-id",
    "x-project-name",
    "x-project-domain-id",
    "x-project-domain-name",
    "x-user-id",
    "x-user-name",
    "x-user-domain-id",
    "x-user-domain-name",
    "x-roles",
    "x-is-admin-project",
    "openstack-system-scope",
    "x-service-roles",
    "x-service-user-id",
    "x-service-user-name",
    "x-service-project-id",
    "x-service-project-name",
    "x-service-catalog",
    "x-tenant-id",
    "x-tenant-name",
    "x-tenant",
    "x-user",
    "x-role",
)


def headers_to_strip(auth_strategy: str) -> list[str]:
    """The request headers the edge removes in ``auth_strategy`` mode."""
    if auth_strategy == "trusted_headers":
        return []
    kept = {"x-project-id"} if auth_strategy == "noauth" else set()
    return [h for h in (*IDENTITY_HEADERS, PROXY_SECRET_HEADER) if h not in kept]
