"""A flat, typed view of one load balancer's HAProxy configuration, and ``build()`` from ORM rows.

The template never sees ORM objects: :func:`build` resolves references (listener -> pools ->
members, policies -> rules), drops what HAProxy must not serve (disabled policies and rules,
policies without rules, UDP/SCTP objects), applies Octavia's defaults, clamps connection limits
and maps TLS container refs to PEM paths. The view keeps user-supplied strings as they are;
quoting and validation happen when rendering (:mod:`.syntax`), so a view built by hand is as
safe to render as one built here.
"""

from __future__ import annotations

import resource
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from octavia_mesh.common.db import models

from .enums import (
    CLIENT_CERT_HEADERS,
    DEFAULT_TIMEOUT_CLIENT_DATA_MS,
    DEFAULT_TIMEOUT_MEMBER_CONNECT_MS,
    DEFAULT_TIMEOUT_MEMBER_DATA_MS,
    DEFAULT_TIMEOUT_TCP_INSPECT_MS,
    Algorithm,
    ClientAuth,
    CompareType,
    InsertHeader,
    L7Action,
    ListenerProtocol,
    Mode,
    MonitorType,
    Persistence,
    ProxyProtocol,
    RuleType,
    alpn_protocols,
    parse_enum,
    split_ciphers,
    tls_versions,
)
from .syntax import ConfigError

__all__ = [
    "DEFAULT_RESERVED_FDS",
    "LOCAL_PEER",
    "PEERS_SECTION",
    "Backend",
    "ConfigError",
    "Frontend",
    "FrontendTls",
    "Globals",
    "Hsts",
    "LoadBalancerView",
    "Monitor",
    "Policy",
    "Rule",
    "Server",
    "ServerTls",
    "TlsParams",
    "build",
    "connection_cap",
]


#: The ``peers`` section stick tables name, holding only the local peer (``LOCAL_PEER``), so that a reload
#: hands the tables to the new worker. A standalone configuration defines it on ``<runtime_dir>/peers.sock``;
#: on an amphora the agent's own fragment defines it under these names (a contract with the agent).
PEERS_SECTION = "local"
LOCAL_PEER = "amphora"

#: File descriptors kept out of the connection budget: listeners, one per health-checked server, the
#: stats socket, logs, DNS and the master-worker socket pair. HAProxy 2.8 measured: 2 x maxconn + 25 +
#: binds + checked servers; 1000 leaves room for ~950 servers.
DEFAULT_RESERVED_FDS = 1000


@dataclass(frozen=True, slots=True)
class TlsParams:
    """Protocol settings shared by a TLS bind and a TLS server line."""

    versions: tuple[str, ...]  # allowed versions (Octavia's names: SSLv3, TLSv1, TLSv1.1, TLSv1.2, TLSv1.3)
    ciphers: str | None  # OpenSSL cipher list for TLSv1.2 and below
    ciphersuites: str | None  # TLSv1.3 suites
    alpn: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FrontendTls:
    """TLS termination on a listener."""

    crt_list: str  # path of the crt-list file the renderer also produces
    certificates: tuple[str, ...]  # PEM paths; the first one is the default certificate
    params: TlsParams
    client_auth: ClientAuth
    client_ca: str | None
    client_crl: str | None


@dataclass(frozen=True, slots=True)
class Hsts:
    max_age: int
    include_subdomains: bool
    preload: bool


@dataclass(frozen=True, slots=True)
class Rule:
    """One L7 rule, as the user wrote it."""

    id: str
    type: RuleType
    compare_type: CompareType
    key: str | None
    value: str
    invert: bool


@dataclass(frozen=True, slots=True)
class Policy:
    """An active L7 policy: enabled, with at least one enabled rule. A frontend tries them in order."""

    id: str
    action: L7Action
    rules: tuple[Rule, ...]
    backend: str | None = None  # REDIRECT_TO_POOL
    redirect_url: str | None = None  # REDIRECT_TO_URL
    redirect_prefix: str | None = None  # REDIRECT_PREFIX
    redirect_code: int = 302


@dataclass(frozen=True, slots=True)
class Frontend:
    """One listener."""

    name: str  # the listener ID
    protocol: ListenerProtocol
    mode: Mode
    enabled: bool
    addresses: tuple[str, ...]
    port: int
    maxconn: int
    timeout_client_ms: int
    timeout_tcp_inspect_ms: int
    tls: FrontendTls | None = None
    hsts: Hsts | None = None
    allowed_cidrs: tuple[str, ...] = ()
    insert_headers: tuple[InsertHeader, ...] = ()
    policies: tuple[Policy, ...] = ()
    default_backend: str | None = None


