"""The health service's settings, read once from ``OCTAVIA_MESH_HEALTH_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from octavia_mesh.common.observability.logging import log_format_field, log_level_field
from octavia_mesh.common.observability.metrics import METRICS_LISTEN_HELP
from octavia_mesh.common.observability.tracing import otlp_endpoint_field
from octavia_mesh.common.settings import from_env

PREFIX = "OCTAVIA_MESH_HEALTH_"


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Settings of the health service."""

    grpc_listen: str = field(default="127.0.0.1:50053", metadata={"help": "host:port of the gRPC endpoint"})
    metrics_listen: str = field(default="", metadata={"help": METRICS_LISTEN_HELP})
    database_url: str = field(
        default="sqlite:///octavia-mesh.db", metadata={"help": "SQLAlchemy URL (OCTAVIA_MESH_DATABASE_URL)"}
    )
    nats_url: str = field(default="nats://127.0.0.1:4222", metadata={"help": "NATS URL (OCTAVIA_MESH_NATS_URL)"})

    # -- heartbeats (amphora agents stream them here over mutual TLS)
    heartbeat_listen: str = field(
        default="127.0.0.1:50063", metadata={"help": "host:port of the mutual-TLS endpoint amphorae stream to"}
    )
    ca_dir: str = field(
        default="worker-state/ca",
        metadata={
            "help": "directory of the local controller CA (shared with the worker): amphorae are verified "
            "against it and the server certificate is issued from it at start, unless the *_PATH settings "
            "below name PEM files"
        },
    )
    server_cert_path: str = field(default="", metadata={"help": "PEM file: the server certificate (chain)"})
    server_key_path: str = field(default="", metadata={"help": "PEM file: the server certificate's key"})
    client_ca_path: str = field(default="", metadata={"help": "PEM file: the CA bundle amphora certificates chain to"})
    server_identity: str = field(
        default="octavia-mesh-health", metadata={"help": "CN and DNS SAN of the server certificate issued from ca_dir"}
    )
    replica_name: str = field(
        default="", metadata={"help": "this replica's name in amphora_health.reporter (default: host:port)"}
    )
    heartbeat_interval_s: float = field(
        default=0.5, metadata={"help": "seconds between heartbeats, sent to every amphora in each acknowledgement"}
    )
    ack_interval_s: float = field(
        default=1.0,
        metadata={
            "help": "seconds between two acknowledgements on a heartbeat stream (the first heartbeat is acknowledged "
            "at once; 0: every heartbeat). Agents take a replica for gone after 3 of these, 4 heartbeat intervals "
            "or 3 s, whichever is longest, without an acknowledgement"
        },
    )
    flush_interval_s: float = field(
        default=0.25, metadata={"help": "seconds between batched database writes of the heartbeats received"}
    )
    flush_max_amphorae: int = field(
        default=500, metadata={"help": "most amphorae written in one transaction (bigger batches are split)"}
    )
    status_recheck_s: float = field(
        default=2.0,
        metadata={
            "help": "an amphora's report equal to the one last evaluated is evaluated against the database again "
            "after this long (until then only its liveness and changed counters are written); a flush makes at "
            "most flush_max_amphorae such re-checks, the oldest first"
        },
    )
    identity_recheck_s: float = field(
        default=1.0,
        metadata={
            "help": "seconds between two checks of a streaming amphora's row (a rotated-out certificate or a "
            "deleted amphora ends its stream at the next heartbeat after the check)"
        },
    )
    events_stream: str = field(
        default="OCTAVIA_EVENTS",
        metadata={"help": "JetStream stream of the status events (empty: publish on plain NATS only)"},
    )
    events_max_age_s: float = field(
        default=3600.0, metadata={"help": "seconds the events stream keeps an event for late subscribers"}
    )
    events_max_bytes: int = field(default=64 << 20, metadata={"help": "bytes the events stream keeps at most"})

    # -- automatic failover (failover.py, breaker.py)
    heartbeat_timeout_s: float = field(
        default=5.0, metadata={"help": "an ALLOCATED amphora not heard from for this long is failed over"}
    )
    stream_silence_s: float = field(
        default=1.5,
        metadata={
            "help": "an amphora whose open heartbeat stream sends nothing for this long is marked lost (a hung "
            "agent) and failed over like a dead one (0: only the heartbeat timeout sees it)"
        },
    )
    loss_confirm_s: float = field(
        default=0.2,
        metadata={
            "help": "a lost amphora (stream broken or quiet) is claimed this long after the loss was seen, so "
            "that the circuit breaker sees a mass event whole first"
        },
    )
    failover_enabled: bool = field(
        default=True, metadata={"help": "fail over silent amphorae automatically (detection and logs go on if not)"}
    )
    failover_scan_interval_s: float = field(
        default=1.0, metadata={"help": "seconds between two scans of amphora_health for stale amphorae"}
    )
    failover_max_per_scan: int = field(default=2, metadata={"help": "most failovers one scan starts"})
    failover_max_in_flight: int = field(
        default=5, metadata={"help": "most automatic failovers started and not finished, across all replicas"}
    )
    failover_breaker_max_silent: int = field(
        default=10,
        metadata={"help": "circuit breaker: no failover while more amphorae than this are silent at once (0: off)"},
    )
    failover_breaker_max_silent_percent: float = field(
        default=50.0,
        metadata={
            "help": "circuit breaker: no failover while at least two amphorae, and more than this share of "
            "all monitored ones, are silent at once (0: off)"
        },
    )
    failover_startup_grace_s: float = field(
        default=15.0, metadata={"help": "no failover this long after start, while heartbeat streams reconnect"}
    )
    uvloop: bool = field(default=True, metadata={"help": "run on uvloop's event loop (cheaper per heartbeat)"})

    log_format: str = log_format_field()
    log_level: str = log_level_field()
    otlp_endpoint: str = otlp_endpoint_field()

    def __post_init__(self) -> None:
        # Fail at start-up, naming the setting: a zero interval would spin the flusher or the agents.
        for name in ("heartbeat_interval_s", "flush_interval_s", "status_recheck_s", "identity_recheck_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{PREFIX}{name.upper()} must be positive")
        if self.stream_silence_s and self.stream_silence_s <= self.heartbeat_interval_s:
            raise ValueError(f"{PREFIX}STREAM_SILENCE_S must exceed the heartbeat interval (or be 0)")
        if self.ack_interval_s < 0:
            raise ValueError(f"{PREFIX}ACK_INTERVAL_S must not be negative")
        if self.flush_max_amphorae < 1:
            raise ValueError(f"{PREFIX}FLUSH_MAX_AMPHORAE must be at least 1")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> HealthSettings:
        return from_env(cls, PREFIX, environ, **overrides)
