"""Log lines of the services: plain text or JSON, each stamped with the request id that caused it.

The request id is the one Octavia gives clients in ``x-openstack-request-id`` (``req-<uuid>``). It lives in a
context variable (:data:`REQUEST_ID`), so asyncio tasks a request starts inherit it; a logging filter copies it
onto every record. The services carry it between them in gRPC metadata (:mod:`.interceptors`) and in the
provider command (``ProviderCommand.request_id``); see docs/architecture.md, "Observability".

JSON lines come from python-json-logger: it formats stdlib ``LogRecord``s, so every library's logging (grpc,
SQLAlchemy, nats) comes out in the same shape with no change to how the code logs.
"""

from __future__ import annotations

import logging
import sys
import uuid
from contextvars import ContextVar
from dataclasses import field
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

#: The request id of the work in progress (``req-<uuid>``), or None outside any request.
REQUEST_ID: ContextVar[str | None] = ContextVar("octavia_mesh_request_id", default=None)
#: gRPC metadata key (and REST header) carrying it, as Octavia names the header.
REQUEST_ID_HEADER = "x-openstack-request-id"
#: What Envoy generates and forwards upstream; the edge answers clients ``req-`` + this.
ENVOY_REQUEST_ID_HEADER = "x-request-id"

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


def request_id_from(metadata: dict[str, str]) -> str | None:
    """The request id a call carries: ours, else the one Envoy generated (in Octavia's ``req-`` form)."""
    given = metadata.get(REQUEST_ID_HEADER)
    if given:
        return given[:128]  # a client's header is not trusted to be short
    envoy = metadata.get(ENVOY_REQUEST_ID_HEADER)
    return f"req-{envoy[:64]}" if envoy else None


def log_format_field() -> str:
    """A service settings field: ``text`` or ``json`` (falls back to ``OCTAVIA_MESH_LOG_FORMAT``)."""
    return field(default="text", metadata={"help": "log line format: text or json (default OCTAVIA_MESH_LOG_FORMAT)"})


def log_level_field() -> str:
    """A service settings field: the root logging level (falls back to ``OCTAVIA_MESH_LOG_LEVEL``)."""
    return field(default="INFO", metadata={"help": "logging level, e.g. DEBUG (default OCTAVIA_MESH_LOG_LEVEL)"})


def check_log_settings(log_format: str, log_level: str) -> None:
    """Fail at start-up on a format or level logging does not know."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    if not isinstance(logging.getLevelName(log_level.upper()), int):
        raise ValueError(f"log level {log_level!r} is not a logging level")


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (``-`` outside a request, as oslo.log does)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class _Json(JsonFormatter):
    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        if log_data.get("request_id") == "-":
            del log_data["request_id"]  # a line no request caused has no request id, rather than a placeholder


def formatter(log_format: str, service: str) -> logging.Formatter:
    """A text formatter, or a JSON one whose lines carry time, level, logger, message, service, request id."""
    if log_format == "json":
        return _Json(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",  # ISO 8601 in UTC with microseconds
            static_fields={"service": service},
        )
    return logging.Formatter(TEXT_FORMAT)


def setup_logging(
    service: str, log_format: str = "text", log_level: str = "INFO", stream: IO[str] | None = None
) -> None:
    """Configure the root logger of a service process (once, in its ``__main__``)."""
    check_log_settings(log_format, log_level)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())  # on the handler: it sees every logger's records, not only the root's
    handler.setFormatter(formatter(log_format, service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(log_level.upper())
    # grpc's DEBUG output is one line per callback; keep it out of a service's own debug logs.
    logging.getLogger("grpc").setLevel(max(root.level, logging.INFO))
