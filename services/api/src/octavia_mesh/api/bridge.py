"""The API's unary gRPC calls over HTTP/1.1, for the Envoy edge.

Envoy sends every unary call of the edge services here, REST calls once transcoded and native gRPC calls as
they come: ``POST /<service>/<method>`` with the gRPC-framed request as the (chunked) body and the call's
metadata as headers, on keep-alive HTTP/1.1 connections. The answer is what a gRPC server sends, on HTTP/1.1:
``200``, ``application/grpc``, the handler's initial metadata as headers (the REST status in ``x-http-code``),
the framed reply as a chunk, and ``grpc-status`` and ``grpc-message`` as trailers (the edge's cluster enables
HTTP/1.1 trailers). Envoy hands that on unchanged in meaning: as HTTP/2 to a native client, and to the transcoder
for a REST one, which makes Octavia's answer or fault of it exactly as from the gRPC server.

This listener runs the very handlers the gRPC server runs, through the same interceptors (metrics, tracing,
request id and access line). Why it exists: ``grpc.aio`` costs about 0.4 ms of CPU per unary call, more than
most handlers; a keep-alive HTTP/1.1 exchange parsed by httptools costs a small fraction of that
(docs/architecture.md, "API speed"). Streaming calls (health ``Watch``, reflection) stay on the gRPC server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, NamedTuple, cast

import grpc
import httptools

logger = logging.getLogger(__name__)

#: Headers of the HTTP exchange itself, not metadata of the call (gRPC keeps these out of its metadata too).
_NOT_METADATA = frozenset(
    {"host", "connection", "keep-alive", "content-length", "content-type", "te", "transfer-encoding", "grpc-timeout"}
)
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class _Metadatum(NamedTuple):
    """One metadata entry, as ``grpc.aio`` gives them: a ``(key, value)`` pair with names (OpenTelemetry's
    interceptor reads ``.key`` and ``.value``)."""

    key: str
    value: str


class _CallDetails(NamedTuple):
    """What gRPC gives interceptors about a call (``grpc.HandlerCallDetails``)."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class BridgeContext:
    """The part of ``grpc.aio.ServicerContext`` that the edge adapters and the interceptors use."""

    __slots__ = ("_metadata", "_deadline", "_peer", "initial_metadata", "_code", "_details")

    def __init__(self, metadata: tuple[tuple[str, str], ...], deadline: float | None, peer: str) -> None:
        self._metadata = metadata
        self._deadline = deadline
        self._peer = peer
        self.initial_metadata: tuple[tuple[str, str], ...] = ()
        self._code: grpc.StatusCode | None = None
        self._details = ""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def send_initial_metadata(self, metadata: Sequence[tuple[str, str]]) -> None:
        self.initial_metadata = tuple(metadata)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        self._code, self._details = code, details
        raise grpc.aio.AbortError()

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def details(self) -> str:
        return self._details

    def set_details(self, details: str) -> None:
        self._details = details

    def peer(self) -> str:
        return self._peer

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def auth_context(self) -> dict[str, Any]:
        return {}

    def peer_identities(self) -> None:
        return None

    def peer_identity_key(self) -> None:
        return None

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def set_compression(self, compression: Any) -> None:
        pass

    def disable_next_message_compression(self) -> None:
        pass


def _deadline(timeout: str | None) -> float | None:
    """A ``grpc-timeout`` header (``100m``, ``5S``…) as a monotonic deadline; None when absent or malformed."""
    if not timeout or timeout[-1] not in _TIMEOUT_UNITS or not timeout[:-1].isdigit():
        return None
    return time.monotonic() + int(timeout[:-1]) * _TIMEOUT_UNITS[timeout[-1]]


def _request_message(body: bytes) -> bytes | None:
    """The one message of a unary call's gRPC-framed body; None when the framing is wrong or compressed (this
    server accepts no compression, and says so by never sending ``grpc-accept-encoding``)."""
    if len(body) < 5 or body[0] != 0 or int.from_bytes(body[1:5], "big") != len(body) - 5:
        return None
    return body[5:]


