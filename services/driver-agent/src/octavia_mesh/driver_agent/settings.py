"""The driver-agent service's settings, read once from ``OCTAVIA_MESH_DRIVER_AGENT_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from octavia_mesh.common.observability.logging import log_format_field, log_level_field
from octavia_mesh.common.observability.metrics import METRICS_LISTEN_HELP
from octavia_mesh.common.observability.tracing import otlp_endpoint_field
from octavia_mesh.common.settings import from_env

PREFIX = "OCTAVIA_MESH_DRIVER_AGENT_"


@dataclass(frozen=True, slots=True)
class DriverAgentSettings:
    """Settings of the driver-agent service."""

    grpc_listen: str = field(default="127.0.0.1:50055", metadata={"help": "host:port of the gRPC endpoint"})
    metrics_listen: str = field(default="", metadata={"help": METRICS_LISTEN_HELP})
    database_url: str = field(
        default="sqlite:///octavia-mesh.db", metadata={"help": "SQLAlchemy URL (OCTAVIA_MESH_DATABASE_URL)"}
    )
    nats_url: str = field(
        default="nats://127.0.0.1:4222",
        metadata={"help": "NATS URL (OCTAVIA_MESH_NATS_URL), handed to the provider agents"},
    )
    provider_agents: tuple[str, ...] = field(
        default=("*",),
        metadata={
            "help": "comma-separated names of the provider agents to run (entry points of the group "
            "octavia_mesh.provider_agents); * runs every one installed, empty none"
        },
    )
    advertise_address: str = field(
        default="",
        metadata={
            "help": "host:port provider agents reach this service at (empty: the listen address, a wildcard "
            "host replaced by 127.0.0.1)"
        },
    )
    secret_key_file: str = field(
        default="",
        metadata={
            "help": "Fernet keys of the local secret store (the API's key file); with them the objects given to "
            "providers carry their certificates (*_container_data); empty: references only"
        },
    )
    secret_keys: tuple[str, ...] = field(
        default=(),
        repr=False,
        metadata={"help": "comma-separated Fernet keys, used instead of the key file"},
    )

    log_format: str = log_format_field()
    log_level: str = log_level_field()
    otlp_endpoint: str = otlp_endpoint_field()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> DriverAgentSettings:
        return from_env(cls, PREFIX, environ, **overrides)
