"""The worker's settings, read once from ``OCTAVIA_MESH_WORKER_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from octavia_mesh.common.observability.logging import log_format_field, log_level_field
from octavia_mesh.common.observability.metrics import METRICS_LISTEN_HELP
from octavia_mesh.common.observability.tracing import otlp_endpoint_field
from octavia_mesh.common.settings import from_env

PREFIX = "OCTAVIA_MESH_WORKER_"


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Settings of the worker service."""

    grpc_listen: str = field(default="127.0.0.1:50052", metadata={"help": "host:port of the gRPC health endpoint"})
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
    providers: tuple[str, ...] = field(default=("noop", "amphora"), metadata={"help": "providers this worker applies"})
    state_dir: str = field(
        default="worker-state", metadata={"help": "where the controller CA and the local amphorae live"}
    )
    compute_driver: str = field(
        default="local", metadata={"help": "amphora instances: local (processes), nova (OpenStack servers) or noop"}
    )
    local_amphorae: str = field(
        default="process",
        metadata={
            "help": "local compute driver: process (an agent process per amphora) or shared (one amphora host "
            "process serves every SINGLE amphora, each with its own port, certificate, heartbeats and HAProxy)"
        },
    )
    amphora_driver: str = field(default="grpc", metadata={"help": "talking to agents: grpc (mutual TLS) or noop"})
    network_driver: str = field(
        default="local", metadata={"help": "plugs VIPs and member subnets into amphorae: local, neutron or noop"}
    )
    cert_manager: str = field(
        default="local",
        metadata={"help": "where listener and pool TLS refs resolve: local (the API's secret store) or barbican"},
    )
    openstack_cloud: str = field(
        default="",
        metadata={
            "help": "clouds.yaml entry with the service credentials of the nova, neutron and barbican drivers "
            "(empty: OS_* variables)"
        },
    )
    nova_image_tag: str = field(
        default="octavia-mesh-amphora", metadata={"help": "nova: Glance tag of the amphora image (newest wins)"}
    )
    nova_image_owner: str = field(
        default="", metadata={"help": "nova: project that must own the amphora image (recommended)"}
    )
    nova_flavor_id: str = field(default="", metadata={"help": "nova: flavor of amphorae"})
    nova_network_id: str = field(default="", metadata={"help": "nova: the management network amphorae boot on"})
    nova_security_group_ids: tuple[str, ...] = field(
        default=(), metadata={"help": "nova: comma-separated security groups of the management port"}
    )
    nova_key_name: str = field(default="", metadata={"help": "nova: SSH key pair for amphorae (none by default)"})
    nova_availability_zone: str = field(default="", metadata={"help": "nova: availability zone of amphorae"})
    nova_config_drive: bool = field(
        default=True, metadata={"help": "nova: put the user data (the agent's key) on a config drive"}
    )
    nova_agent_port: int = field(default=9443, metadata={"help": "nova: port the image's agent listens on"})
    nova_boot_timeout_s: float = field(default=300.0, metadata={"help": "nova: how long a server may take to boot"})
    plug_interfaces: bool = field(
        default=True,
        metadata={
            "help": "have the amphora agent configure the ports the network driver attaches to its server "
            "(Octavia's plug_vip/plug_network amphora calls; only the neutron driver attaches any); false for an "
            "image that configures hot-plugged ports itself"
        },
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
        default=0.5, metadata={"help": "seconds between an amphora's heartbeats until the health service says"}
    )
    spare_amphorae: int = field(
        default=2,
        metadata={
            "help": "spare amphorae kept booted and unassigned, so that a create or a failover takes one instead "
            "of booting (0: no pool)"
        },
    )
    spare_cert_renew_before_s: float = field(
        default=14 * 86400.0,
        metadata={
            "help": "a spare amphora whose certificate expires within this many seconds is replaced by a fresh one "
            "(housekeeping's cert_expiry_buffer for the amphorae it rotates; at most half the validity)"
        },
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
    batch_size: int = field(default=64, metadata={"help": "the most commands handled side by side"})
    ack_wait_s: float = field(default=60.0, metadata={"help": "seconds before JetStream redelivers an unacked command"})

    log_format: str = log_format_field()
    log_level: str = log_level_field()
    otlp_endpoint: str = otlp_endpoint_field()

    def __post_init__(self) -> None:
        if not 1 <= self.stream_replicas <= 5:  # JetStream's own bounds
            raise ValueError(f"stream_replicas {self.stream_replicas} is not between 1 and 5")
        # Driver names are checked at start-up, not at the first command.
        for name, value, known in (
            ("compute_driver", self.compute_driver, ("local", "nova", "noop")),
            ("network_driver", self.network_driver, ("local", "neutron", "noop")),
            ("cert_manager", self.cert_manager, ("local", "barbican")),
            ("amphora_driver", self.amphora_driver, ("grpc", "noop")),
            ("local_amphorae", self.local_amphorae, ("process", "shared")),
        ):
            if value not in known:
                raise ValueError(f"{PREFIX}{name.upper()}={value!r} is not one of {', '.join(known)}")
        for provider in self.providers:  # a typo must not leave a provider's commands unapplied
            if provider not in ("noop", "amphora"):
                raise ValueError(f"{PREFIX}PROVIDERS: {provider!r} is not one of noop, amphora")
        if self.compute_driver == "nova":
            missing = [f for f in ("nova_flavor_id", "nova_network_id") if not getattr(self, f)]
            if missing:
                raise ValueError(f"compute driver nova needs {', '.join(PREFIX + m.upper() for m in missing)}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> WorkerSettings:
        return from_env(cls, PREFIX, environ, **overrides)