@dataclass(frozen=True, slots=True)
class Monitor:
    type: MonitorType
    delay_s: int
    timeout_s: int
    rise: int
    fall: int
    http_method: str = "GET"
    url_path: str = "/"
    expected_codes: str = "200"
    http_version: str = "1.0"
    domain_name: str | None = None


@dataclass(frozen=True, slots=True)
class ServerTls:
    """Re-encryption to members."""

    params: TlsParams
    client_cert: str | None
    ca: str | None
    crl: str | None
    forward_sni: bool  # send the client's SNI on (only a TLS-terminating listener has one)


@dataclass(frozen=True, slots=True)
class Server:
    """One member."""

    name: str  # the member ID
    address: str
    port: int
    weight: int
    backup: bool
    enabled: bool
    monitor_address: str | None = None
    monitor_port: int | None = None


@dataclass(frozen=True, slots=True)
class Backend:
    """One pool as used by one listener (``<pool_id>:<listener_id>``, as Octavia names it)."""

    name: str
    mode: Mode
    enabled: bool
    algorithm: Algorithm
    timeout_connect_ms: int
    timeout_server_ms: int
    servers: tuple[Server, ...]
    persistence: Persistence | None = None
    cookie_name: str | None = None  # APP_COOKIE
    proxy_protocol: ProxyProtocol | None = None
    tls: ServerTls | None = None
    monitor: Monitor | None = None


@dataclass(frozen=True, slots=True)
class Globals:
    maxconn: int
    stats_socket: str | None  # None: the agent's own global fragment provides the stats socket
    server_state_file: str | None  # None: likewise, the agent's fragment names it
    hard_stop_after_s: int | None  # None: left to another config file (the agent's fragment)
    log_target: str | None = None
    peers_socket: str | None = None  # None: the agent's fragment defines the peers section
    #: PROMETHEUS listeners send to the agent's ``prometheus-exporter-internal`` backend (Octavia's metric names,
    #: renamed by the agent's proxy) rather than HAProxy's own exporter (HAProxy's names).
    agent_exporter: bool = False


@dataclass(frozen=True, slots=True)
class LoadBalancerView:
    id: str
    globals: Globals
    frontends: tuple[Frontend, ...]
    backends: tuple[Backend, ...]


