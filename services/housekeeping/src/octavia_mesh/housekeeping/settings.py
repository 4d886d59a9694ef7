"""The housekeeping service's settings, read once from ``OCTAVIA_MESH_HOUSEKEEPING_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from octavia_mesh.common.observability.logging import log_format_field, log_level_field
from octavia_mesh.common.observability.metrics import METRICS_LISTEN_HELP
from octavia_mesh.common.observability.tracing import otlp_endpoint_field
from octavia_mesh.common.settings import from_env

PREFIX = "OCTAVIA_MESH_HOUSEKEEPING_"

WEEK_S = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class HousekeepingSettings:
    """Settings of the housekeeping service (defaults are Octavia's where Octavia has the setting)."""

    grpc_listen: str = field(default="127.0.0.1:50054", metadata={"help": "host:port of the gRPC endpoint"})
    metrics_listen: str = field(default="", metadata={"help": METRICS_LISTEN_HELP})
    database_url: str = field(
        default="sqlite:///octavia-mesh.db", metadata={"help": "SQLAlchemy URL (OCTAVIA_MESH_DATABASE_URL)"}
    )
    nats_url: str = field(default="nats://127.0.0.1:4222", metadata={"help": "NATS URL (OCTAVIA_MESH_NATS_URL)"})
    stream_replicas: int = field(
        default=1,
        metadata={
            "help": "copies JetStream keeps of the provider-command stream (num_replicas: 3 on a 3-node NATS "
            "cluster; at most the number of NATS servers); an existing stream is raised to it, never lowered"
        },
    )
    cleanup_interval_s: float = field(
        default=30.0, metadata={"help": "seconds between purges of expired rows (Octavia's cleanup_interval)"}
    )
    load_balancer_expiry_age_s: float = field(
        default=WEEK_S, metadata={"help": "seconds a DELETED load balancer row is kept (load_balancer_expiry_age)"}
    )
    amphora_expiry_age_s: float = field(
        default=WEEK_S, metadata={"help": "seconds a DELETED amphora row is kept (amphora_expiry_age)"}
    )
    record_expiry_age_s: float = field(
        default=3600.0,
        metadata={"help": "seconds completed provider commands (outbox rows) and finished flow records are kept"},
    )
    pending_interval_s: float = field(
        default=30.0, metadata={"help": "seconds between scans for objects stuck in PENDING_*"}
    )
    pending_timeout_s: float = field(
        default=600.0,
        metadata={
            "help": "seconds a load balancer may show PENDING_* with no progress before housekeeping re-drives "
            "its change (no command left) or gives up on it (its objects go to ERROR)"
        },
    )
    cert_interval_s: float = field(
        default=3600.0, metadata={"help": "seconds between scans for expiring amphora certificates (cert_interval)"}
    )
    cert_expiry_buffer_s: float = field(
        default=14 * 86400.0,
        metadata={"help": "rotate an amphora certificate this many seconds before it expires (cert_expiry_buffer)"},
    )
    orphan_interval_s: float = field(
        default=300.0,
        metadata={"help": "seconds between orphan sweeps (VIP allocations here, amphora instances by the worker)"},
    )
    relay_sweep_s: float = field(
        default=1.0, metadata={"help": "seconds between retries of commands housekeeping queued but could not publish"}
    )

    log_format: str = log_format_field()
    log_level: str = log_level_field()
    otlp_endpoint: str = otlp_endpoint_field()

    def __post_init__(self) -> None:
        if not 1 <= self.stream_replicas <= 5:  # JetStream's own bounds
            raise ValueError(f"stream_replicas {self.stream_replicas} is not between 1 and 5")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> HousekeepingSettings:
        return from_env(cls, PREFIX, environ, **overrides)
