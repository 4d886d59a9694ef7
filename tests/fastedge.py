"""The fast tier's edge: the API's behaviour (bodies, queries, RBAC, faults) without Envoy.

A light mesh (``lightmesh.py``) runs the real API service and worker without Envoy. :class:`FastEdge` stands in
for the Envoy edge, in the test process (:class:`support.Rest` calls it through a ``requests`` adapter; other
clients over HTTP from a thread): it calls the API's gRPC services directly, and
it runs the edge's own rules rather than a copy of them:

* the Lua filter is ``octavia.lua`` itself, run by LuaJIT (what Envoy embeds) through ``lupa``;
* the routes are the ``google.api.http`` bindings of the services the rendered Envoy config lists for its
  transcoder (the same descriptors Envoy loads), with the transcoder's decoding of path variables and of the
  one ``query`` parameter;
* the headers removed and added, and the local-reply mappers (Octavia's and Barbican's fault bodies for the
  edge's own answers), are read from the config :func:`octavia_mesh.cli.edge.envoy_config` renders.

What is Envoy's own code (HTTP parsing, the transcoder's JSON printing of a gRPC status, the buffer filter's
413 for a chunked body, request limits on the wire) is not reproduced beyond what the Lua filter reads of it:
``tests/api/test_edge.py`` and ``tests/badinput`` pin it on a real Envoy, and ``tests/api/test_fast_edge.py``
sends the same requests through both and compares the answers.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import lupa.luajit21 as lupa
import requests
from google.api import annotations_pb2, httpbody_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

import octavia_mesh.api.server  # noqa: F401  (registers every edge service's descriptors)
from octavia_mesh.cli.edge import descriptor_path, envoy_config, lua_source

#: Envoy's mapping of gRPC status codes onto HTTP statuses (``Grpc::Utility::grpcToHttpStatus``), for errors
#: that come without the API's ``x-http-code``.
GRPC_TO_HTTP = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
#: Headers that are HTTP/1.1's own or that gRPC sets itself: never request metadata.
NOT_METADATA = frozenset(
    {"host", "connection", "content-length", "content-type", "transfer-encoding", "te", "keep-alive", "upgrade"}
    | {"user-agent", "accept-encoding", "expect", "proxy-connection"}
)

#: Handle objects for the Lua filter, built in Lua around Python callables (Envoy's ``handle`` API).
LUA_SHIM = """
return function(py)
  local headers = {
    get = function(_, k) return py.get(k) end,
    replace = function(_, k, v) py.replace(k, v) end,
    add = function(_, k, v) py.replace(k, v) end,
    remove = function(_, k) py.remove(k) end,
  }
  local body = {
    getBytes = function(_, i, n) return py.get_bytes(i, n) end,
    setBytes = function(_, b) py.set_bytes(b) end,
    length = function(_) return py.length() end,
  }
  return {
    headers = function(_) return headers end,
    body = function(_) return body end,
    respond = function(_, hs, b) py.respond(hs, b) end,
  }
