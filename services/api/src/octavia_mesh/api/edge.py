"""Binds the handlers to the edge RPCs of ``octavia_mesh.lbaas.v2``.

Every edge RPC has the same shape (ids, raw query, JSON body in, JSON body
out), so one adapter serves them all: it asks the authenticator for the caller,
runs the handler, sends the REST status as ``x-http-code`` initial metadata
(the Envoy edge turns it into the HTTP status; native gRPC clients may read
it too), and maps :class:`ApiError` onto a gRPC status whose message is
Octavia's ``faultstring``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import Any, TypeVar

import grpc
from google.api import annotations_pb2, httpbody_pb2
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from octavia_mesh.api import text
from octavia_mesh.api.app import COMMIT_BY, App, Call, Reply
from octavia_mesh.api.errors import ApiError, NotImplementedByProvider
from octavia_mesh.api.policy import Caller
from octavia_mesh.common.db.retry import retry_transaction
from octavia_mesh.common.observability.interceptors import note_access

logger = logging.getLogger(__name__)
T = TypeVar("T")

Handler = Callable[[App, Call], Awaitable[Reply]]

#: Header the edge sets to the REST path the client used (without the query), for links.
ORIGINAL_PATH = "x-octavia-path"


#: Each edge RPC's REST path (its first ``google.api.http`` binding), for the links of native gRPC calls.
REST_PATHS: dict[str, str] = {}


def _base_urls(app: App, metadata: Mapping[str, str], method: str, request: Any) -> tuple[str, str]:
    host = metadata.get("x-forwarded-host")
    root = f"{metadata.get('x-forwarded-proto', 'http')}://{host}" if host else app.settings.public_endpoint.rstrip("/")
    path = metadata.get(ORIGINAL_PATH)
    if path is None:  # native gRPC: no REST path came with the call, so links use the method's own
        path = REST_PATHS.get(method, "")
        for name in ("parent_id", "id"):
            path = path.replace("{" + name + "}", getattr(request, name, ""))
    return root + path.rstrip("/"), root


def _rest_path(method: Any) -> str:
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    pattern = rule.WhichOneof("pattern")
    return getattr(rule, pattern) if pattern and pattern != "custom" else ""


ANONYMOUS = Caller(project_id=None, roles=frozenset())


async def with_retries(handler: Callable[[App, Any], Awaitable[T]], app: App, call: Any) -> T:
    """Run ``handler``, again when the database rolled its transaction back to break a deadlock."""
    return await retry_transaction(lambda: handler(app, call))


def check_request(request: Any) -> None:
    """The API's one check of a request's text (:mod:`octavia_mesh.api.text`), before any handler runs."""
    if request is text.UNDECODABLE:
        raise text.not_utf8()
    if request.HasField("body"):
        text.check_body(request.body.data, request.body.content_type)


def _deserializer(request_class: Any) -> Callable[[bytes], Any]:
    """``request_class.FromString``, except that a message protobuf refuses (a path id or query that is not
    UTF-8, such as ``%ff``) becomes :data:`text.UNDECODABLE`, which the adapter answers with a 400: raised
    here, it would be gRPC's 500 quoting protobuf's internals."""

    def deserialize(data: bytes) -> Any:
        try:
            return request_class.FromString(data)
        except DecodeError:
            return text.UNDECODABLE

    return deserialize


def _adapter(
    app: App, handler: Handler, method: str, public: bool
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def rpc(request: Any, context: grpc.aio.ServicerContext) -> httpbody_pb2.HttpBody:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        call = None
        COMMIT_BY.set(_commit_by(app, context))
        try:
            check_request(request)
            base_url, root_url = _base_urls(app, metadata, method, request)
            call = Call(
                caller=ANONYMOUS if public else await app.auth.caller(metadata),
                query=getattr(request, "query", ""),
                body=request.body.data if request.HasField("body") else b"",
                id=getattr(request, "id", ""),
                parent_id=getattr(request, "parent_id", ""),
                base_url=base_url,
                root_url=root_url,
            )
            reply = await with_retries(handler, app, call)
        except ApiError as exc:
            note_access(exc.http_status, call.caller.project_id if call is not None else None)
            await context.send_initial_metadata((("x-http-code", str(exc.http_status)), *exc.headers))
            await context.abort(exc.code, text.status_message(exc.message))
        except Exception:
            logger.exception("%s failed", method)
            note_access(500, call.caller.project_id if call is not None else None)
            await context.send_initial_metadata((("x-http-code", "500"),))
            await context.abort(grpc.StatusCode.INTERNAL, "An unknown exception occurred.")
        note_access(reply.status, call.caller.project_id)
        await context.send_initial_metadata((("x-http-code", str(reply.status)),))
        return httpbody_pb2.HttpBody(content_type="application/json", data=reply.encode())

    return rpc


#: Of a native gRPC call's own deadline, the share its change may use; the rest carries the answer back.
DEADLINE_SHARE = 0.8


def _commit_by(app: App, context: grpc.aio.ServicerContext) -> float | None:
    """When this call's change must have committed (monotonic), or None (no bound)."""
    bounds = [app.settings.change_deadline_s] if app.settings.change_deadline_s > 0 else []
    remaining = context.time_remaining()
    if remaining is not None:
        bounds.append(remaining * DEADLINE_SHARE)
    return time.monotonic() + min(bounds) if bounds else None


def bind(
    app: App,
    module: ModuleType,
    service: str,
    handlers: Mapping[str, Any],
    public: bool = False,
    adapter: Callable[..., Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]] | None = None,
) -> grpc.GenericRpcHandler:
    """A generic handler for ``service`` (declared in the generated ``module``) that dispatches to ``handlers``.

    ``public`` services (version discovery) answer callers without an identity; ``adapter`` builds each RPC
    from its handler (default: Octavia's call, reply and fault conventions).
    """
    adapter = adapter or _adapter
    descriptor = module.DESCRIPTOR.services_by_name[service]
    missing = {m.name for m in descriptor.methods} - set(handlers)
    if missing:
        raise RuntimeError(f"{service}: no handler for {sorted(missing)}")
    rpc_handlers = {}
    for method in descriptor.methods:
        REST_PATHS[f"{service}.{method.name}"] = _rest_path(method)
        request_class = message_factory.GetMessageClass(method.input_type)
        rpc_handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            adapter(app, handlers[method.name], f"{service}.{method.name}", public),
            request_deserializer=_deserializer(request_class),
            response_serializer=httpbody_pb2.HttpBody.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(descriptor.full_name, rpc_handlers)


async def _not_yet(app: App, call: Call) -> Reply:
    raise NotImplementedByProvider("Not implemented yet.")


def not_yet(module: ModuleType, service: str) -> dict[str, Handler]:
    """Handlers answering 501 for every method of ``service``, for a resource still to be built."""
    return {m.name: _not_yet for m in module.DESCRIPTOR.services_by_name[service].methods}
