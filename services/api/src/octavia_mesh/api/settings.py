"""The API service's settings, read once from ``OCTAVIA_MESH_API_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from octavia_mesh.api.policy import AuthStrategy
from octavia_mesh.common.settings import from_env

PREFIX = "OCTAVIA_MESH_API_"


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Settings of the API service."""

    grpc_listen: str = field(default="127.0.0.1:50051", metadata={"help": "host:port the gRPC API listens on"})
    database_url: str = field(
        default="sqlite:///octavia-mesh.db", metadata={"help": "SQLAlchemy URL (OCTAVIA_MESH_DATABASE_URL)"}
    )
    nats_url: str = field(default="", metadata={"help": "NATS URL (OCTAVIA_MESH_NATS_URL); empty: no relay"})
    auth_strategy: str = field(
        default=AuthStrategy.NOAUTH.value, metadata={"help": "noauth or trusted_headers (X-Project-Id and X-Roles)"}
    )
    noauth_default_project: str = field(
        default="", metadata={"help": "noauth mode: project of calls that name none (empty: Octavia's 400)"}
    )
    public_endpoint: str = field(
        default="http://127.0.0.1:9876",
        metadata={"help": "REST base URL used in links when a call has no forwarded host"},
    )
    pagination_max_limit: int = field(default=1000, metadata={"help": "largest page; 0 or less: unlimited"})
    enabled_provider_drivers: tuple[str, ...] = field(
        default=("noop:The no-op driver: every change completes at once, no data plane",),
        metadata={"help": "comma-separated name:description pairs of the providers users may choose"},
    )
    default_provider_driver: str = field(default="noop", metadata={"help": "provider used when a call names none"})
    quota_load_balancer: int = field(default=-1, metadata={"help": "default load-balancer quota (-1 unlimited)"})
    quota_listener: int = field(default=-1, metadata={"help": "default listener quota"})
    quota_pool: int = field(default=-1, metadata={"help": "default pool quota"})
    quota_health_monitor: int = field(default=-1, metadata={"help": "default health-monitor quota"})
    quota_member: int = field(default=-1, metadata={"help": "default member quota"})
    quota_l7policy: int = field(default=-1, metadata={"help": "default L7-policy quota"})
    quota_l7rule: int = field(default=-1, metadata={"help": "default L7-rule quota"})

    def __post_init__(self) -> None:
        AuthStrategy(self.auth_strategy)  # fails at start-up on an unknown strategy
        if self.default_provider_driver not in self.providers:
            raise ValueError(f"default provider {self.default_provider_driver!r} is not enabled")

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
