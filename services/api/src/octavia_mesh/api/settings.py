"""The API service's settings, read once from ``OCTAVIA_MESH_API_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from octavia_mesh.api.policy import AuthStrategy
from octavia_mesh.common.network import DRIVERS
from octavia_mesh.common.observability.logging import log_format_field, log_level_field
from octavia_mesh.common.observability.metrics import METRICS_LISTEN_HELP
from octavia_mesh.common.observability.tracing import otlp_endpoint_field
from octavia_mesh.common.settings import from_env

PREFIX = "OCTAVIA_MESH_API_"


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Settings of the API service."""

    grpc_listen: str = field(default="127.0.0.1:50051", metadata={"help": "host:port the gRPC API listens on"})
    bridge_listen: str = field(
        default="",
        metadata={
            "help": "host:port where the API takes unary gRPC calls on HTTP/1.1, which the edge sends there (its "
            "--api-bridge-port); empty: none, the edge calls the gRPC port"
        },
    )
    metrics_listen: str = field(default="", metadata={"help": METRICS_LISTEN_HELP})
    database_url: str = field(
        default="sqlite:///octavia-mesh.db", metadata={"help": "SQLAlchemy URL (OCTAVIA_MESH_DATABASE_URL)"}
    )
    nats_url: str = field(default="", metadata={"help": "NATS URL (OCTAVIA_MESH_NATS_URL); empty: no relay"})
    change_deadline_s: float = field(
        default=45.0,
        metadata={
            "help": "a change not committed this long after its call began is rolled back and answered 503, before "
            "the REST edge gives up (60 s) with the outcome unknown; a native gRPC call's own deadline, when "
            "sooner, counts instead (0: no deadline)"
        },
    )
    stream_replicas: int = field(
        default=1,
        metadata={
            "help": "copies JetStream keeps of the provider-command stream (num_replicas: 3 on a 3-node NATS "
            "cluster; at most the number of NATS servers); an existing stream is raised to it, never lowered"
        },
    )
    outbox_owner: bool = field(
        default=True,
        metadata={
            "help": "this process's outbox relay also sweeps up every unpublished command and re-drives stale ones;"
            " with several API processes exactly one is the owner (the others publish only what they commit)"
        },
    )
    auth_strategy: str = field(
        default=AuthStrategy.NOAUTH.value,
        metadata={
            "help": "noauth, keystone (X-Auth-Token validated against Keystone v3) or trusted_headers (X-Project-Id"
            " and X-Roles from an authenticating proxy that sends TRUSTED_PROXY_SECRET)"
        },
    )
    policy_legacy_roles: bool = field(
        default=False,
        metadata={
            "help": "let Octavia's deprecated load-balancer_* roles grant what they did before Octavia 16 "
            "(oslo.policy's enforce_new_defaults = False); off, as in Octavia 19"
        },
    )
    trusted_proxy_secret: str = field(
        default="",
        repr=False,
        metadata={"help": "trusted_headers mode: the shared secret the proxy sends as X-Octavia-Mesh-Proxy-Secret"},
    )
    keystone_auth_url: str = field(default="", metadata={"help": "keystone mode: Keystone's v3 URL"})
    keystone_www_authenticate_uri: str = field(
        default="", metadata={"help": "Keystone URL named in 401's WWW-Authenticate (default: KEYSTONE_AUTH_URL)"}
    )
    keystone_username: str = field(default="octavia", metadata={"help": "the service's Keystone user"})
    keystone_password: str = field(default="", repr=False, metadata={"help": "the service user's password"})
    keystone_project_name: str = field(default="service", metadata={"help": "the service user's project"})
    keystone_user_domain_name: str = field(default="Default", metadata={"help": "the service user's domain"})
    keystone_project_domain_name: str = field(default="Default", metadata={"help": "the service project's domain"})
    keystone_timeout_s: float = field(default=5.0, metadata={"help": "timeout of one call to Keystone"})
    keystone_token_cache_time_s: float = field(
        default=300.0,
        metadata={"help": "how long a validation is reused (a revoked token is refused at most this late)"},
    )
    keystone_token_cache_size: int = field(default=10000, metadata={"help": "validations kept at most"})
    noauth_default_project: str = field(
        default="", metadata={"help": "noauth mode: project of calls that name none (empty: Octavia's 400)"}
    )
    public_endpoint: str = field(
        default="http://127.0.0.1:9876",
        metadata={"help": "REST base URL used in links when a call has no forwarded host"},
    )
    pagination_max_limit: int = field(default=1000, metadata={"help": "largest page; 0 or less: unlimited"})
    enabled_provider_drivers: tuple[str, ...] = field(
        default=(
            "amphora:The Octavia Mesh amphora driver: HAProxy amphorae built by the worker",
            "noop:The no-op driver: every change completes at once with no data plane",
        ),
        # No comma in a description: Octavia's (and tempest's) ``name:description,...`` format cannot hold one.
        metadata={"help": "comma-separated name:description pairs of the providers users may choose"},
    )
    default_provider_driver: str = field(default="amphora", metadata={"help": "provider used when a call names none"})
    default_topology: str = field(
        default="SINGLE",
        metadata={"help": "SINGLE or ACTIVE_STANDBY: topology of amphora load balancers whose flavor names none"},
    )
    active_standby: str = field(
        default="auto",
        metadata={
            "help": "whether ACTIVE_STANDBY load balancers are built: enabled, disabled, or auto (when every "
            "worker of the provider says it can: root, iproute2 and keepalived where it runs its amphorae)"
        },
    )
    local_vip_subnet_id: str = field(
        default="7a9d3c2e-5b1f-4e8a-9c6d-0f2b4a6e8d10",
        metadata={"help": "id of the local VIP subnet (addresses on loopback, for amphorae on this machine)"},
    )
    local_vip_network_id: str = field(
        default="0c5b7e3a-9d2f-4b6e-8a1c-3e5f7a9b1d20", metadata={"help": "id of the local VIP subnet's network"}
    )
    local_vip_cidr: str = field(default="127.226.0.0/16", metadata={"help": "addresses of the local VIP subnet"})
    network_driver: str = field(
        default="local",
        metadata={
            "help": "allocates the amphora provider's VIPs: local (the local VIP subnet), neutron (VIP ports) or noop"
        },
    )
    openstack_cloud: str = field(
        default="",
        metadata={
            "help": "clouds.yaml entry with the service credentials of the neutron driver and of Barbican (empty: OS_*)"
        },
    )
    cert_manager: str = field(
        default="local",
        metadata={
            "help": "where listener and pool TLS refs are checked: local (the API's own secret store) or barbican "
            "(the user's token grants the service user read access, as Octavia's BarbicanACLAuth; set the "
            "worker's CERT_MANAGER alike)"
        },
    )
    secret_key_file: str = field(
        default="octavia-mesh-secret.key",
        metadata={
            "help": "Fernet keys of the local secret store, one a line, the first encrypts (created mode 0600 "
            "with a fresh key when missing); the worker must read the same keys"
        },
    )
    secret_keys: tuple[str, ...] = field(
        default=(),
        repr=False,
        metadata={"help": "comma-separated Fernet keys, the first encrypts; used instead of the key file"},
    )
    quota_load_balancer: int = field(default=-1, metadata={"help": "default load-balancer quota (-1 unlimited)"})
    quota_listener: int = field(default=-1, metadata={"help": "default listener quota"})
    quota_pool: int = field(default=-1, metadata={"help": "default pool quota"})
    quota_health_monitor: int = field(default=-1, metadata={"help": "default health-monitor quota"})
    quota_member: int = field(default=-1, metadata={"help": "default member quota"})
    quota_l7policy: int = field(default=-1, metadata={"help": "default L7-policy quota"})
    quota_l7rule: int = field(default=-1, metadata={"help": "default L7-rule quota"})
    uvloop: bool = field(default=True, metadata={"help": "run on uvloop's event loop (cheaper per call)"})

    log_format: str = log_format_field()
    log_level: str = log_level_field()
    otlp_endpoint: str = otlp_endpoint_field()

    def __post_init__(self) -> None:
        strategy = AuthStrategy(self.auth_strategy)  # fails at start-up on an unknown strategy
        if not 1 <= self.stream_replicas <= 5:  # JetStream's own bounds
            raise ValueError(f"stream_replicas {self.stream_replicas} is not between 1 and 5")
        if strategy is AuthStrategy.TRUSTED_HEADERS and len(self.trusted_proxy_secret) < 16:
            raise ValueError("trusted_headers needs TRUSTED_PROXY_SECRET (16 characters or more) naming the proxy")
        if strategy is AuthStrategy.KEYSTONE and not (self.keystone_auth_url and self.keystone_password):
            raise ValueError("keystone needs KEYSTONE_AUTH_URL and KEYSTONE_PASSWORD (the service's credentials)")
        if self.default_provider_driver not in self.providers:
            raise ValueError(f"default provider {self.default_provider_driver!r} is not enabled")
        if self.default_topology not in ("SINGLE", "ACTIVE_STANDBY"):
            raise ValueError(f"default topology {self.default_topology!r} is not SINGLE or ACTIVE_STANDBY")
        if self.active_standby not in ("auto", "enabled", "disabled"):
            raise ValueError(f"active_standby {self.active_standby!r} is not auto, enabled or disabled")
        if self.cert_manager not in ("local", "barbican"):
            raise ValueError(f"cert manager {self.cert_manager!r} is not local or barbican")
        if self.network_driver not in DRIVERS:
            raise ValueError(f"network driver {self.network_driver!r} is not one of {', '.join(sorted(DRIVERS))}")

    @property
    def auth(self) -> AuthStrategy:
        return AuthStrategy(self.auth_strategy)

    @property
    def providers(self) -> dict[str, str]:
        """Enabled providers, name to description, in configured order."""
        out: dict[str, str] = {}
        for item in self.enabled_provider_drivers:
            name, _, description = item.partition(":")
            out[name.strip()] = description.strip()
        return out

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> ApiSettings:
        return from_env(cls, PREFIX, environ, **overrides)
