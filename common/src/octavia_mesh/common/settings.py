"""Reading a service's frozen settings from the environment.

Each service declares one ``@dataclass(frozen=True, slots=True)`` whose fields
carry ``help`` metadata, and builds it with :func:`from_env`. Values are read
once, at start-up; an unknown or malformed value fails there with the variable
named, never later.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

#: Keys every service shares, read without the service prefix.
SHARED_KEYS = {"database_url": "OCTAVIA_MESH_DATABASE_URL", "nats_url": "OCTAVIA_MESH_NATS_URL"}
#: Keys a service reads from its own variable first, else from one the whole mesh shares (observability).
FALLBACK_KEYS = {
    "log_format": "OCTAVIA_MESH_LOG_FORMAT",
    "log_level": "OCTAVIA_MESH_LOG_LEVEL",
    "otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
}


def _convert(name: str, raw: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
        origin = typing.get_origin(kind)
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if kind in (int, float, str):
            return kind(raw)
        if origin is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r}: {exc}") from None
    raise TypeError(f"{name}: unsupported settings type {kind!r}")


def from_env(cls: type[T], prefix: str, environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build ``cls`` from ``{prefix}{FIELD}`` variables (and the shared keys), then ``overrides``.

    A variable ``X_FILE`` is read from the file it names, for secrets mounted by Kubernetes.
    """
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        var = SHARED_KEYS.get(field.name, f"{prefix}{field.name.upper()}")
        raw = environ.get(var)
        if raw is None and field.name in FALLBACK_KEYS:
            raw = environ.get(FALLBACK_KEYS[field.name])
        if raw is None and f"{var}_FILE" in environ:
            with open(environ[f"{var}_FILE"], encoding="utf-8") as handle:
                raw = handle.read().strip()
        if raw is not None:
            values[field.name] = _convert(var, raw, hints[field.name])
    known = {f"{prefix}{f.name.upper()}" for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(
        k for k in environ if k.startswith(prefix) and k not in known and k.removesuffix("_FILE") not in known
    )
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(unknown)}")
    values.update(overrides)
    return cls(**values)


def describe(cls: type) -> list[tuple[str, str]]:
    """``(field, help)`` pairs, for a generated settings reference."""
    return [(f.name, f.metadata.get("help", "")) for f in dataclasses.fields(cls)]
