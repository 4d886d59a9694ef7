"""Who is calling: one authenticator per start-up mode, shared by every REST and native gRPC call.

Validation lives here, in the API service's gRPC layer, rather than at the Envoy edge (ext_authz to an auth
service): every call, REST transcoded by Envoy or native gRPC, already passes through this layer, and so does a
gRPC client that reaches the API service without the edge (inside a cluster). An edge-only check would leave
that path open, and a separate auth service would add a network hop and a process to every cache miss for no
gain. The edge still strips identity headers (:mod:`octavia_mesh.common.authheaders`) except in
``trusted_headers`` mode, as a second line; in ``keystone`` mode this layer ignores them anyway.

* ``noauth`` (Octavia's): every caller is admin; the project comes from the body's ``project_id``, the
  ``X-Project-Id`` header, or the configured default project.
* ``keystone``: the ``X-Auth-Token`` header (gRPC metadata ``x-auth-token``) is validated against Keystone
  (:mod:`octavia_mesh.api.keystone`); project, user, domain, system scope and roles come from the token alone.
* ``trusted_headers``: an authenticating proxy in front (keystonemiddleware, say) sets ``X-Project-Id``,
  ``X-Roles``, ...; those headers are believed only on requests carrying the proxy's shared secret
  (:data:`PROXY_SECRET_HEADER`), so a client that reaches the edge around the proxy names nobody.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from contextvars import ContextVar

from octavia_mesh.api.errors import Unauthorized, Unavailable
from octavia_mesh.api.keystone import InvalidToken, KeystoneConfig, KeystoneUnavailable, TokenValidator
from octavia_mesh.api.policy import AuthStrategy, Caller, caller_from_metadata
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.common.authheaders import PROXY_SECRET_HEADER, TOKEN_HEADER

logger = logging.getLogger(__name__)

NEEDS_AUTH = "The request you have made requires authentication."
KEYSTONE_DOWN = "The Keystone service is temporarily unavailable."

#: The validated Keystone token of the call being handled (keystone mode; None otherwise), for what the API does
#: as the user rather than as itself: granting the service read access to the user's Barbican secrets
#: (``tls_refs.py``). Each gRPC call runs in its own task, so the value never leaks to another call.
USER_TOKEN: ContextVar[str | None] = ContextVar("octavia_mesh_user_token", default=None)


class Authenticator:
    """Turns a call's metadata into its :class:`Caller`, or refuses it (401, 503)."""

    def __init__(self, settings: ApiSettings) -> None:
        self.strategy = settings.auth
        self.default_project = settings.noauth_default_project
        self.legacy_roles = settings.policy_legacy_roles
        self._secret = settings.trusted_proxy_secret.encode()
        self.validator: TokenValidator | None = None
        self.www_authenticate = ""
        if self.strategy is AuthStrategy.KEYSTONE:
            self.validator = TokenValidator(
                KeystoneConfig(
                    auth_url=settings.keystone_auth_url,
                    username=settings.keystone_username,
                    password=settings.keystone_password,
                    project_name=settings.keystone_project_name,
                    user_domain_name=settings.keystone_user_domain_name,
                    project_domain_name=settings.keystone_project_domain_name,
                    timeout_s=settings.keystone_timeout_s,
                    cache_time_s=settings.keystone_token_cache_time_s,
                    cache_size=settings.keystone_token_cache_size,
                )
            )
            uri = settings.keystone_www_authenticate_uri or settings.keystone_auth_url
            self.www_authenticate = f'Keystone uri="{uri}"'

    def _unauthorized(self) -> Unauthorized:
        error = Unauthorized(NEEDS_AUTH)
        if self.www_authenticate:
            error.headers = (("www-authenticate", self.www_authenticate),)
        return error

    async def caller(self, metadata: Mapping[str, str]) -> Caller:
        """The caller of a call with these headers (gRPC metadata: lower-case keys)."""
        if self.strategy is AuthStrategy.NOAUTH:
            return caller_from_metadata(self.strategy, metadata, self.default_project)
        if self.strategy is AuthStrategy.TRUSTED_HEADERS:
            sent = metadata.get(PROXY_SECRET_HEADER, "").encode()
            if not hmac.compare_digest(sent, self._secret):
                raise self._unauthorized()
            return caller_from_metadata(self.strategy, metadata, legacy_roles=self.legacy_roles)
        assert self.validator is not None
        token = metadata.get(TOKEN_HEADER, "").strip()
        if not token:
            raise self._unauthorized()
        try:
            identity = await self.validator.validate(token)
        except InvalidToken:
            raise self._unauthorized() from None
        except KeystoneUnavailable as exc:
            logger.warning("token not validated: %s", exc)
            raise Unavailable(KEYSTONE_DOWN) from None
        USER_TOKEN.set(token)
        return Caller(
            project_id=identity.project_id,
            roles=identity.roles,
            user_id=identity.user_id,
            domain_id=identity.domain_id,
            system_scope=identity.system_scope,
            legacy_roles=self.legacy_roles,
        )

    def close(self) -> None:
        if self.validator is not None:
            self.validator.close()
