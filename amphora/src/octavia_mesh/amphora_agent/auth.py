"""Only the controller may call the agent: mutual TLS, then its certificate's identity.

The TLS handshake already refuses a client without a certificate signed by the
controller CA. That CA may sign other certificates too (amphorae, other
services), so every call is also checked against the identities the agent was
told to trust: the subject common name or a subject alternative name of the
peer certificate, as gRPC reports them in ``context.auth_context()``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import grpc

logger = logging.getLogger(__name__)

_IDENTITY_KEYS = ("x509_common_name", "x509_subject_alternative_name")


def peer_identities(context: grpc.aio.ServicerContext) -> set[str]:
    """The CN and SANs of the peer's verified certificate; empty when there is none."""
    auth = context.auth_context()
    return {value.decode(errors="replace") for key in _IDENTITY_KEYS for value in auth.get(key, ())}


class ControllerOnly(grpc.aio.ServerInterceptor):
    """Refuses, with ``PERMISSION_DENIED``, every call whose peer certificate names none of ``allowed``."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self._allowed = frozenset(allowed)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        # The servicer context, and so the peer certificate, only exists inside the call; wrap the
        # behaviour rather than deciding here.
        return _guarded(handler, self._check, handler_call_details.method)

    async def _check(self, context: grpc.aio.ServicerContext, method: str) -> None:
        identities = peer_identities(context)
        if not identities:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required")
        if identities.isdisjoint(self._allowed):
            logger.warning("refused %s from %s (certificate names %s)", method, context.peer(), sorted(identities))
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "this client may not call the amphora agent")


Check = Callable[[grpc.aio.ServicerContext, str], Awaitable[None]]
# grpc's stubs type a handler's behaviours with the synchronous ServicerContext; an aio server's take the aio one.
_AioAwaitable = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
_AioAny = Callable[[Any, grpc.aio.ServicerContext], Any]


async def _stream(result: Any, context: grpc.aio.ServicerContext) -> None:
    # A streaming behaviour is either an async generator or a coroutine that calls context.write
    # (grpc_health's Watch); grpc.aio forbids mixing the two styles in one call, so write both ways.
    if inspect.isasyncgen(result):
        async for response in result:
            await context.write(response)
    else:
        await result


def _guarded(handler: grpc.RpcMethodHandler, check: Check, method: str) -> grpc.RpcMethodHandler:
    codec: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        unary_unary = cast("_AioAwaitable", handler.unary_unary)

        async def checked_unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(context, method)
            return await unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(checked_unary_unary, **codec)
    if handler.unary_stream is not None:
        unary_stream = cast("_AioAny", handler.unary_stream)

        async def checked_unary_stream(request: Any, context: grpc.aio.ServicerContext) -> None:
            await check(context, method)
            await _stream(unary_stream(request, context), context)

        return grpc.unary_stream_rpc_method_handler(checked_unary_stream, **codec)
    if handler.stream_unary is not None:
        stream_unary = cast("_AioAwaitable", handler.stream_unary)

        async def checked_stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(context, method)
            return await stream_unary(requests, context)

        return grpc.stream_unary_rpc_method_handler(checked_stream_unary, **codec)
    # The last kind is set when the other three are not.
    stream_stream = cast("_AioAny", handler.stream_stream)

    async def checked_stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> None:
        await check(context, method)
        await _stream(stream_stream(requests, context), context)

    return grpc.stream_stream_rpc_method_handler(checked_stream_stream, **codec)