end
"""


class _Exchange:
    """One request or response as the Lua filter sees it: lower-case headers, a body, maybe a local reply."""

    def __init__(self, headers: dict[bytes, bytes], body: bytes) -> None:
        self.headers = headers
        self.body = body
        self.local_reply: tuple[dict[bytes, bytes], bytes] | None = None

    def get(self, key: bytes) -> bytes | None:
        return self.headers.get(key.lower())

    def replace(self, key: bytes, value: Any) -> None:
        self.headers[key.lower()] = value if isinstance(value, bytes) else str(value).encode()

    def remove(self, key: bytes) -> None:
        self.headers.pop(key.lower(), None)

    def get_bytes(self, index: int, length: int) -> bytes:
        return self.body[int(index) : int(index) + int(length)]

    def set_bytes(self, body: bytes) -> None:
        self.body = bytes(body)

    def length(self) -> int:
        return len(self.body)

    def respond(self, headers: Any, body: bytes) -> None:
        self.local_reply = ({bytes(k).lower(): bytes(v) for k, v in headers.items()}, bytes(body or b""))


class LuaFilter:
    """``octavia.lua`` in LuaJIT; one runtime per adapter (a Lua state is not shared between threads)."""

    def __init__(self) -> None:
        self.runtime = lupa.LuaRuntime(encoding=None, unpack_returned_tuples=True)
        self.runtime.execute(lua_source().encode())
        self.on_request = self.runtime.globals()[b"envoy_on_request"]
        self.on_response = self.runtime.globals()[b"envoy_on_response"]
        self.handle = self.runtime.execute(LUA_SHIM.encode())

    def request(self, exchange: _Exchange) -> None:
        self.on_request(self.handle(exchange))

    def response(self, exchange: _Exchange) -> None:
        self.on_response(self.handle(exchange))


@dataclass(frozen=True)
class Route:
    """One ``google.api.http`` binding: its verb, its path template as a regex, and the method it calls."""

    verb: str
    pattern: re.Pattern[bytes]
    variables: tuple[str, ...]
    method: MethodDescriptor
    body: str


def _routes(services: list[str]) -> list[Route]:
    pool = descriptor_pool.Default()
    routes = []
    for name in services:
        for method in pool.FindServiceByName(name).methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            for binding in (rule, *rule.additional_bindings):
                verb = binding.WhichOneof("pattern")
                if verb is None or verb == "custom":
                    continue
                template: str = getattr(binding, verb)
                variables = tuple(re.findall(r"\{([^}=]+)(?:=\*)?\}", template))
                regex = re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template))
                routes.append(Route(verb.upper(), re.compile(f"^{regex}$".encode()), variables, method, binding.body))
    return routes


def _unescape(value: bytes) -> bytes:
    """Percent-decoding, as the transcoder decodes a one-segment path variable and a query parameter."""
    return re.sub(rb"%([0-9A-Fa-f]{2})", lambda match: bytes([int(match.group(1), 16)]), value)


def _field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field (the request messages are strings and one HttpBody): raw bytes, as
    Envoy sends them, so that a path id that is not UTF-8 reaches the API as it would through the edge."""
    key, length = _varint(number << 3 | 2), _varint(len(value))
    return key + length + value


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _encode(message: Descriptor, values: dict[str, bytes], body: tuple[bytes, bytes] | None) -> bytes:
    out = b"".join(_field(message.fields_by_name[k].number, v) for k, v in values.items() if v)
    if body is not None:
        content_type, data = body
        inner = (_field(1, content_type) if content_type else b"") + (_field(2, data) if data else b"")
        out += _field(message.fields_by_name["body"].number, inner)
    return out


def _filter_matches(spec: dict[str, Any], status: int, headers: dict[bytes, bytes]) -> bool:
    """An Envoy access-log filter of the kinds the edge's local-reply mappers use."""
    if "status_code_filter" in spec:
        comparison = spec["status_code_filter"]["comparison"]
        value = comparison["value"]["default_value"]
        return status == value if comparison["op"] == "EQ" else status >= value
    if "header_filter" in spec:
        header = spec["header_filter"]["header"]
        return headers.get(header["name"].encode(), b"").startswith(header["string_match"]["prefix"].encode())
    if "and_filter" in spec:
        return all(_filter_matches(f, status, headers) for f in spec["and_filter"]["filters"])
    if "or_filter" in spec:
        return any(_filter_matches(f, status, headers) for f in spec["or_filter"]["filters"])
    raise AssertionError(f"a local-reply filter the fast edge does not know: {spec}")


def _substitute(value: Any, status: int, body: bytes) -> Any:
    if value == "%RESPONSE_CODE%":
        return status  # Envoy's json_format keeps a lone number's type
    if isinstance(value, str):
        return value.replace("%LOCAL_REPLY_BODY%", body.decode(errors="replace"))
    if isinstance(value, dict):
        return {k: _substitute(v, status, body) for k, v in value.items()}
    return value


