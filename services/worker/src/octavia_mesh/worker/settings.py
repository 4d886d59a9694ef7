"""The worker's settings, read once from ``OCTAVIA_MESH_WORKER_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from octavia_mesh.common.settings import from_env

PREFIX = "OCTAVIA_MESH_WORKER_"
#: The drivers each setting may name. A name outside these fails start-up: a typo must not quietly run the
#: no-op driver (which answers every call and boots nothing).
DRIVER_CHOICES = {
    "providers": ("noop", "amphora"),
    "compute_driver": ("local", "noop"),
    "amphora_driver": ("grpc", "noop"),
    "network_driver": ("local", "noop"),
}


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Settings of the worker service."""

    grpc_listen: str = field(default="127.0.0.1:50052", metadata={"help": "host:port of the gRPC health endpoint"})
    database_url: str = field(
        default="sqlite:///octavia-mesh.db", metadata={"help": "SQLAlchemy URL (OCTAVIA_MESH_DATABASE_URL)"}
    )
    nats_url: str = field(default="nats://127.0.0.1:4222", metadata={"help": "NATS URL (OCTAVIA_MESH_NATS_URL)"})
    providers: tuple[str, ...] = field(default=("noop", "amphora"), metadata={"help": "providers this worker applies"})
    state_dir: str = field(
        default="worker-state", metadata={"help": "where the controller CA and the local amphorae live"}
    )
    compute_driver: str = field(default="local", metadata={"help": "amphora instances: local (processes) or noop"})
    amphora_driver: str = field(default="grpc", metadata={"help": "talking to agents: grpc (mutual TLS) or noop"})
    network_driver: str = field(
        default="local", metadata={"help": "plugs VIPs and member subnets into amphorae: local or noop"}
    )
    agent_timeout_s: float = field(default=60.0, metadata={"help": "how long a new amphora's agent may take to answer"})
    amphora_cert_validity_s: float = field(
        default=30 * 86400.0,
        metadata={"help": "how long an amphora's certificate is valid (housekeeping rotates it before it expires)"},
    )
    health_endpoints: tuple[str, ...] = field(
        default=(),
        metadata={"help": "comma-separated host:port of the health service replicas amphorae stream heartbeats to"},
    )
    heartbeat_interval_s: float = field(
        default=1.0, metadata={"help": "seconds between an amphora's heartbeats until the health service says"}
    )
    vrrp_advert_int_s: float = field(
        default=0.1,
        metadata={"help": "ACTIVE_STANDBY: VRRP advertisement interval (a dead master is replaced after ~3.6 of them)"},
    )
    active_standby_link_cidr: str = field(
        default="169.254.64.0/18",
        metadata={"help": "ACTIVE_STANDBY: addresses of the links to amphora namespaces (a /28 per load balancer)"},
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
    batch_size: int = field(default=64, metadata={"help": "commands fetched from JetStream at once"})
    ack_wait_s: float = field(default=60.0, metadata={"help": "seconds before JetStream redelivers an unacked command"})

    def __post_init__(self) -> None:
        for name, choices in DRIVER_CHOICES.items():
            value = getattr(self, name)
            for chosen in value if isinstance(value, tuple) else (value,):
                if chosen not in choices:
                    raise ValueError(
                        f"{PREFIX}{name.upper()}: unknown {name.removesuffix('s').replace('_', ' ')} {chosen!r}; "
                        f"known: {', '.join(choices)}"
                    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> WorkerSettings:
        return from_env(cls, PREFIX, environ, **overrides)
