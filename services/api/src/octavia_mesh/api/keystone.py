"""Keystone token validation, as keystonemiddleware's ``auth_token`` does it, for a grpc.aio server.

The service authenticates to Keystone v3 with its own credentials and asks
``GET /v3/auth/tokens`` (``X-Subject-Token``) about each token it has not seen
recently. keystoneauth1 does the service side (password auth, its token's
refresh, a retry after a 401 with a new service token) and parses the answer
(``AccessInfoV3``); it is synchronous, so a validation runs in a small thread
pool, and concurrent requests with the same unseen token share one.

Answers are cached in a bounded LRU (size and time both bounded) keyed by the
token's SHA-256, never the token itself: a valid token for ``cache_time_s`` or
until it expires, whichever is sooner; an invalid one (Keystone's 404: expired,
revoked or garbage) for the same time, so that a flood of bad tokens does not
become a flood of Keystone calls. A revoked token is therefore refused at
most ``cache_time_s`` after its revocation, as with keystonemiddleware's
``token_cache_time``. Keystone unreachable or failing is never cached and never
allowed: :class:`KeystoneUnavailable`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cachetools import TLRUCache
from keystoneauth1 import access, session
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1.identity import v3

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Identity:
    """What a validated token says about its bearer."""

    user_id: str | None
    project_id: str | None
    domain_id: str | None
    system_scope: str | None  # "all" for a system-scoped token
    roles: frozenset[str]
    expires_at: float  # epoch seconds


class InvalidToken(Exception):
    """Keystone does not know the token (garbage, expired or revoked)."""


class KeystoneUnavailable(Exception):
    """Keystone could not be asked, or failed: the call can be neither allowed nor refused."""


@dataclass(frozen=True, slots=True)
class KeystoneConfig:
    auth_url: str  # Keystone v3, e.g. http://keystone:5000/v3
    username: str
    password: str
    project_name: str
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    timeout_s: float = 5.0
    cache_time_s: float = 300.0
    cache_size: int = 10000


_INVALID = "invalid"


class TokenValidator:
    """Validates tokens against Keystone, with a bounded cache."""

    def __init__(self, config: KeystoneConfig) -> None:
        self.config = config
        self._auth = v3.Password(
            auth_url=config.auth_url,
            username=config.username,
            password=config.password,
            project_name=config.project_name,
            user_domain_name=config.user_domain_name,
            project_domain_name=config.project_domain_name,
        )
        self._session = session.Session(auth=self._auth, timeout=config.timeout_s)
        self._tokens_url = config.auth_url.rstrip("/") + "/auth/tokens"
        self._cache: TLRUCache[str, Identity | str] = TLRUCache(
            maxsize=config.cache_size, ttu=self._time_to_use, timer=time.monotonic
        )
        self._inflight: dict[str, asyncio.Future[Identity | str]] = {}
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="keystone")

    def _time_to_use(self, _key: str, value: Identity | str, now: float) -> float:
        ttl = self.config.cache_time_s
        if isinstance(value, Identity):  # never past the token's own expiry
            ttl = min(ttl, value.expires_at - time.time())
        return now + max(ttl, 0.0)

    async def validate(self, token: str) -> Identity:
        """The token's identity; :class:`InvalidToken` or :class:`KeystoneUnavailable` otherwise."""
        key = hashlib.sha256(token.encode()).hexdigest()
        found = self._cache.get(key)
        if found is None:
            # One validation per unseen token, in a task of its own: a caller that goes away (cancelled RPC)
            # neither cancels it nor the other callers waiting on it.
            task = self._inflight.get(key)
            if task is None:
                task = asyncio.ensure_future(self._fetch(key, token))
                self._inflight[key] = task
                task.add_done_callback(lambda done, k=key: self._settled(k, done))
            found = await asyncio.shield(task)
        if isinstance(found, str):
            raise InvalidToken()
        if found.expires_at <= time.time():  # cached a moment too long: expired tokens are never accepted
            raise InvalidToken()
        return found

    async def _fetch(self, key: str, token: str) -> Identity | str:
        found = await asyncio.get_running_loop().run_in_executor(self._pool, self._ask_keystone, token)
        self._cache[key] = found
        return found

    def _settled(self, key: str, task: asyncio.Future[Identity | str]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter got it already, or none is left to

    def _ask_keystone(self, token: str) -> Identity | str:
        try:
            resp = self._session.get(
                self._tokens_url,
                headers={"X-Subject-Token": token},
                authenticated=True,
                raise_exc=False,
            )
        except ks_exc.ConnectFailure as exc:
            raise KeystoneUnavailable(f"cannot reach Keystone: {exc}") from exc
        except ks_exc.ConnectionError as exc:  # includes timeouts
            raise KeystoneUnavailable(f"cannot reach Keystone: {exc}") from exc
        except ks_exc.ClientException as exc:  # the service's own credentials were refused, or discovery failed
            logger.error("Keystone refused the service's credentials: %s", exc)
            raise KeystoneUnavailable(f"Keystone refused the service's credentials: {exc}") from exc
        if resp.status_code == 404:  # unknown, expired or revoked token
            return _INVALID
        if resp.status_code == 401:  # after keystoneauth's retry with a new service token: ours is refused
            logger.error("Keystone refused the service's token: %s", resp.text[:200])
            raise KeystoneUnavailable("Keystone refused the service's token")
        if resp.status_code != 200:
            raise KeystoneUnavailable(f"Keystone answered {resp.status_code} to a token validation")
        try:
            info = access.create(resp=resp)
            expires = info.expires
        except (ValueError, KeyError, TypeError) as exc:
            raise KeystoneUnavailable(f"Keystone's validation answer cannot be read: {exc}") from exc
        if not isinstance(info, access.AccessInfoV3):
            raise KeystoneUnavailable("Keystone answered with a v2 token document")
        return Identity(
            user_id=info.user_id,
            project_id=info.project_id,
            domain_id=info.domain_id,
            system_scope="all" if info.system_scoped else None,
            roles=frozenset(r.lower() for r in info.role_names or ()),
            expires_at=expires.timestamp() if expires else time.time() + self.config.cache_time_s,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.session.close()