def connection_cap(nofile: int | None = None, reserved_fds: int = DEFAULT_RESERVED_FDS) -> int:
    """The largest ``maxconn`` HAProxy can start with under RLIMIT_NOFILE ``nofile`` (default: ours).

    Each connection costs two descriptors (client and server side); HAProxy refuses to start when
    ``2 * maxconn`` plus its own sockets exceeds the limit, and it cannot raise a hard limit.
    """
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(1, (nofile - reserved_fds) // 2)


_HAPROXY_LISTENERS = tuple(ListenerProtocol)  # UDP and SCTP listeners use keepalived (LVS)
_HTTP_LISTENERS = ("HTTP", "TERMINATED_HTTPS", "PROMETHEUS")
_POOL_MODES = {"HTTP": Mode.HTTP, "HTTPS": Mode.TCP, "TCP": Mode.TCP}  # PROXY/PROXYV2 follow the listener
_HAPROXY_POOLS = ("HTTP", "HTTPS", "TCP", "PROXY", "PROXYV2")
_PROXY_PROTOCOLS = {"PROXY": ProxyProtocol.V1, "PROXYV2": ProxyProtocol.V2}


def build(
    lb: models.LoadBalancer,
    listeners: Iterable[models.Listener],
    pools: Iterable[models.Pool],
    members: Iterable[models.Member],
    monitors: Iterable[models.HealthMonitor],
    l7policies: Iterable[models.L7Policy],
    l7rules: Iterable[models.L7Rule],
    *,
    vip_address: str,
    tls_files: Mapping[str, str],
    runtime_dir: str,
    max_connections: int,
    additional_vip_addresses: Sequence[str] = (),
    hard_stop_after_s: int | None = 60,
    log_target: str | None = None,
    own_stats_socket: bool = True,
) -> LoadBalancerView:
    """The view of ``lb``'s HAProxy configuration from its rows (other load balancers' rows are ignored).

    ``tls_files`` maps every TLS container ref in use (certificates, CA bundles, CRLs) to its PEM
    file on the amphora; ``runtime_dir`` holds the stats socket, the server-state file, the peers
    socket and the crt-lists; ``max_connections`` is the process cap (see :func:`connection_cap`): every
    ``maxconn`` is clamped to it and a listener's ``-1`` means it. ``hard_stop_after_s`` bounds how
    long an old worker drains after a reload (None leaves it to another file, e.g. the agent's);
    ``log_target`` is ``stdout``, ``stderr``, a syslog socket path or ``address:port`` (None: no logs).
    Raises :class:`ConfigError` when the objects cannot make a valid configuration.
    """
    if max_connections < 1:
        raise ConfigError(f"max_connections must be positive, not {max_connections}")
    own_listeners = sorted(
        (li for li in listeners if li.load_balancer_id == lb.id and li.protocol in _HAPROXY_LISTENERS),
        key=lambda li: (li.protocol_port, li.protocol, li.id),
    )
    ctx = _Context(
        lb=lb,
        pools={p.id: p for p in pools if p.load_balancer_id == lb.id and p.protocol in _HAPROXY_POOLS},
        members=_group(members, "pool_id"),
        monitors={m.pool_id: m for m in monitors},
        policies=_group(l7policies, "listener_id"),
        rules=_group(l7rules, "l7policy_id"),
        tls_files=tls_files,
        cap=max_connections,
        addresses=(vip_address, *additional_vip_addresses),
        runtime_dir=runtime_dir,
    )
    frontends: list[Frontend] = []
    backends: list[Backend] = []
    for listener in own_listeners:
        frontend, listener_backends = ctx.listener(listener)
        frontends.append(frontend)
        backends.extend(listener_backends)
    return LoadBalancerView(
        id=lb.id,
        globals=Globals(
            maxconn=max_connections,
            # An agent that brings its own runtime files (stats socket, server-state file, peers section: its
            # unix-socket paths are short; these may not be) passes own_stats_socket=False.
            stats_socket=f"{runtime_dir}/haproxy.sock" if own_stats_socket else None,
            server_state_file=f"{runtime_dir}/servers.state" if own_stats_socket else None,
            hard_stop_after_s=hard_stop_after_s,
            log_target=log_target,
            peers_socket=f"{runtime_dir}/peers.sock" if own_stats_socket else None,
            agent_exporter=not own_stats_socket,
        ),
        frontends=tuple(frontends),
        backends=tuple(backends),
    )


def _group(rows: Iterable[Any], attribute: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for row in rows:
        out.setdefault(getattr(row, attribute), []).append(row)
    return out


def _ms(value: int | None, default: int) -> int:
    return default if value is None else value


def _truthy(value: object) -> bool:
    """Octavia stores insert_headers values as strings ("true"/"True"); booleans are accepted too."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _insert_headers(listener: models.Listener, mode: Mode) -> tuple[InsertHeader, ...]:
    if mode is not Mode.HTTP:
        return ()
    wanted = {str(name).lower() for name, value in (listener.insert_headers or {}).items() if _truthy(value)}
    terminated = listener.protocol == "TERMINATED_HTTPS"
    return tuple(h for h in InsertHeader if h.value.lower() in wanted and (terminated or h not in CLIENT_CERT_HEADERS))


def _hsts(listener: models.Listener) -> Hsts | None:
    if listener.hsts_max_age is None or listener.protocol != "TERMINATED_HTTPS":
        return None  # HSTS only means something over HTTPS
    return Hsts(listener.hsts_max_age, bool(listener.hsts_include_subdomains), bool(listener.hsts_preload))


def _rule(rule: models.L7Rule) -> Rule:
    return Rule(
        id=rule.id,
        type=parse_enum(RuleType, rule.type, "L7 rule type"),
        compare_type=parse_enum(CompareType, rule.compare_type, "L7 rule compare_type"),
        key=rule.key,
        value=rule.value,
        invert=bool(rule.invert),
    )


@dataclass(slots=True)
class _Context:
    """The load balancer's rows, indexed, and what the worker supplied."""

    lb: models.LoadBalancer
    pools: dict[str, models.Pool]
    members: dict[str, list[models.Member]]
    monitors: dict[str, models.HealthMonitor]
    policies: dict[str, list[models.L7Policy]]
    rules: dict[str, list[models.L7Rule]]
    tls_files: Mapping[str, str]
    cap: int
    addresses: tuple[str, ...]
    runtime_dir: str

    def listener(self, listener: models.Listener) -> tuple[Frontend, list[Backend]]:
        enabled = bool(self.lb.admin_state_up and listener.admin_state_up)
        mode = Mode.HTTP if listener.protocol in _HTTP_LISTENERS else Mode.TCP
        used: dict[str, models.Pool] = {}  # pool ID -> pool, in first-use order: one backend each
        default_backend = self.use_pool(listener.default_pool_id, listener, used)
        policies: list[Policy] = []
        if mode is Mode.HTTP and listener.protocol != "PROMETHEUS":  # L7 needs HTTP: TCP listeners ignore it
            active = [p for p in self.policies.get(listener.id, []) if p.admin_state_up]
            for policy in sorted(active, key=lambda p: (p.position, p.id)):
                view = self.policy(policy, listener, used)
                if view is not None:
                    policies.append(view)
        frontend = Frontend(
            name=listener.id,
            protocol=ListenerProtocol(listener.protocol),
            mode=mode,
            enabled=enabled,
            addresses=self.addresses,
            port=listener.protocol_port,
            maxconn=self.clamp(listener.connection_limit),
            timeout_client_ms=_ms(listener.timeout_client_data, DEFAULT_TIMEOUT_CLIENT_DATA_MS),
            timeout_tcp_inspect_ms=_ms(listener.timeout_tcp_inspect, DEFAULT_TIMEOUT_TCP_INSPECT_MS),
            tls=self.frontend_tls(listener),
            hsts=_hsts(listener),
            allowed_cidrs=tuple(listener.allowed_cidrs or ()),
            insert_headers=_insert_headers(listener, mode),
            policies=tuple(policies),
            default_backend=default_backend,
        )
        return frontend, [self.backend(pool, listener, mode, enabled) for pool in used.values()]

    def use_pool(self, pool_id: str | None, listener: models.Listener, used: dict[str, models.Pool]) -> str | None:
        """The backend serving the pool to ``listener`` (recorded in ``used``), or None if it is not served."""
        pool = self.pools.get(pool_id or "")
        if pool is None or not pool.admin_state_up or listener.protocol == "PROMETHEUS":
            return None  # a disabled pool is not served: HAProxy answers 503, as with Octavia
        used.setdefault(pool.id, pool)
        return f"{pool.id}:{listener.id}"

    def policy(self, policy: models.L7Policy, listener: models.Listener, used: dict[str, models.Pool]) -> Policy | None:
        rules = tuple(_rule(r) for r in sorted(self.rules.get(policy.id, []), key=lambda r: r.id) if r.admin_state_up)
        if not rules:
            return None  # Octavia: a policy without (enabled) rules is ignored
        action = parse_enum(L7Action, policy.action, "L7 policy action")
        code = policy.redirect_http_code or 302
        if action is L7Action.REDIRECT_TO_POOL:
            backend = self.use_pool(policy.redirect_pool_id, listener, used)
            if backend is None:
                return None  # its pool is missing or disabled: the request goes on to the next policy
            return Policy(policy.id, action, rules, backend=backend)
        if action is L7Action.REDIRECT_TO_URL:
            if not policy.redirect_url:
                raise ConfigError(f"L7 policy {policy.id} redirects to a URL but has none")
            return Policy(policy.id, action, rules, redirect_url=policy.redirect_url, redirect_code=code)
        if action is L7Action.REDIRECT_PREFIX:
            if not policy.redirect_prefix:
                raise ConfigError(f"L7 policy {policy.id} redirects to a prefix but has none")
            return Policy(policy.id, action, rules, redirect_prefix=policy.redirect_prefix, redirect_code=code)
        return Policy(policy.id, action, rules)

    def clamp(self, limit: int | None) -> int:
        # Octavia: -1 (and 0, and NULL) mean "the provider default"; ours is the process cap.
        return self.cap if limit is None or limit <= 0 else min(limit, self.cap)

    def pem(self, ref: str | None, what: str) -> str | None:
        if not ref:
            return None
        try:
            return self.tls_files[ref]
        except KeyError:
            raise ConfigError(f"no PEM file on the amphora for {what} {ref!r}") from None

    def frontend_tls(self, listener: models.Listener) -> FrontendTls | None:
        terminated = listener.protocol == "TERMINATED_HTTPS"
        if not terminated and not (listener.protocol == "PROMETHEUS" and listener.default_tls_container_ref):
            return None
        default = self.pem(listener.default_tls_container_ref, "default certificate")
        if default is None:
            raise ConfigError(f"listener {listener.id} terminates TLS but has no default certificate")
        sni = [self.pem(ref, "SNI certificate") for ref in listener.sni_container_refs or ()]
        auth = parse_enum(ClientAuth, listener.client_authentication or "NONE", "client_authentication")
        ca = crl = None
        if auth is not ClientAuth.NONE:
            ca = self.pem(listener.client_ca_tls_container_ref, "client CA")
            if ca is None:
                raise ConfigError(f"listener {listener.id} verifies client certificates but has no client CA")
            crl = self.pem(listener.client_crl_container_ref, "client CRL")
        ciphers, suites = split_ciphers(listener.tls_ciphers)
        return FrontendTls(
            crt_list=f"{self.runtime_dir}/{listener.id}.crt-list",
            certificates=tuple(dict.fromkeys([default, *(p for p in sni if p)])),
            params=TlsParams(
                tls_versions(listener.tls_versions, f"listener {listener.id} tls_versions"),
                ciphers,
                suites,
                alpn_protocols(listener.alpn_protocols, f"listener {listener.id} alpn_protocols"),
            ),
            client_auth=auth,
            client_ca=ca,
            client_crl=crl,
        )

    def backend(self, pool: models.Pool, listener: models.Listener, listener_mode: Mode, enabled: bool) -> Backend:
        name = f"{pool.id}:{listener.id}"
        mode = _POOL_MODES.get(pool.protocol, listener_mode)
        if listener_mode is Mode.HTTP and mode is Mode.TCP:
            raise ConfigError(f"{pool.protocol} pool {pool.id} cannot serve {listener.protocol} listener {listener.id}")
        persistence, cookie = _persistence(pool, mode)
        return Backend(
            name=name,
            mode=mode,
            enabled=enabled,
            algorithm=parse_enum(Algorithm, pool.lb_algorithm, "lb_algorithm"),
            timeout_connect_ms=_ms(listener.timeout_member_connect, DEFAULT_TIMEOUT_MEMBER_CONNECT_MS),
            timeout_server_ms=_ms(listener.timeout_member_data, DEFAULT_TIMEOUT_MEMBER_DATA_MS),
            servers=tuple(_server(m) for m in sorted(self.members.get(pool.id, []), key=lambda m: m.id)),
            persistence=persistence,
            cookie_name=cookie,
            proxy_protocol=_PROXY_PROTOCOLS.get(pool.protocol),
            tls=self.server_tls(pool, listener, mode),
            monitor=_monitor(self.monitors.get(pool.id)),
        )

    def server_tls(self, pool: models.Pool, listener: models.Listener, mode: Mode) -> ServerTls | None:
        if not pool.tls_enabled:
            return None
        ca = self.pem(pool.ca_tls_container_ref, "pool CA")
        ciphers, suites = split_ciphers(pool.tls_ciphers)
        # ALPN to members only where HAProxy speaks HTTP itself: in TCP mode it would relay a
        # client's bytes over whatever protocol the member picked.
        alpn = alpn_protocols(pool.alpn_protocols, f"pool {pool.id} alpn_protocols") if mode is Mode.HTTP else ()
        return ServerTls(
            params=TlsParams(tls_versions(pool.tls_versions, f"pool {pool.id} tls_versions"), ciphers, suites, alpn),
            client_cert=self.pem(pool.tls_container_ref, "pool client certificate"),
            ca=ca,
            crl=self.pem(pool.crl_container_ref, "pool CRL") if ca else None,
            forward_sni=listener.protocol == "TERMINATED_HTTPS",
        )


def _persistence(pool: models.Pool, mode: Mode) -> tuple[Persistence | None, str | None]:
    sp = pool.session_persistence or {}
    if not sp.get("type"):
        return None, None
    kind = parse_enum(Persistence, sp["type"], "session_persistence type")
    if kind is not Persistence.SOURCE_IP and mode is not Mode.HTTP:
        raise ConfigError(f"{kind} persistence needs an HTTP pool; pool {pool.id} is {pool.protocol}")
    if kind is Persistence.APP_COOKIE:
        if not sp.get("cookie_name"):
            raise ConfigError(f"APP_COOKIE persistence of pool {pool.id} has no cookie_name")
        return kind, sp["cookie_name"]
    return kind, None


def _server(member: models.Member) -> Server:
    return Server(
        name=member.id,
        address=member.address,
        port=member.protocol_port,
        weight=1 if member.weight is None else member.weight,
        backup=bool(member.backup),
        enabled=bool(member.admin_state_up),
        monitor_address=member.monitor_address or None,
        monitor_port=member.monitor_port or None,
    )


def _monitor(monitor: models.HealthMonitor | None) -> Monitor | None:
    if monitor is None or not monitor.admin_state_up:
        return None
    return Monitor(
        type=parse_enum(MonitorType, monitor.type, "health monitor type"),
        delay_s=monitor.delay,
        timeout_s=monitor.timeout,
        rise=monitor.max_retries,
        fall=3 if monitor.max_retries_down is None else monitor.max_retries_down,
        http_method=monitor.http_method or "GET",
        url_path=monitor.url_path or "/",
        expected_codes=monitor.expected_codes or "200",
        http_version="1.1" if monitor.http_version is not None and float(monitor.http_version) >= 1.1 else "1.0",
        domain_name=monitor.domain_name or None,
    )
