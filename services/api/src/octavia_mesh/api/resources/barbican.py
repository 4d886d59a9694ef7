"""The edge adapter of the Barbican-shaped services (``octavia_mesh.keymanager.v1``), and what they share.

Barbican's clients read faults as ``{"code", "title", "description"}`` (python-barbicanclient fails on
Octavia's ``faultstring`` shape), and a secret's payload travels raw in its own content type. So these
services are not bound through :mod:`octavia_mesh.api.edge`: their handlers answer an :class:`Answer`
whose status reaches the client as ``x-http-code`` even for faults (the Lua filter keeps a JSON body that
has a ``title``), and whose content type may be other than JSON.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc
from google.api import httpbody_pb2

from octavia_mesh.api import edge, text
from octavia_mesh.api.app import App
from octavia_mesh.api.edge import ANONYMOUS, with_retries
from octavia_mesh.api.errors import ApiError
from octavia_mesh.api.policy import Caller
from octavia_mesh.api.query import parse_query
from octavia_mesh.api.settings import ApiSettings
from octavia_mesh.common.observability.interceptors import note_access
from octavia_mesh.common.secrets import Keyring, load_keyring

logger = logging.getLogger(__name__)

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
DEFAULT_LIMIT = 10  # Barbican's default_limit_paging
MAX_LIMIT = 100  # Barbican's max_limit_paging


class BarbicanError(Exception):
    """A fault in Barbican's shape. Descriptions never carry payloads."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def invalid(schema: str, reason: str, prop: str | None) -> BarbicanError:
    """Barbican's ``InvalidObject`` (a JSON-schema or semantic failure of a request body)."""
    return BarbicanError(400, f"Provided object does not match schema '{schema}': {reason}. Invalid property: '{prop}'")


def not_allowed(operation: str) -> BarbicanError:
    return BarbicanError(403, f"{operation} attempt not allowed - please review your user/project privileges")


@dataclass(frozen=True, slots=True)
class Answer:
    """A handler's answer: REST status and a JSON document, or raw bytes in ``content_type``."""

    status: int
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return b"" if self.body is None else json.dumps(self.body).encode()


@dataclass(frozen=True, slots=True)
class KmCall:
    """One call on a Barbican-shaped service."""

    caller: Caller
    id: str = ""
    query: str = ""
    body: bytes = b""
    root_url: str = ""  # scheme://host the client called: references are built on it
    path: str = ""  # the REST path the client called
    accept: str = ""


KmHandler = Callable[[App, KmCall], Awaitable[Answer]]


def project_of(call: KmCall) -> str:
    """The caller's project: every secret belongs to one."""
    if not call.caller.project_id:
        raise BarbicanError(400, "No project: the X-Project-Id header is required.")
    return call.caller.project_id


def load_json(body: bytes, schema: str) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BarbicanError(400, "Malformed JSON") from None
    if not isinstance(doc, dict):
        raise invalid(schema, "the request body is not a JSON object", None)
    return doc


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def paging(query: str, filters: tuple[str, ...]) -> tuple[int, int, dict[str, str]]:
    """Barbican's ``clean_paging_values``: bad numbers fall back to the defaults; plus the filters given."""
    params = parse_query(query)

    def first(key: str) -> str | None:
        values = params.get(key)
        return values[0] if values else None

    try:
        offset = int(first("offset") or 0)
        offset = offset if 0 <= offset <= 2**62 else 0
    except ValueError:
        offset = 0
    try:
        limit = min(max(int(first("limit") or DEFAULT_LIMIT), 1), MAX_LIMIT)
    except ValueError:
        limit = DEFAULT_LIMIT
    return offset, limit, {k: v for k in filters if (v := first(k)) is not None}


def page_links(url: str, offset: int, limit: int, total: int, filters: Mapping[str, str]) -> dict[str, str]:
    """Barbican's ``previous`` / ``next`` links (the filters are kept, so following them lists the same set)."""

    def href(at: int) -> str:
        return f"{url}?{urllib.parse.urlencode({**filters, 'limit': limit, 'offset': at})}"

    links = {}
    if offset > 0:
        links["previous"] = href(max(0, offset - limit))
    if total > offset + limit:
        links["next"] = href(offset + limit)
    return links


@functools.cache
def keyring(settings: ApiSettings) -> Keyring:
    """The store's keys, loaded (the key file created) once per settings."""
    return load_keyring(settings.secret_key_file, settings.secret_keys)


def version_document(call: KmCall) -> dict[str, Any]:
    """Barbican's v1 entry: microversion 1.0 (secret consumers, 1.1, are not served).

    Its ``self`` link keeps the prefix the client used, so discovery leads it back to where it started.
    """
    base = f"{call.root_url}/v1/" if call.path.rstrip("/") == "/v1" else f"{call.root_url}/key-manager/v1/"
    return {
        "id": "v1",
        "status": "CURRENT",
        "min_version": "1.0",
        "max_version": "1.0",
        "links": [
            {"rel": "self", "href": base},
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
        ],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.key-manager-v1+json"}],
    }


async def list_versions(app: App, call: KmCall) -> Answer:
    return Answer(200, {"versions": {"values": [version_document(call)]}})


async def get_version(app: App, call: KmCall) -> Answer:
    return Answer(200, {"version": version_document(call)})


VERSION_HANDLERS = {"ListKeyManagerVersions": list_versions, "GetKeyManagerVersion": get_version}


def _fault(status: int, description: str) -> Answer:
    """Barbican's fault; a description quoting the client's value is cut short (``text.status_message``)."""
    description = text.status_message(description)
    return Answer(status, {"code": status, "title": TITLES.get(status, "Error"), "description": description})


def _adapter(
    app: App, handler: KmHandler, method: str, public: bool
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def rpc(request: Any, context: grpc.aio.ServicerContext) -> httpbody_pb2.HttpBody:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        host = metadata.get("x-forwarded-host")
        proto = metadata.get("x-forwarded-proto", "http")
        headers: tuple[tuple[str, str], ...] = ()
        call = None
        try:
            edge.check_request(request)
            call = KmCall(
                caller=ANONYMOUS if public else await app.auth.caller(metadata),
                id=getattr(request, "id", ""),
                query=getattr(request, "query", ""),
                body=request.body.data if request.HasField("body") else b"",
                root_url=f"{proto}://{host}" if host else app.settings.public_endpoint.rstrip("/"),
                path=metadata.get("x-octavia-path", ""),
                accept=metadata.get("accept", ""),
            )
            answer = await with_retries(handler, app, call)
        except BarbicanError as exc:
            answer = _fault(exc.status, exc.description)
        except ApiError as exc:  # the authenticator's 401 and 503, the shared policy's 403
            answer = _fault(exc.http_status, exc.message)
            headers = exc.headers
        except Exception:
            logger.exception("%s failed", method)  # no payload is ever part of an exception we raise
            answer = _fault(500, "Secret store failure seen - please contact the site administrator.")
        note_access(answer.status, call.caller.project_id if call is not None else None)
        await context.send_initial_metadata((("x-http-code", str(answer.status)), *headers))
        return httpbody_pb2.HttpBody(content_type=answer.content_type, data=answer.encode())

    return rpc


def bind(
    app: App, module: ModuleType, service: str, handlers: Mapping[str, KmHandler], public: bool = False
) -> grpc.GenericRpcHandler:
    """The edge's binding, with Barbican's fault shape instead of Octavia's."""
    return edge.bind(app, module, service, handlers, public, adapter=_adapter)