def _percent_encoded(message: str) -> str:
    """``grpc-message``'s encoding: UTF-8, with ``%`` and bytes outside printable ASCII percent-encoded."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in message.encode())


class Bridge:
    """Serves the unary methods of ``generic_handlers``, through ``interceptors``, over HTTP/1.1."""

    def __init__(
        self,
        generic_handlers: Sequence[grpc.GenericRpcHandler],
        interceptors: Sequence[grpc.aio.ServerInterceptor],
        max_header_bytes: int,
        max_body_bytes: int,
    ) -> None:
        self._generic = tuple(generic_handlers)
        self._interceptors = tuple(interceptors)
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self._server: asyncio.Server | None = None
        self.in_flight: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port)
        return self._server.sockets[0].getsockname()[1]

    async def close(self, grace: float) -> None:
        """Stop accepting, then give the calls in flight ``grace`` seconds to answer."""
        if self._server is not None:
            self._server.close()
        if self.in_flight:
            await asyncio.wait(set(self.in_flight), timeout=grace)

    async def _resolve(self, details: _CallDetails, index: int = 0) -> grpc.RpcMethodHandler | None:
        """The method's handler as the interceptors from ``index`` on wrap it (gRPC's own interception order)."""
        if index < len(self._interceptors):

            def continuation(inner: Any) -> Awaitable[grpc.RpcMethodHandler | None]:
                return self._resolve(inner, index + 1)

            return await self._interceptors[index].intercept_service(continuation, details)  # pyright: ignore[reportArgumentType]
        for generic in self._generic:
            handler = generic.service(details)  # pyright: ignore[reportArgumentType]
            if handler is not None:
                return handler
        return None

    async def call(self, method: str, headers: list[tuple[str, str]], body: bytes, peer: str) -> bytes:
        """Run one call; the HTTP/1.1 response that answers it."""
        metadata = tuple(_Metadatum(k, v) for k, v in headers if k not in _NOT_METADATA)
        timeout = next((v for k, v in headers if k == "grpc-timeout"), None)
        context = BridgeContext(metadata, _deadline(timeout), peer)
        reply = None
        try:
            handler = await self._resolve(_CallDetails(method, metadata))
            message = _request_message(body)
            if handler is None or handler.unary_unary is None:  # pyright: ignore[reportAttributeAccessIssue]
                context.set_code(grpc.StatusCode.UNIMPLEMENTED)
                context.set_details("Method not found!")
            elif message is None:
                context.set_code(grpc.StatusCode.INTERNAL)
                context.set_details("A unary call's body is one uncompressed gRPC message.")
            else:
                behavior: Any = handler  # a grpc RpcMethodHandler: the edge sets both (de)serializers
                answer = await behavior.unary_unary(behavior.request_deserializer(message), context)
                reply = behavior.response_serializer(answer)
        except grpc.aio.AbortError:
            pass  # the handler set the status and its message
        except Exception:
            logger.exception("%s failed", method)
            context.set_code(grpc.StatusCode.INTERNAL)
            context.set_details("An unknown exception occurred.")
        code = grpc.StatusCode.OK if reply is not None else (context.code() or grpc.StatusCode.UNKNOWN)
        return _response(context.initial_metadata, reply, code, context.details())


def _response(
    initial_metadata: tuple[tuple[str, str], ...], reply: bytes | None, code: grpc.StatusCode, message: str
) -> bytes:
    """A gRPC answer on HTTP/1.1: the initial metadata as headers, the framed reply as a chunk, the status as
    trailers."""
    lines = [b"HTTP/1.1 200 OK", b"content-type: application/grpc", b"transfer-encoding: chunked"]
    for key, value in initial_metadata:
        if isinstance(value, str) and "\r" not in value and "\n" not in value:  # nothing may split the response
            lines.append(f"{key}: {value}".encode("latin-1", "replace"))
    chunk = b""
    if reply is not None:
        framed = b"\x00" + len(reply).to_bytes(4, "big") + reply
        chunk = b"%x\r\n%s\r\n" % (len(framed), framed)
    trailers = b"0\r\ngrpc-status: %d\r\n" % code.value[0]
    if message:
        trailers += b"grpc-message: " + _percent_encoded(message).encode() + b"\r\n"
    return b"\r\n".join(lines) + b"\r\n\r\n" + chunk + trailers + b"\r\n"


class _Connection(asyncio.Protocol):
    """One keep-alive connection from Envoy; requests on it are answered in order."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._previous: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's subclasses
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):  # as gRPC names peers
            self._peer = f"ipv6:[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"ipv4:{peer[0]}:{peer[1]}"

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, _TooLarge) as exc:
            # Only Envoy sends here; a request it would not send ends the connection, answered with a 400.
            logger.warning("bridge request refused: %s", exc)
            if self._transport is not None:
                self._transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                self._transport.close()

    # httptools' callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._header_bytes, self._body, self._body_bytes = b"", [], 0, [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_header(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value))
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._bridge.max_header_bytes:
            raise _TooLarge(f"headers over {self._bridge.max_header_bytes} bytes")

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._bridge.max_body_bytes:
            raise _TooLarge(f"body over {self._bridge.max_body_bytes} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._url.decode("latin-1").partition("?")[0]
        keep_alive = self._parser.should_keep_alive()
        task = asyncio.get_running_loop().create_task(
            self._answer(self._previous, method, self._headers, b"".join(self._body), keep_alive)
        )
        self._bridge.in_flight.add(task)
        task.add_done_callback(self._bridge.in_flight.discard)
        self._previous = task

    async def _answer(
        self,
        previous: asyncio.Task[None] | None,
        method: str,
        headers: list[tuple[str, str]],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        response = await self._bridge.call(method, headers, body, self._peer)
        if previous is not None and not previous.done():
            await asyncio.wait((previous,))  # HTTP/1.1 answers in the order it was asked
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(response)
            if not keep_alive:
                self._transport.close()


class _TooLarge(Exception):
    """A request beyond the bridge's limits."""
