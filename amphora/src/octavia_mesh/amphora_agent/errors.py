"""The agent's exceptions as gRPC status codes: the one mapping every ``AmphoraAgent`` method goes through."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from octavia_mesh.amphora_agent.agent import NotConfigured, NotFound
from octavia_mesh.amphora_agent.haproxy import ConfigInvalid, HaproxyError

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]

# The first match wins, so the order matters: ConfigInvalid is an HaproxyError; InvalidName and
# VrrpConfigInvalid are ValueErrors; VrrpError is a NotConfigured; a timed-out config test is an HaproxyError.
CODES: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (ConfigInvalid, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (NotConfigured, grpc.StatusCode.FAILED_PRECONDITION),
    (HaproxyError, grpc.StatusCode.FAILED_PRECONDITION),
    (OSError, grpc.StatusCode.INTERNAL),
]


def mapped(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Turn the agent's exceptions into status codes (anything else is grpc's INTERNAL)."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await handler(self, request, context)
        except tuple(kind for kind, _ in CODES) as exc:
            await context.abort(next(code for kind, code in CODES if isinstance(exc, kind)), str(exc))
            raise  # unreachable: abort raises

    return wrapper