class FastEdge:
    """Answers HTTP requests as the Envoy edge in front of ``api_target`` would (see the module)."""

    def __init__(self, api_target: str, auth_strategy: str) -> None:
        config = envoy_config("127.0.0.1", 1, "127.0.0.1", 1, 1, str(descriptor_path()), "", auth_strategy)
        manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        (vhost,) = manager["route_config"]["virtual_hosts"]
        self.strip = {h.encode() for h in vhost["request_headers_to_remove"]}
        assert [a["header"] for a in vhost["request_headers_to_add"]] == [
            {"key": "x-forwarded-host", "value": "%REQ(:authority)%"}
        ], "the edge adds headers the fast edge does not"
        rest_route = vhost["routes"][-1]
        assert rest_route["match"] == {"prefix": "/"}
        self.route_strip = {h.encode() for h in rest_route["request_headers_to_remove"]}
        assert [a["header"] for a in rest_route["response_headers_to_add"]] == [
            {"key": "x-openstack-request-id", "value": "req-%REQ(x-request-id)%"}
        ], "the edge adds response headers the fast edge does not"
        self.mappers = manager["local_reply_config"]["mappers"]
        (transcoder,) = (f for f in manager["http_filters"] if f["name"] == "envoy.filters.http.grpc_json_transcoder")
        self.routes = _routes(transcoder["typed_config"]["services"])
        self.channel = grpc.insecure_channel(
            api_target,
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024), ("grpc.max_metadata_size", 128 * 1024)],
        )
        self.local = threading.local()
        self.calls: dict[str, grpc.UnaryUnaryMultiCallable] = {}

    def _lua(self) -> LuaFilter:
        lua = getattr(self.local, "lua", None)
        if lua is None:
            lua = self.local.lua = LuaFilter()
        return lua

    def exchange(
        self, method: str, path: str, request_headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        """One HTTP exchange: the status, headers and body the edge answers to ``method path``."""
        headers: dict[bytes, bytes] = {}
        for key, value in request_headers:
            name = key.lower().encode()
            encoded = value.encode("latin-1")
            headers[name] = headers[name] + b"," + encoded if name in headers else encoded
        headers[b":method"] = method.encode()
        headers[b":path"] = path.encode("latin-1")
        headers[b":authority"] = headers.pop(b"host", b"")
        for name in self.strip:
            headers.pop(name, None)
        headers[b"x-forwarded-host"] = headers[b":authority"]
        headers[b"x-forwarded-proto"] = b"http"
        headers[b"x-request-id"] = str(uuid.uuid4()).encode()
        exchange = _Exchange(headers, body)
        lua = self._lua()
        lua.request(exchange)
        if exchange.local_reply is not None:
            status, reply_headers, reply_body = self._local_reply(exchange.headers, *exchange.local_reply)
        else:
            status, reply_headers, reply_body = self._upstream(exchange, lua)
        reply_headers[b"x-openstack-request-id"] = b"req-" + headers[b"x-request-id"]
        return status, reply_headers, reply_body

    def _local_reply(
        self, request_headers: dict[bytes, bytes], headers: dict[bytes, bytes], body: bytes
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        status = int(headers.pop(b":status", b"200"))
        for mapper in self.mappers:
            if _filter_matches(mapper["filter"], status, request_headers):
                override = mapper.get("body_format_override")
                if override is not None:
                    body = json.dumps(_substitute(override["json_format"], status, body)).encode()
                    headers[b"content-type"] = b"application/json"
                break
        return status, headers, body

    def _upstream(self, exchange: _Exchange, lua: LuaFilter) -> tuple[int, dict[bytes, bytes], bytes]:
        headers = exchange.headers
        path, _, query = headers[b":path"].partition(b"?")
        # The transcoder's path matcher drops trailing empty segments: "/v1/" is "/v1" (but "//v2" is no route).
        path = path.rstrip(b"/") or b"/"
        verb = headers[b":method"].decode()
        for route in self.routes:
            match = route.pattern.match(path) if route.verb == verb else None
            if match:
                break
        else:
            local = {b":status": b"404", b"content-type": b"text/plain"}
            status, reply_headers, body = self._local_reply(headers, local, b"Could not resolve path to a method.")
            response = _Exchange({b":status": str(status).encode(), **reply_headers}, body)
            lua.response(response)
            return int(response.headers.pop(b":status")), response.headers, response.body
        # A one-segment variable is percent-decoded whole (google.api.http: "%2F" is "/" too).
        values = {name: _unescape(match.group(i + 1)) for i, name in enumerate(route.variables)}
        params = [p.partition(b"=") for p in query.split(b"&") if p]
        assert {k for k, _, _ in params} <= {b"query"}, f"the Lua filter passed other query parameters: {query!r}"
        for _, _, value in params:  # query_param_unescape_plus: "+" is a space (the Lua filter encodes a "+")
            values["query"] = _unescape(value.replace(b"+", b" "))
        body = (headers.get(b"content-type", b""), exchange.body) if route.body == "body" else None
        payload = _encode(route.method.input_type, values, body)
        metadata = [
            (k.decode(), v.decode("latin-1"))
            for k, v in headers.items()
            if not k.startswith(b":") and k not in NOT_METADATA and k not in self.route_strip
        ]
        name = f"/{route.method.containing_service.full_name}/{route.method.name}"
        rpc = self.calls.get(name)
        if rpc is None:
            rpc = self.calls[name] = self.channel.unary_unary(
                name, request_serializer=bytes, response_deserializer=httpbody_pb2.HttpBody.FromString
            )
        try:
            reply, call = rpc.with_call(payload, metadata=metadata, timeout=60)
            initial = call.initial_metadata() or ()
            status, content_type, data = 200, reply.content_type.encode(), reply.data
        except grpc.RpcError as exc:
            initial = exc.initial_metadata() or ()  # type: ignore[attr-defined]
            code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
            if not initial and code == grpc.StatusCode.UNAVAILABLE:  # no answer from the API: Envoy's own 503
                local = {b":status": b"503", b"content-type": b"text/plain"}
                return self._local_reply(headers, local, b"upstream connect error or disconnect/reset before headers")
            status, content_type = GRPC_TO_HTTP.get(code, 500), b"application/json"
            status_doc = {"code": code.value[0], "message": exc.details() or "", "details": []}  # type: ignore[attr-defined]
            data = json.dumps(status_doc, ensure_ascii=False).encode()
        reply_headers = {k.encode(): (v if isinstance(v, bytes) else v.encode()) for k, v in initial}
        reply_headers[b":status"] = str(status).encode()
        reply_headers[b"content-type"] = content_type
        response = _Exchange(reply_headers, data)
        lua.response(response)
        return int(response.headers.pop(b":status")), response.headers, response.body


class EdgeAdapter(BaseAdapter):
    """A ``requests`` transport onto a :class:`FastEdge` without HTTP in between: what :class:`support.Rest`
    mounts for a light mesh's endpoint (HTTP parsing cost the test process twice the CPU of the edge itself).
    Other clients (openstacksdk, the CLI) reach the same edge over HTTP (:class:`_Handler`)."""

    def __init__(self, edge: FastEdge) -> None:
        super().__init__()
        self.edge = edge

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = urllib.parse.urlsplit(request.url or "")
        body: Any = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif not isinstance(body, bytes | bytearray):  # an iterable: a chunked body, which Envoy buffers whole
            body = b"".join(part.encode() if isinstance(part, str) else part for part in body)
        sent = [(k, v) for k, v in request.headers.items() if k.lower() != "transfer-encoding"]
        headers = [("Host", url.netloc), *sent]
        if body and "Content-Length" not in request.headers:
            headers.append(("Content-Length", str(len(body))))
        status, reply_headers, reply_body = self.edge.exchange(
            request.method or "GET", request.path_url or "/", headers, bytes(body)
        )
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict({k.decode(): v.decode("latin-1") for k, v in reply_headers.items()})
        response.headers["Content-Length"] = str(len(reply_body))
        response._content = b"" if request.method == "HEAD" else reply_body
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.url = request.url or ""
        response.request = request
        response.reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        return response

    def close(self) -> None:  # the edge belongs to its light mesh
        pass


#: Each running light mesh's edge, by its endpoint (see :class:`EdgeAdapter`).
EDGES: dict[str, FastEdge] = {}


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 in front of a :class:`FastEdge`: whatever the method, the edge decides (the Lua filter answers
    405 for the ones Octavia does not take)."""

    protocol_version = "HTTP/1.1"
    server: EdgeServer

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            body = self._read_body()
            framing = ("transfer-encoding", "content-length")
            headers = [(k, v) for k, v in self.headers.items() if k.lower() not in framing]
            if "Content-Length" in self.headers or body:
                headers.append(("Content-Length", str(len(body))))  # Envoy passes a de-chunked body on with one
            # The request line's own target: http.server's ``path`` has leading slashes collapsed ("//v2" is
            # "/v2" there; Envoy finds no route for it).
            target = self.requestline.split(" ")[1]
            status, reply_headers, reply_body = self.server.edge.exchange(self.command, target, headers, body)
            self.send_response(status)
            for key, value in reply_headers.items():
                if key not in (b"content-length", b"connection"):
                    self.send_header(key.decode(), value.decode("latin-1"))
            self.send_header("Content-Length", str(len(reply_body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply_body)
            self.wfile.flush()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


class EdgeServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # tests open many connections at once (socketserver's default backlog is 5)

    def __init__(self, edge: FastEdge) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.edge = edge
